import type { ObjectStore } from "../../functions/ports/object-store.ts";
import type { SessionStore } from "../../functions/ports/session-store.ts";
import type { UploadService } from "../../functions/service/upload-service.ts";
import { serviceOver } from "./storage.ts";
import { seeded } from "./windows-client.ts";

/**
 * A deterministic scheduler for handlers of one session racing each other. Every
 * storage call of every handler waits at a turn gate; a step is taken only when every unfinished
 * handler waits at a gate, and the schedule picks which waiting handler's call goes ahead. One
 * list of choices therefore fixes the whole interleaving, whatever the latency of the stores,
 * and any interleaving found can be run again with `replay(choices)`.
 *
 * Exploration: every schedule up to a preemption bound (CHESS), where schedules that differ only
 * in the order of calls that commute (reads, different keys, different stores) run once, and
 * seeded random schedules.
 */

/**
 * What a storage call touches, for telling which calls commute. Resources are strings; one
 * ending in `*` covers every resource it prefixes, and `*` alone covers the whole store.
 */
export interface Access {
  readonly store: string;
  readonly method: string;
  readonly reads: readonly string[];
  readonly writes: readonly string[];
}

/** Describes a call of one port's method; unknown methods must touch `*`. */
export type Footprint = (method: string, args: readonly unknown[]) => Access;

/** One step: the handlers waiting at a gate, the one let on, and what its call touches. */
export interface Step {
  readonly enabled: readonly number[];
  readonly chosen: number;
  /** The handler that ran last was waiting too and another was chosen (CHESS's preemption). */
  readonly preemption: boolean;
  readonly access: Access;
  /** What each waiting handler's call touches, by handler. */
  readonly pending: readonly (Access | undefined)[];
}

/**
 * What a handler's storage calls go through: `turn(access)` before the call resolves when the
 * schedule lets this handler on; `landed()` once the call has returned or thrown.
 */
export interface Gate {
  turn(access: Access): Promise<void>;
  landed(): void;
}

/** A handler: runs to its answer, every storage call through `gate`. */
export type Racer<T> = (gate: Gate) => Promise<T>;

export interface Strategy {
  /** Picks among the waiting handlers; `current` is the one that ran last. */
  choose(enabled: readonly number[], current: number | undefined, step: number): number;
  /** Asked before each step with the state reached; false stops the race (`Pruned`). */
  admit?(state: string, step: number, preemptions: number): boolean;
}

/** Thrown out of `race()` when the strategy finds the state already explored. */
export class Pruned extends Error {
  constructor() {
    super("state already explored");
    this.name = "Pruned";
  }
}

/** Upper bound on steps of one race, so a handler looping on storage cannot hang a test. */
const MAX_STEPS = 2_000;

/** The non-preemptive choice: keep the handler that ran last, else the lowest waiting one. */
function continueCurrent(enabled: readonly number[], current: number | undefined): number {
  return current !== undefined && enabled.includes(current) ? current : (enabled[0] as number);
}

interface Waiting {
  readonly access: Access;
  readonly go: () => void;
}

export class Schedule {
  readonly steps: Step[] = [];

  /** `describe()` says how to get this schedule back (a seed, the replay call). */
  constructor(
    private readonly strategy: Strategy,
    readonly describe: () => string,
  ) {}

  /** The handler chosen at each step so far: what `replay()` takes. */
  get choices(): number[] {
    return this.steps.map((step) => step.chosen);
  }

  get preemptions(): number {
    return this.steps.filter((step) => step.preemption).length;
  }

  /** Runs the racers to their ends under this schedule; settles each, in racer order. Once. */
  async race<T>(racers: readonly Racer<T>[]): Promise<PromiseSettledResult<T>[]> {
    const waiting: Waiting[][] = racers.map(() => []);
    const inFlight = racers.map(() => 0);
    const done = racers.map(() => false);
    let events = 0;
    let wake = () => {};
    const signal = () => {
      events += 1;
      wake();
    };
    const gate = (id: number): Gate => ({
      async turn(access) {
        await new Promise<void>((go) => {
          waiting[id]?.push({ access, go });
          signal();
        });
        inFlight[id] = (inFlight[id] as number) + 1;
      },
      landed() {
        inFlight[id] = (inFlight[id] as number) - 1;
        signal();
      },
    });
    const settled = racers.map((racer, id) =>
      Promise.resolve()
        .then(() => racer(gate(id)))
        .then(
          (value): PromiseSettledResult<T> => ({ status: "fulfilled", value }),
          (reason): PromiseSettledResult<T> => ({ status: "rejected", reason }),
        )
        .finally(() => {
          done[id] = true;
          signal();
        }),
    );
    // Quiet: every handler is done, or waits at a gate with none of its calls in flight.
    const quiet = () =>
      racers.every((_, id) => done[id] || ((waiting[id]?.length ?? 0) > 0 && inFlight[id] === 0));
    const quiescent = async () => {
      for (;;) {
        if (quiet()) {
          // Stays quiet across a macrotask: no continuation is about to reach a gate.
          const seen = events;
          await new Promise((resolve) => setImmediate(resolve));
          if (seen === events && quiet()) return;
        } else {
          await new Promise<void>((resolve) => {
            wake = resolve;
          });
        }
      }
    };
    let current: number | undefined;
    for (;;) {
      await quiescent();
      const enabled = racers.flatMap((_, id) =>
        !done[id] && (waiting[id]?.length ?? 0) > 0 ? [id] : [],
      );
      if (enabled.length === 0) break;
      const index = this.steps.length;
      if (index >= MAX_STEPS) {
        throw new Error(`race still running after ${MAX_STEPS} steps (${this.describe()})`);
      }
      if (this.strategy.admit?.(stateKey(this.steps), index, this.preemptions) === false) {
        throw new Pruned();
      }
      const chosen = this.strategy.choose(enabled, current, index);
      const next = waiting[chosen]?.shift();
      if (!enabled.includes(chosen) || next === undefined) {
        throw new Error(
          `schedule diverged at step ${index}: handler ${chosen} is not waiting ` +
            `(waiting: ${enabled.join(",")}); the run is not deterministic`,
        );
      }
      const preemption = current !== undefined && current !== chosen && enabled.includes(current);
      const pending = waiting.map((queue) => queue[0]?.access);
      pending[chosen] = next.access;
      this.steps.push({ enabled, chosen, preemption, access: next.access, pending });
      current = chosen;
      next.go();
    }
    return Promise.all(settled);
  }
}

const overlaps = (a: string, b: string) =>
  a === b ||
  (a.endsWith("*") && b.startsWith(a.slice(0, -1))) ||
  (b.endsWith("*") && a.startsWith(b.slice(0, -1)));

const touches = (as: readonly string[], bs: readonly string[]) =>
  as.some((a) => bs.some((b) => overlaps(a, b)));

/** Two calls commute unless they touch one resource of one store and one of them writes it. */
export function dependent(a: Access, b: Access): boolean {
  return (
    a.store === b.store &&
    (touches(a.writes, b.writes) || touches(a.writes, b.reads) || touches(a.reads, b.writes))
  );
}

/**
 * The Mazurkiewicz trace of the steps so far: each handler's calls in order, each with the
 * earlier dependent calls of other handlers. Two schedules with the same trace order every pair
 * of dependent calls alike, so they leave the stores in the same state and every handler at
 * the same point with the same answers seen: what follows is the same.
 */
function stateKey(steps: readonly Step[]): string {
  const counts = new Map<number, number>();
  const position = steps.map((step) => {
    const n = counts.get(step.chosen) ?? 0;
    counts.set(step.chosen, n + 1);
    return `${step.chosen}.${n}`;
  });
  const lines = steps.map((step, k) => {
    const before = steps
      .slice(0, k)
      .flatMap((other, m) =>
        other.chosen !== step.chosen && dependent(other.access, step.access)
          ? [position[m] as string]
          : [],
      );
    // Method names, not arguments: session and upload IDs differ from run to run.
    return `${position[k]} ${step.access.store}.${step.access.method} <${before.sort().join(",")}>`;
  });
  // With the handler that ran last: what follows without preemption depends on it.
  return `${lines.sort().join(";")}|${steps.at(-1)?.chosen}`;
}

const arg = (args: readonly unknown[], i: number) => String(args[i]);

/** SessionStore calls: the record and the part chunks of one session. */
export const sessionAccess: Footprint = (method, args) => {
  const id =
    method === "create" || method === "replace"
      ? String((args[0] as { id?: unknown } | undefined)?.id)
      : arg(args, 0);
  const of = (reads: string[], writes: string[]) => ({ store: "sessions", method, reads, writes });
  switch (method) {
    case "get":
      return of([`record:${id}`], []);
    case "create":
    case "replace":
      return of([], [`record:${id}`]);
    case "getPartChunks":
      return of([`chunks:${id}`], []);
    case "putPartChunk":
    case "deletePartChunks":
      return of([], [`chunks:${id}`]);
    default:
      return of([], ["*"]);
  }
};

/** ObjectStore calls: objects by key (a listing reads a whole prefix) and multipart uploads. */
export const objectAccess: Footprint = (method, args) => {
  const key = arg(args, 0);
  const of = (reads: string[], writes: string[]) => ({ store: "objects", method, reads, writes });
  switch (method) {
    case "get":
    case "head":
    case "readStream":
      return of([`object:${key}`], []);
    case "list":
    case "listPage":
      return of([`object:${key}*`], []);
    case "putStaged":
    case "putObject":
      return of([], [`object:${key}`]);
    case "delete":
      return of(
        [],
        (args[0] as readonly unknown[]).map((k) => `object:${String(k)}`),
      );
    case "uploadPart":
    case "abortUpload":
      return of([], [`upload:${arg(args, 1)}`]);
    case "completeUpload":
      return of([], [`upload:${arg(args, 1)}`, `object:${key}`]);
    default:
      return of([], ["*"]);
  }
};

/**
 * Wraps every method of `target`, whatever the port's method list, so that each call first
 * waits for its turn at `gate`, then delegates to the target with `this` bound to it.
 */
export function gated<T extends object>(target: T, gate: Gate, footprint: Footprint): T {
  return new Proxy(target, {
    get(object, property) {
      const value = Reflect.get(object, property, object);
      if (typeof value !== "function") return value;
      return async (...args: unknown[]) => {
        await gate.turn(footprint(String(property), args));
        try {
          return await Reflect.apply(value, object, args);
        } finally {
          gate.landed();
        }
      };
    },
  });
}

/** One handler's service: its own gated view of the shared stores, like one Lambda instance. */
export function gatedService(
  sessions: SessionStore,
  objects: ObjectStore,
  gate: Gate,
  settings: Parameters<typeof serviceOver>[2] = {},
): UploadService {
  return serviceOver(
    gated(sessions, gate, sessionAccess),
    gated(objects, gate, objectAccess),
    settings,
  ).service;
}

/** A schedule that follows `choices` exactly, then runs without preemption. */
export function replay(choices: readonly number[], admit?: Strategy["admit"]): Schedule {
  const schedule: Schedule = new Schedule(
    {
      choose: (enabled, current, step) => choices[step] ?? continueCurrent(enabled, current),
      ...(admit ? { admit } : {}),
    },
    () => {
      const taken = schedule.choices;
      return `replay([${(taken.length >= choices.length ? taken : choices).join(",")}])`;
    },
  );
  return schedule;
}

/** A schedule that picks uniformly among the waiting handlers, from a seeded PRNG. */
export function randomSchedule(seed: number): Schedule {
  const random = seeded(seed);
  const schedule: Schedule = new Schedule(
    { choose: (enabled) => enabled[Math.floor(random() * enabled.length)] as number },
    () => `seed ${seed}, replay([${schedule.choices.join(",")}])`,
  );
  return schedule;
}

export interface Failure {
  /** How to get the failing schedule back: the seed if random, and the replay call. */
  readonly schedule: string;
  /** The choices taken, for `replay()`. */
  readonly choices: readonly number[];
  readonly error: unknown;
}

export interface Exploration {
  /** Schedules run to the end and checked. */
  readonly schedules: number;
  /** Schedules not run (or stopped) because they reach a state another schedule explores. */
  readonly pruned: number;
  readonly failures: Failure[];
}

/** One execution (set-up, race, follow-up, checks) under a schedule; throws on a broken guarantee. */
export type Execution = (schedule: Schedule) => Promise<void>;

/**
 * Every schedule with at most `maxPreemptions` preemptions (CHESS-style preemption bounding):
 * the first run takes none; each later run replays a prefix of an earlier one, takes another
 * waiting handler at one step and continues without preemption. A schedule whose state (trace
 * and last handler, see `stateKey`) was already reached with no more preemptions is not run
 * further: what would follow has been or will be explored. Fewest preemptions first, so
 * `maxSchedules` keeps the cheaper ones.
 */
export async function exploreBounded(
  execute: Execution,
  options: { maxPreemptions: number; maxSchedules?: number },
): Promise<Exploration> {
  const limit = options.maxSchedules ?? Number.POSITIVE_INFINITY;
  const failures: Failure[] = [];
  const visited = new Map<string, number>();
  /** Claims a state for exploration; false when it is claimed with no more preemptions. */
  const claim = (state: string, preemptions: number) => {
    const seen = visited.get(state);
    if (seen !== undefined && seen <= preemptions) return false;
    visited.set(state, preemptions);
    return true;
  };
  const queues: number[][][] = Array.from({ length: options.maxPreemptions + 1 }, () => []);
  queues[0]?.push([]);
  let schedules = 0;
  let pruned = 0;
  for (;;) {
    const prefix = queues.find((queue) => queue.length > 0)?.pop();
    if (prefix === undefined || schedules >= limit) break;
    // The state right after the prefix was claimed when the prefix was queued.
    const schedule = replay(prefix, (state, step, preemptions) =>
      step <= prefix.length ? true : claim(state, preemptions),
    );
    try {
      await execute(schedule);
      schedules += 1;
    } catch (error) {
      if (error instanceof Pruned) pruned += 1;
      else {
        schedules += 1;
        failures.push({ schedule: schedule.describe(), choices: schedule.choices, error });
      }
    }
    const steps = schedule.steps;
    let used = steps.slice(0, prefix.length).filter((step) => step.preemption).length;
    for (let i = prefix.length; i < steps.length; i++) {
      const step = steps[i] as Step;
      const current = steps[i - 1]?.chosen;
      for (const alternative of step.enabled) {
        const access = step.pending[alternative];
        if (alternative === step.chosen || access === undefined) continue;
        const preemption = current !== undefined && step.enabled.includes(current);
        const cost = used + (preemption ? 1 : 0);
        if (cost > options.maxPreemptions) continue;
        const branch = [...steps.slice(0, i), { ...step, chosen: alternative, preemption, access }];
        if (claim(stateKey(branch), cost)) {
          queues[cost]?.push(branch.map((s) => s.chosen));
        } else {
          pruned += 1;
        }
      }
      if (step.preemption) used += 1;
    }
  }
  return { schedules, pruned, failures };
}

/** `count` random schedules, seeds `firstSeed`, `firstSeed + 1`, ... */
export async function exploreRandom(
  execute: Execution,
  options: { count: number; firstSeed: number },
): Promise<Exploration> {
  const failures: Failure[] = [];
  for (let i = 0; i < options.count; i++) {
    const schedule = randomSchedule(options.firstSeed + i);
    try {
      await execute(schedule);
    } catch (error) {
      failures.push({ schedule: schedule.describe(), choices: schedule.choices, error });
    }
  }
  return { schedules: options.count, pruned: 0, failures };
}

/** A failure report that names every failing schedule (the first few in full). */
export function describeFailures(
  name: string,
  exploration: Exploration,
  hint: (failure: Failure) => string = () => "",
  shown = 3,
): string {
  const { failures, schedules } = exploration;
  const lines = failures.slice(0, shown).map((failure) => {
    const message = failure.error instanceof Error ? failure.error.message : String(failure.error);
    return `- ${failure.schedule}${hint(failure)}:\n    ${message.replaceAll("\n", "\n    ")}`;
  });
  const more = failures.length > shown ? [`... and ${failures.length - shown} more`] : [];
  return [
    `${name}: ${failures.length} of ${schedules} schedules broke the guarantee`,
    ...lines,
    ...more,
  ].join("\n");
}
