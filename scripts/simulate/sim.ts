/**
 * A fleet of Windows BITS clients against the stack, in virtual time: an event queue, no I/O,
 * deterministic for a seed. What each request costs comes from the recorded profile
 * (profile.json); what the stack can take comes from AWS's documented limits (model.ts) and the
 * stack's parameters. docs/capacity.md describes the model.
 */

import { seeded } from "../../test/support/windows-client.ts";
import { noCounts } from "../bench/meter.ts";
import { usdPerGB } from "../bench/prices.ts";
import {
  AWS,
  FRONT_DOORS,
  type FrontDoor,
  fragmentClass,
  LATENCY_MS,
  MAX_CLIENT_FRAGMENT,
  MIN_FRAGMENT,
  type RequestClass,
} from "./model.ts";
import type { Profile } from "./profile.ts";
import type { ClassCost } from "./record.ts";

/** The stack's parameters (serverless.yml names) and the fleet's shape. */
export interface Scenario {
  readonly clients: number;
  /** Seconds over which the machines' scheduled tasks start. */
  readonly windowSeconds: number;
  readonly fileBytes: number;
  readonly frontDoor: FrontDoor;
  /** Distinct principals (slots) the machines are counted in; each machine its own by default. */
  readonly principals: number;
  /** The function's reserved concurrency; undefined for none (the account's unreserved pool). */
  readonly reservedConcurrency: number | undefined;
  readonly accountConcurrency: number;
  readonly maxSessions: number;
  readonly maxSessionsPerPrincipal: number;
  /** Items the count of all open sessions is spread over (sessionCounterShards). */
  readonly sessionCounterShards: number;
  /** -1 for no cap. */
  readonly tableMaxWriteUnits: number;
  readonly tableMaxReadUnits: number;
  /** Units per second the table is warmed to (tableWarmWriteUnits); 0 for a new table's. */
  readonly tableWarmWriteUnits: number;
  readonly tableWarmReadUnits: number;
  readonly partSize: number;
  readonly memorySize: number;
  /** Prefixes the destination keys are spread over (one when the fleet writes to one folder). */
  readonly destinationPrefixes: number;
  /** The BITS job's MinimumRetryDelay and NoProgressTimeout, seconds. */
  readonly retryDelaySeconds: number;
  readonly noProgressSeconds: number;
  /** Upload bandwidth of one machine, bytes per second, and its round trip, ms. */
  readonly clientBytesPerSecond: number;
  readonly roundTripMs: number;
  /** Virtual seconds after which the simulation stops. */
  readonly horizonSeconds: number;
  readonly seed: number;
}

export type Refusal =
  | "lambdaThrottle"
  | "serverFull"
  | "principalFull"
  | "tableWriteCap"
  | "tableReadCap"
  | "counterItem"
  | "s3Prefix";

export interface SampleRow {
  readonly t: number;
  readonly completed: number;
  readonly open: number;
  readonly concurrency: number;
  readonly failed: number;
}

export interface Result {
  readonly scenario: Scenario;
  readonly completed: number;
  readonly gaveUp: number;
  readonly unfinished: number;
  /** Seconds from the window's start. */
  readonly finish: {
    readonly p50: number;
    readonly p90: number;
    readonly p99: number;
    readonly last: number;
  };
  readonly requests: number;
  readonly refused: Record<Refusal, number>;
  /** 413 from the front door (the client shrinks its fragments; no function runs). */
  readonly frontDoor413: number;
  /** Times a job waited its retry delay. */
  readonly retries: number;
  readonly peak: {
    readonly concurrency: number;
    readonly openSessions: number;
    readonly tableWriteUnitsPerSecond: number;
    readonly tableReadUnitsPerSecond: number;
    readonly counterItemWriteUnitsPerSecond: number;
    readonly s3PutsPerSecond: number;
    readonly s3GetsPerSecond: number;
    readonly destinationPrefixPutsPerSecond: number;
  };
  readonly usage: {
    readonly lambdaRequests: number;
    readonly lambdaGbSeconds: number;
    readonly s3Puts: number;
    readonly s3Gets: number;
    readonly writeUnits: number;
    readonly readUnits: number;
  };
  readonly costUsd: number;
  readonly samples: SampleRow[];
}

/**
 * How long a transaction holds the items it writes, and the store's mean backoff after a
 * conflict: assumptions, not documented figures (docs/capacity.md, "Transaction conflicts").
 */
const TX_HOLD_MS = 5;
const CONFLICT_BACKOFF_MS = 30;

/** A binary min-heap of events keyed by time; ties keep insertion order. */
class Queue {
  private times: number[] = [];
  private ids: number[] = [];
  private order: number[] = [];
  private counter = 0;

  get size() {
    return this.times.length;
  }

  push(time: number, id: number) {
    const { times, ids, order } = this;
    let i = times.length;
    times.push(time);
    ids.push(id);
    order.push(this.counter++);
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.less(i, parent)) break;
      this.swap(i, parent);
      i = parent;
    }
  }

  /** Removes the earliest event: [time, id]. */
  pop(): [number, number] {
    const { times, ids, order } = this;
    const top: [number, number] = [times[0] as number, ids[0] as number];
    const last = times.length - 1;
    this.swap(0, last);
    times.pop();
    ids.pop();
    order.pop();
    for (let i = 0; ; ) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < times.length && this.less(l, m)) m = l;
      if (r < times.length && this.less(r, m)) m = r;
      if (m === i) break;
      this.swap(i, m);
      i = m;
    }
    return top;
  }

  private less(a: number, b: number) {
    const ta = this.times[a] as number;
    const tb = this.times[b] as number;
    return ta < tb || (ta === tb && (this.order[a] as number) < (this.order[b] as number));
  }

  private swap(a: number, b: number) {
    const { times, ids, order } = this;
    const t = times[a] as number;
    times[a] = times[b] as number;
    times[b] = t;
    const i = ids[a] as number;
    ids[a] = ids[b] as number;
    ids[b] = i;
    const o = order[a] as number;
    order[a] = order[b] as number;
    order[b] = o;
  }
}

/** Per-second consumption of one limited resource. */
class Rate {
  private second = -1;
  used = 0;
  peak = 0;
  /** Each past second's use, for on-demand scaling (which follows the previous peak). */
  readonly history: number[] = [];

  at(second: number) {
    if (second !== this.second) {
      if (this.second >= 0) this.history[this.second] = this.used;
      this.second = second;
      this.used = 0;
    }
    return this;
  }

  fits(amount: number, limit: number) {
    return limit < 0 || this.used + amount <= limit;
  }

  take(amount: number) {
    this.used += amount;
    if (this.used > this.peak) this.peak = this.used;
  }
}

type Phase = "create" | "fragment" | "close" | "done" | "failed";

interface Client {
  phase: Phase;
  slot: number;
  shard: number;
  offset: number;
  size: number;
  /** The largest size that has not drawn a 413. */
  ceiling: number;
  lastProgress: number;
  /** What is in flight: its class and body length. */
  inflight: RequestClass | "";
  body: number;
  /** When the request reaches the function; when its answer is back. */
  awaiting: "arrive" | "finish" | "send";
  answer: number;
  finishedAt: number;
}

const NO_REFUSALS = (): Record<Refusal, number> => ({
  lambdaThrottle: 0,
  serverFull: 0,
  principalFull: 0,
  tableWriteCap: 0,
  tableReadCap: 0,
  counterItem: 0,
  s3Prefix: 0,
});

/** Milliseconds a request spends in the function: its recorded calls at AWS latencies. */
export function handlerMs(cost: ClassCost, bodyBytes: number): number {
  const s3 = cost.s3;
  return (
    cost.dynamodb.calls * LATENCY_MS.dynamodb +
    (s3.stagingPuts + s3.destinationPuts) * LATENCY_MS.s3Put +
    (s3.stagingGets + s3.destinationGets) * LATENCY_MS.s3Get +
    s3.deletes * LATENCY_MS.s3Delete +
    bodyBytes / LATENCY_MS.s3BytesPerMs +
    LATENCY_MS.cpuPerRequest +
    (bodyBytes / 1048576) * LATENCY_MS.cpuPerMiB
  );
}

export function simulate(scenario: Scenario, profile: Profile): Result {
  const random = seeded(scenario.seed);
  const costs = profile.doors[scenario.frontDoor];
  const door = FRONT_DOORS[scenario.frontDoor];
  const clients: Client[] = [];
  const queue = new Queue();
  for (let i = 0; i < scenario.clients; i++) {
    clients.push({
      phase: "create",
      slot: i % Math.max(1, scenario.principals),
      shard: 0,
      offset: 0,
      size: MIN_FRAGMENT,
      ceiling: MAX_CLIENT_FRAGMENT,
      lastProgress: 0,
      inflight: "",
      body: 0,
      awaiting: "send",
      answer: 0,
      finishedAt: 0,
    });
    const start = random() * scenario.windowSeconds * 1000;
    (clients[i] as Client).lastProgress = start;
    queue.push(start, i);
  }

  const concurrencyCap = Math.min(
    scenario.reservedConcurrency ?? scenario.accountConcurrency,
    scenario.accountConcurrency,
  );
  const refused = NO_REFUSALS();
  const tableWrites = new Rate();
  const tableReads = new Rate();
  const counterItems = Array.from({ length: scenario.sessionCounterShards }, () => new Rate());
  const slotItems = new Map<number, Rate>();
  const destPrefixes = Array.from({ length: scenario.destinationPrefixes }, () => new Rate());
  const s3Puts = new Rate();
  const s3Gets = new Rate();
  const shardOpen = new Array<number>(scenario.sessionCounterShards).fill(0);
  const shardCap = Math.ceil(scenario.maxSessions / scenario.sessionCounterShards);
  const slotOpen = new Map<number, number>();
  let open = 0;
  let peakOpen = 0;
  let concurrency = 0;
  let peakConcurrency = 0;
  let firstInvoke = -1;
  let requests = 0;
  let frontDoor413 = 0;
  let retries = 0;
  let completed = 0;
  let gaveUp = 0;
  const usage = { lambdaRequests: 0, lambdaMs: 0, s3Puts: 0, s3Gets: 0, wcu: 0, rcu: 0 };
  const samples: SampleRow[] = [];
  const sampleEvery = 10_000;
  let nextSample = 0;
  const horizon = scenario.horizonSeconds * 1000;

  /**
   * On-demand capacity: what the table is warmed to (a new table: 4,000 WCU / 12,000 RCU), or
   * double a peak at least 30 minutes old, whichever is more; never above the table's maximum.
   */
  const onDemand = (
    rate: Rate,
    second: number,
    warm: number,
    cap: number,
    old: { peak: number; upTo: number },
  ) => {
    for (; old.upTo <= second - AWS.onDemandPeakWindowSeconds; old.upTo += 1) {
      old.peak = Math.max(old.peak, rate.history[old.upTo] ?? 0);
    }
    const level = Math.max(warm, 2 * old.peak);
    return cap < 0 ? level : Math.min(cap, level);
  };
  const oldWrites = { peak: 0, upTo: 0 };
  const oldReads = { peak: 0, upTo: 0 };
  const warmWrites = Math.max(AWS.onDemandInitialWcu, scenario.tableWarmWriteUnits);
  const warmReads = Math.max(AWS.onDemandInitialRcu, scenario.tableWarmReadUnits);
  let demandSecond = -1;
  let writeLimit = 0;
  let readLimit = 0;

  const transient = (id: number, client: Client, now: number) => {
    const wait = scenario.retryDelaySeconds * 1000;
    if (now + wait - client.lastProgress > scenario.noProgressSeconds * 1000) {
      client.phase = "failed";
      gaveUp += 1;
      return;
    }
    retries += 1;
    client.awaiting = "send";
    queue.push(now + wait, id);
  };

  const release = (client: Client) => {
    open -= 1;
    shardOpen[client.shard] = (shardOpen[client.shard] ?? 1) - 1;
    slotOpen.set(client.slot, (slotOpen.get(client.slot) ?? 1) - 1);
  };

  while (queue.size > 0) {
    const [now, id] = queue.pop();
    if (now > horizon) break;
    while (now >= nextSample) {
      samples.push({ t: nextSample / 1000, completed, open, concurrency, failed: gaveUp });
      nextSample += sampleEvery;
    }
    const client = clients[id] as Client;
    const second = Math.floor(now / 1000);

    if (client.awaiting === "send") {
      // The client sends its next packet; the body crosses its link before the function runs.
      let cls: RequestClass;
      let body = 0;
      if (client.phase === "create") cls = "create";
      else if (client.phase === "close") cls = "close";
      else {
        body = Math.min(client.size, scenario.fileBytes - client.offset);
        cls = fragmentClass(
          client.offset,
          client.offset + body,
          scenario.fileBytes,
          scenario.partSize,
        );
      }
      requests += 1;
      if (body > door.bodyLimit) {
        // The front door refuses it before any function runs; the client halves and resends.
        frontDoor413 += 1;
        client.ceiling = Math.max(MIN_FRAGMENT, Math.floor(client.size / 2));
        client.size = client.ceiling;
        queue.push(now + scenario.roundTripMs, id);
        continue;
      }
      client.inflight = cls;
      client.body = body;
      client.awaiting = "arrive";
      queue.push(
        now + scenario.roundTripMs / 2 + (body / scenario.clientBytesPerSecond) * 1000,
        id,
      );
      continue;
    }

    if (client.awaiting === "arrive") {
      const cls = client.inflight as RequestClass;
      const cost = costs[cls];
      // Lambda: reserved concurrency, the account's, and burst scaling from the first request.
      if (firstInvoke < 0) firstInvoke = now;
      const burst = AWS.lambdaBurstPer10s * (1 + Math.floor((now - firstInvoke) / 10_000));
      if (concurrency >= Math.min(concurrencyCap, burst)) {
        refused.lambdaThrottle += 1;
        transient(id, client, now + scenario.roundTripMs / 2);
        continue;
      }
      if (second !== demandSecond) {
        demandSecond = second;
        writeLimit = onDemand(
          tableWrites,
          second,
          warmWrites,
          scenario.tableMaxWriteUnits,
          oldWrites,
        );
        readLimit = onDemand(tableReads, second, warmReads, scenario.tableMaxReadUnits, oldReads);
      }
      const wcu = cost.dynamodb.writeUnits;
      const rcu = cost.dynamodb.readUnits;
      const counterWcu = cost.dynamodb.writesByItem.allCounter ?? 0;
      const slotWcu = cost.dynamodb.writesByItem.slotCounter ?? 0;
      const destPuts = cost.s3.destinationPuts;
      const puts = cost.s3.stagingPuts + destPuts;
      const gets = cost.s3.stagingGets + cost.s3.destinationGets;
      if (cls === "create") client.shard = Math.floor(random() * scenario.sessionCounterShards);
      const shardRate = (counterItems[client.shard] as Rate).at(second);
      let slotRate = slotItems.get(client.slot);
      if (slotRate === undefined) {
        slotRate = new Rate();
        slotItems.set(client.slot, slotRate);
      }
      slotRate.at(second);
      const prefix = (destPrefixes[id % destPrefixes.length] as Rate).at(second);
      tableWrites.at(second);
      tableReads.at(second);
      s3Puts.at(second);
      s3Gets.at(second);
      let refusal: Refusal | undefined;
      if (!tableWrites.fits(wcu, writeLimit)) refusal = "tableWriteCap";
      else if (!tableReads.fits(rcu, readLimit)) refusal = "tableReadCap";
      else if (
        !shardRate.fits(counterWcu, AWS.partitionWcu) ||
        !slotRate.fits(slotWcu, AWS.partitionWcu)
      )
        refusal = "counterItem";
      else if (!prefix.fits(destPuts, AWS.s3PutPerPrefix)) refusal = "s3Prefix";
      else if (cls === "create") {
        if ((slotOpen.get(client.slot) ?? 0) >= scenario.maxSessionsPerPrincipal) {
          refusal = "principalFull";
        } else if ((shardOpen[client.shard] ?? 0) >= shardCap) refusal = "serverFull";
      }
      // Transactions writing a counter conflict with others writing it at the same moment; the
      // store retries a conflict up to 8 times (dynamodb-session-store.ts).
      let conflictMs = 0;
      if (refusal === undefined && counterWcu + slotWcu > 0) {
        const busy = (rate: Rate) => Math.max(rate.used, rate.history[second - 1] ?? 0) / 2;
        const p = Math.min(0.99, ((busy(shardRate) + busy(slotRate)) * TX_HOLD_MS) / 1000);
        if (random() < p ** 9) refusal = "counterItem";
        else conflictMs = (p / (1 - p)) * CONFLICT_BACKOFF_MS;
      }
      concurrency += 1;
      peakConcurrency = Math.max(peakConcurrency, concurrency);
      usage.lambdaRequests += 1;
      let ms = 0;
      if (refusal === "serverFull" || refusal === "principalFull") {
        // The create transaction ran and was refused: it was billed, and answered 503.
        ms = handlerMs(costs.create, 0);
        tableWrites.take(wcu);
        usage.wcu += wcu;
      } else if (refusal !== undefined) {
        // Throttled storage: the SDK's retries, then a 500 (transient for the client).
        ms = 300;
      } else {
        ms = handlerMs(cost, client.body) + conflictMs;
        tableWrites.take(wcu);
        tableReads.take(rcu);
        shardRate.take(counterWcu);
        slotRate.take(slotWcu);
        prefix.take(destPuts);
        s3Puts.take(puts);
        s3Gets.take(gets);
        usage.wcu += wcu;
        usage.rcu += rcu;
        usage.s3Puts += puts;
        usage.s3Gets += gets;
        if (cls === "create") {
          open += 1;
          peakOpen = Math.max(peakOpen, open);
          shardOpen[client.shard] = (shardOpen[client.shard] ?? 0) + 1;
          slotOpen.set(client.slot, (slotOpen.get(client.slot) ?? 0) + 1);
        } else if (cls === "close") release(client);
      }
      if (refusal !== undefined) refused[refusal] += 1;
      usage.lambdaMs += ms;
      client.answer = refusal === undefined ? 200 : 503;
      client.awaiting = "finish";
      queue.push(now + ms, id);
      continue;
    }

    // The function finished: the answer travels back and the client acts on it.
    concurrency -= 1;
    const back = now + scenario.roundTripMs / 2;
    if (client.answer !== 200) {
      transient(id, client, back);
      continue;
    }
    client.lastProgress = back;
    client.awaiting = "send";
    if (client.phase === "create") client.phase = "fragment";
    else if (client.phase === "fragment") {
      client.offset += client.body;
      client.size = Math.min(client.ceiling, client.size * 2);
      if (client.offset >= scenario.fileBytes) client.phase = "close";
    } else if (client.phase === "close") {
      client.phase = "done";
      client.finishedAt = back;
      completed += 1;
      continue;
    }
    queue.push(back, id);
  }
  samples.push({ t: nextSample / 1000, completed, open, concurrency, failed: gaveUp });

  const finishes = clients
    .filter((c) => c.phase === "done")
    .map((c) => c.finishedAt / 1000)
    .sort((a, b) => a - b);
  const pct = (p: number) =>
    finishes.length === 0
      ? Number.NaN
      : (finishes[Math.min(finishes.length - 1, Math.ceil(p * finishes.length) - 1)] as number);
  const gbSeconds = (usage.lambdaMs / 1000) * (scenario.memorySize / 1024);
  // usdPerGB of one GB is dollars: the benchmark's prices, applied to the whole night.
  const costUsd = usdPerGB(
    {
      ...noCounts(),
      s3Put: usage.s3Puts,
      s3Get: usage.s3Gets,
      dynamodbWriteUnits: usage.wcu,
      dynamodbReadUnits: usage.rcu,
    },
    1e9,
    {
      requests: usage.lambdaRequests,
      handlerSeconds: usage.lambdaMs / 1000,
      memoryMB: scenario.memorySize,
    },
  );
  const round = (x: number) => Math.round(x * 10) / 10;
  return {
    scenario,
    completed,
    gaveUp,
    unfinished: scenario.clients - completed - gaveUp,
    finish: {
      p50: round(pct(0.5)),
      p90: round(pct(0.9)),
      p99: round(pct(0.99)),
      last: round(pct(1)),
    },
    requests,
    refused,
    frontDoor413,
    retries,
    peak: {
      concurrency: peakConcurrency,
      openSessions: peakOpen,
      tableWriteUnitsPerSecond: round(tableWrites.peak),
      tableReadUnitsPerSecond: round(tableReads.peak),
      counterItemWriteUnitsPerSecond: round(Math.max(0, ...counterItems.map((r) => r.peak))),
      s3PutsPerSecond: round(s3Puts.peak),
      s3GetsPerSecond: round(s3Gets.peak),
      destinationPrefixPutsPerSecond: round(Math.max(0, ...destPrefixes.map((r) => r.peak))),
    },
    usage: {
      lambdaRequests: usage.lambdaRequests,
      lambdaGbSeconds: Math.round(gbSeconds),
      s3Puts: Math.round(usage.s3Puts),
      s3Gets: Math.round(usage.s3Gets),
      writeUnits: Math.round(usage.wcu),
      readUnits: Math.round(usage.rcu),
    },
    costUsd: Math.round(costUsd * 100) / 100,
    samples,
  };
}
