import { afterAll, describe, expect, it } from "vitest";
import { MemoryObjectStore } from "../../functions/adapters/memory/memory-object-store.ts";
import { MemorySessionStore } from "../../functions/adapters/memory/memory-session-store.ts";
import { MiB } from "../../functions/bits/constants.ts";
import type { FragmentLimits } from "../../functions/bits/fragment-plan.ts";
import type { BitsResponse } from "../../functions/bits/request.ts";
import type { ObjectStore } from "../../functions/ports/object-store.ts";
import type { SessionStore } from "../../functions/ports/session-store.ts";
import type { UploadService } from "../../functions/service/upload-service.ts";
import { createSession, endSession, fragment } from "../support/calls.ts";
import { sha256 } from "../support/checks.ts";
import { depth } from "../support/depth.ts";
import {
  describeFailures,
  type Execution,
  type Exploration,
  exploreBounded,
  exploreRandom,
  type Failure,
  gatedService,
  Pruned,
  replay,
  type Schedule,
} from "../support/interleave.ts";
import {
  freshStorage,
  STAGING_PREFIX,
  type StandInKind,
  serviceOver,
  uploadIsGone,
} from "../support/storage.ts";
import { randomBytes } from "../support/windows-client.ts";

/**
 * Interleavings: handlers of one session race each other at every storage call, under
 * every schedule with at most one preemption on the in-memory fakes (two under
 * `npm run test:deep`) and a bounded number of them on the real stand-ins (`PLANS`), schedules
 * that only reorder commuting calls counted once, and under seeded random schedules.
 * After each race a client that follows BITS-Received-Content-Range finishes the job, and the
 * guarantee must hold: every answer is a well-formed Ack, no BITS-Received-Content-Range claims
 * more than was sent in order, the object is exactly the bytes sent or absent (which one is
 * allowed depends on the race), nothing is left under the staging prefix, and the multipart
 * upload is gone.
 *
 * The scenarios are explored by one test file per backend, so that the runner's workers take
 * them side by side: interleavings-memory.test.ts, interleavings-stand-ins.test.ts and
 * interleavings-moto.test.ts. Replay one schedule printed by a failure with its backend's file:
 *   RACE_REPLAY='{"scenario":"<name>","backend":"memory","choices":[0,1,...]}' \
 *     npx vitest run test/race/interleavings-memory.test.ts -t replay
 */

const K = 1024;
/** 5 MiB parts keep a three-part file small; fragments up to 8 MiB. */
const RACE_LIMITS = { maxFragmentBytes: 8 * MiB, maxUploadBytes: 1024 ** 4, partSize: 5 * MiB };
const PART = RACE_LIMITS.partSize;
const DATA = randomBytes(11 * MiB + 1234, 0x3ace);
const TOTAL = DATA.length;
const DIGEST = sha256(DATA);
const FOLLOWER_REQUESTS = 12;
const NOT_FOUND = "0x8020001F";
const E_FAIL = "0x80004005";

/** Bytes [start, end) of the file. */
type FragmentPacket = { readonly kind: "fragment"; readonly start: number; readonly end: number };
type Packet = FragmentPacket | { readonly kind: "Close-Session" | "Cancel-Session" };

type Presence = "present" | "absent" | "either";

interface Scenario {
  readonly name: string;
  /** Bytes sent in order, one at a time, before the race. */
  readonly prefix: number;
  readonly racers: readonly Packet[];
  /** Whether the session may legitimately end during the race (NOT_FOUND is then an answer). */
  readonly mayEnd: boolean;
  /** What must be at the key in the end, given the racers' answers. */
  readonly outcome: (answers: readonly BitsResponse[]) => Presence;
  /** Outcomes that some schedule must reach, so the exploration covers both orders. */
  readonly reaches: readonly ("present" | "absent")[];
  /** The service's limits, when not RACE_LIMITS. */
  readonly limits?: FragmentLimits;
  /**
   * Staging fragments are acknowledged without a record write (docs/durability.md): the set-up
   * leaves the record behind its staged tail, which the racers, new instances, rebuild.
   */
  readonly defer?: boolean;
}

const frag = (start: number, end: number): FragmentPacket => ({ kind: "fragment", start, end });
const CLOSE: Packet = { kind: "Close-Session" };
const CANCEL: Packet = { kind: "Cancel-Session" };
const E2 = 2 * PART - 300 * K; // part 2 partly staged; a fragment from here completes it
const E9 = 9 * MiB;
const LAST = TOTAL - 600 * K;
const isCode = (answer: BitsResponse | undefined, code: string) =>
  answer?.status === 500 && answer.headers["BITS-Error-Code"] === code;

/**
 * Two parts: the first, [0, 6 MiB), more than the 5 MiB one request may assemble here, built
 * from pieces [0, 5 MiB) and [5, 6 MiB) and copied into place (docs/large-files.md).
 */
const BUILT_LIMITS: FragmentLimits = { ...RACE_LIMITS, maxParts: 2, maxAssembledBytes: 5 * MiB };
const SEAL = 6 * MiB - 300 * K; // the first part's last piece partly staged

const SCENARIOS: readonly Scenario[] = [
  {
    name: "the same fragment twice, each completing a built part (piece, seal, copy)",
    prefix: SEAL,
    racers: [frag(SEAL, SEAL + 700 * K), frag(SEAL, SEAL + 700 * K)],
    mayEnd: false,
    outcome: () => "present",
    reaches: ["present"],
    limits: BUILT_LIMITS,
  },
  {
    name: "the same part-completing fragment twice",
    prefix: E2,
    racers: [frag(E2, E2 + 700 * K), frag(E2, E2 + 700 * K)],
    mayEnd: false,
    outcome: () => "present",
    reaches: ["present"],
  },
  {
    name: "overlapping fragments, one crossing a part boundary",
    prefix: E9,
    racers: [frag(E9 - 100 * K, E9 + 700 * K), frag(E9, E9 + 1200 * K)],
    mayEnd: false,
    outcome: () => "present",
    reaches: ["present"],
  },
  {
    name: "three handlers: a duplicate and an overlap",
    prefix: E9,
    racers: [
      frag(E9, E9 + 1200 * K),
      frag(E9 - 100 * K, E9 + 700 * K),
      frag(E9 - 100 * K, E9 + 700 * K),
    ],
    mayEnd: false,
    outcome: () => "present",
    reaches: ["present"],
  },
  {
    name: "Close-Session racing the final fragment",
    prefix: LAST,
    racers: [frag(LAST, TOTAL), CLOSE],
    mayEnd: true,
    // A 200 claiming every byte means the file was whole before Close decided: it must appear.
    // NOT_FOUND means the session ended without those bytes: it must not.
    outcome: ([last]) =>
      last?.status === 200 && last.headers["BITS-Received-Content-Range"] === String(TOTAL)
        ? "present"
        : isCode(last, NOT_FOUND)
          ? "absent"
          : "either",
    reaches: ["present", "absent"],
  },
  {
    name: "Cancel-Session racing a fragment",
    prefix: E2,
    racers: [frag(E2, E2 + 700 * K), CANCEL],
    mayEnd: true,
    outcome: ([, cancel]) => (cancel?.status === 200 ? "absent" : "either"),
    reaches: ["absent"],
  },
  {
    name: "Close-Session racing Cancel-Session on a complete session",
    prefix: TOTAL,
    racers: [CLOSE, CANCEL],
    mayEnd: true,
    outcome: () => "either",
    reaches: ["present", "absent"],
  },
  {
    name: "deferred records: two instances rebuild the tail at once, racing a part-completing fragment",
    prefix: E2,
    racers: [frag(E2, E2 + 700 * K), frag(E2, E2 + 700 * K)],
    mayEnd: false,
    outcome: () => "present",
    reaches: ["present"],
    defer: true,
  },
  {
    name: "deferred records: overlapping fragments past a lagging record",
    prefix: E9,
    racers: [frag(E9 - 100 * K, E9 + 700 * K), frag(E9, E9 + 1200 * K)],
    mayEnd: false,
    outcome: () => "present",
    reaches: ["present"],
    defer: true,
  },
  {
    name: "deferred records: Cancel-Session racing a fragment past a lagging record",
    prefix: E2,
    racers: [frag(E2, E2 + 700 * K), CANCEL],
    mayEnd: true,
    outcome: ([, cancel]) => (cancel?.status === 200 ? "absent" : "either"),
    reaches: ["absent"],
    defer: true,
  },
  {
    name: "Close-Session racing Close-Session",
    prefix: TOTAL,
    racers: [CLOSE, CLOSE],
    mayEnd: true,
    outcome: () => "present",
    reaches: ["present"],
  },
];

interface Stores {
  readonly sessions: SessionStore;
  readonly objects: ObjectStore;
  uploadGone(key: string, uploadId: string): Promise<boolean>;
}

function memoryStores(
  sessions = new MemorySessionStore(),
  objects = new MemoryObjectStore(),
): Stores {
  return {
    sessions,
    objects,
    // Through the port, as uploadIsGone does on S3: a part upload fails once the upload is gone.
    async uploadGone(key, uploadId) {
      return objects.uploadPart(key, uploadId, 1, new Uint8Array(1)).then(
        () => false,
        () => true,
      );
    },
  };
}

async function standInStores(kind: StandInKind = "fauxqs"): Promise<Stores> {
  const storage = await freshStorage(kind);
  return {
    ...storage,
    uploadGone: (key, uploadId) => uploadIsGone(storage.bucket, key, uploadId, kind),
  };
}

function send(service: UploadService, id: string, path: string, packet: Packet) {
  return packet.kind === "fragment"
    ? fragment(service, id, DATA, packet.start, packet.end - 1, path)
    : endSession(service, packet.kind, id, path);
}

const label = (packet: Packet) =>
  packet.kind === "fragment" ? `[${packet.start}, ${packet.end})` : packet.kind;

const show = (answer: BitsResponse) =>
  [
    answer.status,
    answer.headers["BITS-Error-Code"],
    answer.headers["BITS-Received-Content-Range"] &&
      `BRCR ${answer.headers["BITS-Received-Content-Range"]}`,
  ]
    .filter(Boolean)
    .join(" ");

/** Bytes sent from 0 without a hole, counting every fragment sent so far. */
function inOrder(ranges: readonly { start: number; end: number }[]): number {
  let covered = 0;
  for (const range of [...ranges].sort((a, b) => a.start - b.start)) {
    if (range.start > covered) break;
    covered = Math.max(covered, range.end);
  }
  return covered;
}

/**
 * Problems with one answer: not a well-formed Ack, a status the protocol does not allow here,
 * or a BITS-Received-Content-Range past the bytes sent in order.
 */
function judge(packet: Packet, answer: BitsResponse, sent: number, mayEnd: boolean): string[] {
  const problems: string[] = [];
  const h = answer.headers;
  if (h["BITS-Packet-Type"] !== "Ack" || h["Content-Length"] !== "0") problems.push("not an Ack");
  const code = h["BITS-Error-Code"];
  const error = answer.status !== 200 && answer.status !== 416;
  if (error !== (code !== undefined) || (error && h["BITS-Error-Context"] !== "0x5")) {
    problems.push("error headers do not match the status");
  }
  const allowed =
    answer.status === 200 ||
    (answer.status === 500 && (code === E_FAIL || (mayEnd && code === NOT_FOUND))) ||
    (answer.status === 416 && packet.kind === "fragment");
  if (!allowed) problems.push("status not allowed here");
  if (packet.kind === "fragment" && (answer.status === 200 || answer.status === 416)) {
    const received = Number(h["BITS-Received-Content-Range"]);
    if (!Number.isSafeInteger(received) || received < 0 || received > sent) {
      problems.push(`BITS-Received-Content-Range past the ${sent} bytes sent in order`);
    } else if (answer.status === 416 && received >= packet.start) {
      problems.push("416 although the fragment starts within the bytes received");
    }
  }
  return problems.map((problem) => `${label(packet)} answered ${show(answer)}: ${problem}`);
}

interface Tally {
  bounded: number;
  pruned: number;
  random: number;
  present: number;
  absent: number;
  eFail: number;
}

const stats = new Map<string, Tally>();

function tally(key: string): Tally {
  let entry = stats.get(key);
  if (entry === undefined) {
    entry = { bounded: 0, pruned: 0, random: 0, present: 0, absent: 0, eFail: 0 };
    stats.set(key, entry);
  }
  return entry;
}

/** A session ready to race on: created, and the prefix sent in order. */
interface Prepared {
  readonly stores: Stores;
  readonly id: string;
  readonly uploadId: string;
  readonly path: string;
  /** Keys in the bucket before the session was created. */
  readonly before: ReadonlySet<string>;
}

async function setUp(stores: Stores, scenario: Scenario, path: string): Promise<Prepared> {
  const { sessions, objects } = stores;
  const plain = serviceOver(sessions, objects, {
    limits: scenario.limits ?? RACE_LIMITS,
    deferStagedRecords: scenario.defer,
  }).service;
  const before = new Set((await objects.list("")).map((object) => object.key));
  const id = await createSession(plain, path);
  const uploadId = (await sessions.get(id))?.uploadId;
  if (uploadId === undefined) throw new Error("Create-Session stored no record");
  // The first part whole, then 3 MiB fragments that stop at part ends: staged segments wait.
  for (let start = 0, end = 0; start < scenario.prefix; start = end) {
    const partEnd = (Math.floor(start / PART) + 1) * PART;
    end = Math.min(scenario.prefix, partEnd, start === 0 ? PART : start + 3 * MiB);
    const answer = await send(plain, id, path, frag(start, end));
    if (answer.status !== 200 || answer.headers["BITS-Received-Content-Range"] !== `${end}`) {
      throw new Error(`set-up fragment [${start}, ${end}) answered ${show(answer)}`);
    }
  }
  return { stores, id, uploadId, path, before };
}

/** A deep copy of a fake, state and class, so the set-up runs once per scenario. */
const copyOf = <T extends object>(store: T): T =>
  Object.assign(Object.create(Object.getPrototypeOf(store)), structuredClone({ ...store }));

/**
 * A copy of the object store's state that shares the bytes: the fake never changes a stored
 * body or part in place (it copies what it is given and what it hands out), so only the maps
 * need copying. Cloning megabytes of parts for every schedule was a tenth of the exploration.
 */
function objectsCopy(store: MemoryObjectStore): MemoryObjectStore {
  const copy = new MemoryObjectStore();
  for (const [key, object] of store.objects) copy.objects.set(key, object);
  for (const [id, upload] of store.uploads) {
    copy.uploads.set(id, { ...upload, parts: new Map(upload.parts) });
  }
  return copy;
}

/** Fresh fakes for every schedule, each a copy of one set-up session. */
function onMemory(scenario: Scenario): () => Promise<Prepared> {
  const sessions = new MemorySessionStore();
  const objects = new MemoryObjectStore();
  let ready: Promise<Prepared> | undefined;
  return async () => {
    ready ??= setUp(memoryStores(sessions, objects), scenario, "/race/file.bin");
    const prepared = await ready;
    return { ...prepared, stores: memoryStores(copyOf(sessions), objectsCopy(objects)) };
  };
}

/** One bucket and table for a scenario, a new session (and key) for every schedule. */
function onStandIns(scenario: Scenario, stores: Stores): () => Promise<Prepared> {
  let runs = 0;
  return () => {
    runs += 1;
    return setUp(stores, scenario, `/race/run-${runs}.bin`);
  };
}

/** One execution of a scenario: a prepared session, the race under `schedule`, the follower, the checks. */
function execution(
  scenario: Scenario,
  backend: string,
  prepare: () => Promise<Prepared>,
): Execution {
  return async (schedule: Schedule) => {
    const { stores, id, uploadId, path, before } = await prepare();
    const { sessions, objects, uploadGone } = stores;
    const limits = scenario.limits ?? RACE_LIMITS;
    const settings = { limits, deferStagedRecords: scenario.defer };
    const plain = serviceOver(sessions, objects, settings).service;
    const key = path.slice(1);
    const ranges = [{ start: 0, end: scenario.prefix }];
    const problems: string[] = [];
    const log: string[] = [];
    for (const packet of scenario.racers) if (packet.kind === "fragment") ranges.push(packet);
    const leftovers = async () =>
      (await objects.list("")).filter((o) => !before.has(o.key) && o.key !== key).map((o) => o.key);
    const cleanUp = async (left: string[]) => {
      // The stand-ins are shared by every execution of a scenario: leave them as found.
      await objects.delete([key, ...left]);
      await objects.abortUpload(key, uploadId);
    };
    let settled: PromiseSettledResult<BitsResponse>[];
    try {
      settled = await schedule.race(
        scenario.racers.map(
          (packet) => (gate) =>
            send(gatedService(sessions, objects, gate, settings), id, path, packet),
        ),
      );
    } catch (error) {
      if (error instanceof Pruned) await cleanUp(await leftovers());
      throw error;
    }
    const answers: BitsResponse[] = [];
    let resume = scenario.prefix;
    settled.forEach((result, i) => {
      const packet = scenario.racers[i] as Packet;
      if (result.status === "rejected") {
        problems.push(`${label(packet)} threw instead of answering: ${String(result.reason)}`);
        return;
      }
      const answer = result.value;
      answers[i] = answer;
      log.push(`racer ${i} ${label(packet)}: ${show(answer)}`);
      // A Close or Cancel reaches a live session, so it answers 200 whoever wins (the loser finds
      // the decision or the tombstone); only a fragment may find its session ended.
      const mayEnd = scenario.mayEnd && packet.kind === "fragment";
      problems.push(...judge(packet, answer, inOrder(ranges), mayEnd));
      if (isCode(answer, E_FAIL)) tally(`${backend}: ${scenario.name}`).eFail += 1;
      const received = Number(answer.headers["BITS-Received-Content-Range"]);
      const told = packet.kind === "fragment" && (answer.status === 200 || answer.status === 416);
      if (told && received > resume) {
        resume = received;
      }
    });

    // The follower: a client resuming from the furthest BITS-Received-Content-Range it was told.
    let ended = false;
    for (let requests = 0; resume < TOTAL && !ended; requests++) {
      if (requests >= FOLLOWER_REQUESTS) {
        problems.push(`follower still at ${resume} after ${requests} fragments`);
        break;
      }
      const packet = frag(resume, Math.min(TOTAL, resume + limits.maxFragmentBytes));
      ranges.push(packet);
      const answer = await send(plain, id, path, packet);
      log.push(`follower ${label(packet)}: ${show(answer)}`);
      problems.push(...judge(packet, answer, inOrder(ranges), scenario.mayEnd));
      if (answer.status === 200 || answer.status === 416) {
        resume = Number(answer.headers["BITS-Received-Content-Range"]);
      } else if (isCode(answer, NOT_FOUND)) {
        ended = true;
      } else {
        problems.push(`follower stuck: ${label(packet)} answered ${show(answer)} with no race on`);
        break;
      }
    }
    const close = await send(plain, id, path, CLOSE);
    log.push(`follower Close-Session: ${show(close)}`);
    problems.push(...judge(CLOSE, close, inOrder(ranges), scenario.mayEnd));
    if (isCode(close, E_FAIL)) problems.push("follower's Close-Session failed with no race on");

    const stored = await objects.get(key);
    const presence = stored === undefined ? "absent" : "present";
    tally(`${backend}: ${scenario.name}`)[presence] += 1;
    // Byte equality, the same as equal SHA-256 and quicker; the digest goes in the message.
    if (stored !== undefined && !Buffer.from(stored).equals(DATA)) {
      problems.push(
        `the object (${stored.length} bytes, SHA-256 ${sha256(stored)}) is not the file (${DIGEST})`,
      );
    }
    const allowed = scenario.outcome(answers);
    if (allowed !== "either" && allowed !== presence) {
      problems.push(`the object is ${presence}; after these answers it must be ${allowed}`);
    }
    const left = await leftovers();
    if (left.length > 0) {
      problems.push(
        `left behind: ${left.map((k) => k.replace(STAGING_PREFIX, "<staging>/")).join(", ")}`,
      );
    }
    if (!(await uploadGone(key, uploadId))) problems.push("the multipart upload is still open");
    await cleanUp(left);
    if (problems.length > 0) {
      throw new Error([...problems, "answers:", ...log.map((line) => `  ${line}`)].join("\n"));
    }
  };
}

function expectClean(scenario: Scenario, backend: string, exploration: Exploration) {
  const hint = (failure: Failure) =>
    `\n  RACE_REPLAY='${JSON.stringify({ scenario: scenario.name, backend, choices: failure.choices })}'`;
  const name = `${backend}: ${scenario.name}`;
  expect(exploration.failures.length, describeFailures(name, exploration, hint)).toBe(0);
}

export type Backend = "memory" | "stand-ins" | "moto";

/** How far one backend's exploration goes. */
export interface Plan {
  readonly maxPreemptions: number;
  readonly maxSchedules?: number;
  readonly random: number;
}

/**
 * At the default depth one preemption on the fakes, which finds every race of two calls, and a
 * few schedules on the stand-ins; `npm run test:deep` explores two preemptions and more
 * schedules.
 */
export const PLANS: Readonly<Record<Backend, Plan>> = {
  memory: depth({ maxPreemptions: 1, random: 4 }, { maxPreemptions: 2, random: 10 }),
  "stand-ins": depth(
    { maxPreemptions: 1, maxSchedules: 3, random: 1 },
    { maxPreemptions: 1, maxSchedules: 16, random: 2 },
  ),
  /** moto is Python and slower: fewer schedules, the same checks. */
  moto: { maxPreemptions: 1, maxSchedules: 3, random: 0 },
};

const titles: Readonly<Record<Backend, (plan: Plan) => string>> = {
  memory: (p) =>
    `on the in-memory fakes: every schedule with up to ${p.maxPreemptions} preemptions, and ${p.random} random ones`,
  "stand-ins": (p) =>
    `on DynamoDB Local and fauxqs: up to ${p.maxSchedules} schedules with at most ${p.maxPreemptions} preemption, and ${p.random} random ones`,
  moto: (p) =>
    `on moto: up to ${p.maxSchedules} schedules with at most ${p.maxPreemptions} preemption, and ${p.random} random`,
};

async function explore(
  scenario: Scenario,
  backend: string,
  prepare: () => Promise<Prepared>,
  plan: { maxPreemptions: number; maxSchedules?: number; random: number },
) {
  const execute = execution(scenario, backend, prepare);
  const bounded = await exploreBounded(execute, plan);
  const random = await exploreRandom(execute, { count: plan.random, firstSeed: 1 });
  const entry = tally(`${backend}: ${scenario.name}`);
  Object.assign(entry, {
    bounded: bounded.schedules,
    pruned: bounded.pruned,
    random: random.schedules,
  });
  expectClean(scenario, backend, bounded);
  expectClean(scenario, backend, random);
  // The gates work: runs under different schedules took different paths.
  expect(bounded.schedules + bounded.pruned).toBeGreaterThan(2);
  return entry;
}

/** The prepared sessions of a scenario on `backend`. */
async function preparer(scenario: Scenario, backend: Backend): Promise<() => Promise<Prepared>> {
  if (backend === "memory") return onMemory(scenario);
  return onStandIns(scenario, await standInStores(backend === "moto" ? "moto" : "fauxqs"));
}

/**
 * Every scenario explored on one backend, under `PLANS[backend]`. One test file per backend, so
 * that the runner's workers explore them side by side.
 */
export function interleavings(backend: Backend) {
  const plan = PLANS[backend];
  describe("every interleaving of handlers of one session keeps the guarantee stated in docs/guarantee.md", () => {
    afterAll(() => {
      for (const [key, t] of stats) {
        if (t.bounded + t.random === 0) continue; // a replay
        console.info(
          `${key}: ${t.bounded} bounded schedules checked, ${t.pruned} skipped as equivalent, ` +
            `${t.random} random; object present ${t.present}, absent ${t.absent}; ${t.eFail} E_FAIL answers`,
        );
      }
    });

    describe(titles[backend](plan), () => {
      it.each(SCENARIOS)("$name", async (scenario) => {
        const entry = await explore(scenario, backend, await preparer(scenario, backend), plan);
        if (backend !== "memory") return;
        for (const outcome of scenario.reaches) {
          expect(entry[outcome], `some schedule leaves the object ${outcome}`).toBeGreaterThan(0);
        }
      });
    });

    const wanted = process.env.RACE_REPLAY;
    const replayed = wanted === undefined ? undefined : (JSON.parse(wanted) as Replayed);
    it.skipIf(replayed?.backend !== backend)("replay RACE_REPLAY", async () => {
      const { scenario: name, choices } = replayed as Replayed;
      const scenario = SCENARIOS.find((s) => s.name === name);
      if (scenario === undefined) throw new Error(`no scenario named "${name}"`);
      await execution(scenario, backend, await preparer(scenario, backend))(replay(choices));
    });
  });
}

/** A schedule printed by a failure, to run again. */
interface Replayed {
  readonly scenario: string;
  readonly backend: string;
  readonly choices: number[];
}
