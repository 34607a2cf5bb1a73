/** The simulation's outputs: sizing, text report, markdown sizing table and the SVG plot. */
import type { Profile } from "./profile.ts";
import { handlerMs, type Result, type Scenario } from "./sim.ts";

/** Today's deployed defaults (serverless.yml params) and Windows' job defaults. */
export const TODAY: Omit<Scenario, "clients" | "windowSeconds" | "fileBytes" | "seed"> = {
  frontDoor: "alb",
  principals: Number.POSITIVE_INFINITY,
  reservedConcurrency: 50,
  accountConcurrency: 1_000,
  maxSessions: 10_000,
  maxSessionsPerPrincipal: 50,
  sessionCounterShards: 1,
  tableMaxWriteUnits: 4_000,
  tableMaxReadUnits: 4_000,
  tableWarmWriteUnits: 0,
  tableWarmReadUnits: 0,
  partSize: 8 * 1024 * 1024,
  memorySize: 1_024,
  destinationPrefixes: 1,
  retryDelaySeconds: 600,
  noProgressSeconds: 1_209_600,
  clientBytesPerSecond: 2_500_000,
  roundTripMs: 50,
  horizonSeconds: 86_400,
};

/** What one upload asks of the stack, from the profile: function seconds, write and read units. */
export function perUpload(profile: Profile, scenario: Scenario) {
  const costs = profile.doors[scenario.frontDoor];
  // Fragments double from 5 KB to the largest the front door passes (record.ts does the same).
  let lambdaMs = handlerMs(costs.create, 0) + handlerMs(costs.close, 0);
  let writeUnits = costs.create.dynamodb.writeUnits + costs.close.dynamodb.writeUnits;
  let readUnits = costs.create.dynamodb.readUnits + costs.close.dynamodb.readUnits;
  let requests = 2;
  const limit = scenario.frontDoor === "alb" ? 1_000_000 : 4_400_000;
  for (let offset = 0, size = 5 * 1024; offset < scenario.fileBytes; requests++) {
    const length = Math.min(size, scenario.fileBytes - offset);
    const end = offset + length;
    const cls =
      end >= scenario.fileBytes
        ? costs.fragmentFinal
        : Math.floor(end / scenario.partSize) > Math.floor(offset / scenario.partSize)
          ? costs.fragmentPart
          : costs.fragment;
    lambdaMs += handlerMs(cls, length);
    writeUnits += cls.dynamodb.writeUnits;
    readUnits += cls.dynamodb.readUnits;
    offset = end;
    if (size * 2 <= limit) size *= 2;
  }
  return { lambdaSeconds: lambdaMs / 1000, writeUnits, readUnits, requests };
}

const roundUp = (value: number, step: number) => Math.max(step, Math.ceil(value / step) * step);

/**
 * The sizing guide: enough of everything for the fleet's arrival rate with twofold headroom
 * (arrivals are random, and a burst second carries more than the average).
 */
export function sized(base: Scenario, profile: Profile): Scenario {
  const rate = base.clients / base.windowSeconds;
  const upload = perUpload(profile, base);
  const uploadSeconds =
    base.fileBytes / base.clientBytesPerSecond +
    (upload.requests * base.roundTripMs) / 1000 +
    upload.lambdaSeconds;
  const concurrency = roundUp(2 * rate * upload.lambdaSeconds, 50);
  const writes = roundUp(2 * rate * upload.writeUnits, 1_000);
  const reads = roundUp(2 * rate * upload.readUnits, 1_000);
  return {
    ...base,
    reservedConcurrency: concurrency,
    accountConcurrency: Math.max(base.accountConcurrency, concurrency + 100),
    tableMaxWriteUnits: writes,
    tableMaxReadUnits: reads,
    // On demand, a new table serves 4,000 WCU / 12,000 RCU at once: warm it to the night's need.
    tableWarmWriteUnits: writes,
    tableWarmReadUnits: reads,
    maxSessions: roundUp(4 * rate * uploadSeconds, 10_000),
    // Each create and each close is a transaction on one shard: at most about 20 a second on
    // each (counted twice for headroom) keeps conflicts between them rare.
    sessionCounterShards: Math.max(8, Math.ceil((2 * 2 * rate) / 20)),
  };
}

const fmt = (n: number) => (Number.isFinite(n) ? n.toLocaleString("en-US") : "none");
const minutes = (s: number) => (Number.isNaN(s) ? "-" : `${(s / 60).toFixed(1)} min`);

export function textReport(result: Result): string {
  const s = result.scenario;
  const r = result.refused;
  return [
    `${fmt(s.clients)} clients x ${fmt(s.fileBytes)} bytes, starting over ${s.windowSeconds} s, via ${s.frontDoor}`,
    `stack: reservedConcurrency=${s.reservedConcurrency ?? "none"} maxSessions=${fmt(s.maxSessions)} ` +
      `maxSessionsPerPrincipal=${fmt(s.maxSessionsPerPrincipal)} sessionCounterShards=${s.sessionCounterShards} ` +
      `tableMaxWriteUnits=${s.tableMaxWriteUnits} tableMaxReadUnits=${s.tableMaxReadUnits} ` +
      `tableWarmWriteUnits=${s.tableWarmWriteUnits} tableWarmReadUnits=${s.tableWarmReadUnits}`,
    `client: retry delay ${s.retryDelaySeconds} s, ${fmt(s.clientBytesPerSecond)} B/s, principals ${fmt(s.principals)}`,
    "",
    `completed ${fmt(result.completed)}, gave up ${fmt(result.gaveUp)}, unfinished at ${s.horizonSeconds / 3600} h ${fmt(result.unfinished)}`,
    `finished (from the window's start): p50 ${minutes(result.finish.p50)}, p90 ${minutes(result.finish.p90)}, ` +
      `p99 ${minutes(result.finish.p99)}, last ${minutes(result.finish.last)}`,
    `requests ${fmt(result.requests)}; front-door 413 ${fmt(result.frontDoor413)}; retries after the delay ${fmt(result.retries)}`,
    `refused: lambda throttle ${fmt(r.lambdaThrottle)}, server full ${fmt(r.serverFull)}, principal full ${fmt(r.principalFull)}, ` +
      `table write cap ${fmt(r.tableWriteCap)}, table read cap ${fmt(r.tableReadCap)}, counter item ${fmt(r.counterItem)}, S3 prefix ${fmt(r.s3Prefix)}`,
    `peak: concurrency ${fmt(result.peak.concurrency)}, open sessions ${fmt(result.peak.openSessions)}, ` +
      `table ${fmt(result.peak.tableWriteUnitsPerSecond)} WCU/s ${fmt(result.peak.tableReadUnitsPerSecond)} RCU/s, ` +
      `hottest counter item ${fmt(result.peak.counterItemWriteUnitsPerSecond)} WCU/s`,
    `peak S3: ${fmt(result.peak.s3PutsPerSecond)} PUT/s and ${fmt(result.peak.s3GetsPerSecond)} GET/s in all, ` +
      `${fmt(result.peak.destinationPrefixPutsPerSecond)} PUT/s on the busiest destination prefix`,
    `cost of the night: $${result.costUsd.toFixed(2)} (Lambda ${fmt(result.usage.lambdaGbSeconds)} GB-s, ` +
      `${fmt(result.usage.lambdaRequests)} invocations; S3 ${fmt(result.usage.s3Puts)} PUT ${fmt(result.usage.s3Gets)} GET; ` +
      `DynamoDB ${fmt(result.usage.writeUnits)} WCU ${fmt(result.usage.readUnits)} RCU; front door not included)`,
  ].join("\n");
}

export function tableHeader(): string {
  return [
    "| Clients | File | Window | reservedConcurrency | tableMaxWriteUnits / ReadUnits | maxSessions | sessionCounterShards | Last finishes | p90 | Cost |",
    "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
  ].join("\n");
}

export function tableRow(result: Result): string {
  const s = result.scenario;
  const mib = `${Math.round(s.fileBytes / 1048576)} MiB`;
  return `| ${fmt(s.clients)} | ${mib} | ${s.windowSeconds / 60} min | ${s.reservedConcurrency ?? "none"} | ${fmt(s.tableMaxWriteUnits)} / ${fmt(s.tableMaxReadUnits)} | ${fmt(s.maxSessions)} | ${s.sessionCounterShards} | ${minutes(result.finish.last)} | ${minutes(result.finish.p90)} | $${result.costUsd.toFixed(2)} |`;
}

/** Completions and open sessions (and the function's concurrency) over time, as an SVG. */
export function svgPlot(result: Result): string {
  const w = 800;
  const h = 400;
  const pad = 50;
  const rows = result.samples;
  const tMax = Math.max(1, ...rows.map((r) => r.t));
  const yMax = Math.max(1, result.scenario.clients, ...rows.map((r) => r.open));
  const x = (t: number) => pad + ((w - 2 * pad) * t) / tMax;
  const y = (v: number) => h - pad - ((h - 2 * pad) * v) / yMax;
  const line = (pick: (r: (typeof rows)[number]) => number, color: string) =>
    `<polyline fill="none" stroke="${color}" stroke-width="2" points="${rows
      .map((r) => `${x(r.t).toFixed(1)},${y(pick(r)).toFixed(1)}`)
      .join(" ")}"/>`;
  const ticks = Array.from({ length: 6 }, (_, i) => (tMax * i) / 5);
  const s = result.scenario;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}" font-family="sans-serif" font-size="12">`,
    `<title>Completions and open sessions over time: ${fmt(s.clients)} clients</title>`,
    `<rect width="${w}" height="${h}" fill="white"/>`,
    `<text x="${pad}" y="20">${fmt(s.clients)} clients, ${Math.round(s.fileBytes / 1048576)} MiB, ${s.windowSeconds / 60} min window: last done at ${minutes(result.finish.last)}</text>`,
    `<line x1="${pad}" y1="${h - pad}" x2="${w - pad}" y2="${h - pad}" stroke="black"/>`,
    `<line x1="${pad}" y1="${pad}" x2="${pad}" y2="${h - pad}" stroke="black"/>`,
    ...ticks.map(
      (t) =>
        `<text x="${x(t).toFixed(1)}" y="${h - pad + 16}" text-anchor="middle">${(t / 60).toFixed(0)} min</text>`,
    ),
    `<text x="${pad - 4}" y="${y(yMax) + 4}" text-anchor="end">${fmt(yMax)}</text>`,
    `<text x="${pad - 4}" y="${h - pad}" text-anchor="end">0</text>`,
    line((r) => r.completed, "#1f77b4"),
    line((r) => r.open, "#ff7f0e"),
    line((r) => r.concurrency, "#2ca02c"),
    `<text x="${w - pad - 200}" y="${pad + 10}" fill="#1f77b4">completed</text>`,
    `<text x="${w - pad - 200}" y="${pad + 26}" fill="#ff7f0e">open sessions</text>`,
    `<text x="${w - pad - 200}" y="${pad + 42}" fill="#2ca02c">function concurrency</text>`,
    "</svg>",
    "",
  ].join("\n");
}
