/**
 * npm run simulate -- --clients 100000 --window 10m --file-size 20MiB [--preset today|sized]
 *   [--front-door alb|http-api] [--reservedConcurrency N|none] [--maxSessions N]
 *   [--maxSessionsPerPrincipal N] [--sessionCounterShards N] [--tableMaxWriteUnits N]
 *   [--tableMaxReadUnits N]
 *   [--tableWarmWriteUnits N] [--tableWarmReadUnits N] [--partSize 8MiB] [--principals N] [--retry-delay 600s]
 *   [--bandwidth 2.5MB] [--destination-prefixes N] [--horizon 24h] [--seed N]
 *   [--json] [--svg FILE] [--table]
 *
 * Plays a fleet of Windows BITS clients against the stack in virtual time (docs/capacity.md).
 * `--preset today` is the deployed defaults; `--preset sized` applies the sizing guide to the
 * fleet; explicit parameters override either. `--table` prints the sizing table of
 * docs/capacity.md.
 */
import { writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { parseBytes } from "../../functions/config.ts";
import type { FrontDoor } from "./model.ts";
import { loadProfile } from "./profile.ts";
import { sized, svgPlot, TODAY, tableHeader, tableRow, textReport } from "./report.ts";
import { type Scenario, simulate } from "./sim.ts";

const { values } = parseArgs({
  options: {
    clients: { type: "string", default: "100000" },
    window: { type: "string", default: "10m" },
    "file-size": { type: "string", default: "20MiB" },
    preset: { type: "string", default: "today" },
    "front-door": { type: "string" },
    reservedConcurrency: { type: "string" },
    maxSessions: { type: "string" },
    maxSessionsPerPrincipal: { type: "string" },
    sessionCounterShards: { type: "string" },
    tableMaxWriteUnits: { type: "string" },
    tableMaxReadUnits: { type: "string" },
    tableWarmWriteUnits: { type: "string" },
    tableWarmReadUnits: { type: "string" },
    partSize: { type: "string" },
    principals: { type: "string" },
    "retry-delay": { type: "string" },
    bandwidth: { type: "string" },
    "destination-prefixes": { type: "string" },
    horizon: { type: "string" },
    seed: { type: "string", default: "1" },
    json: { type: "boolean", default: false },
    svg: { type: "string" },
    table: { type: "boolean", default: false },
  },
});

/** 90, 90s, 10m, 2h: seconds. */
function duration(text: string): number {
  const match = /^(\d+(?:\.\d+)?)(s|m|h)?$/.exec(text.trim());
  if (!match) throw new Error(`not a duration: ${text}`);
  return Number(match[1]) * { s: 1, m: 60, h: 3600 }[(match[2] ?? "s") as "s" | "m" | "h"];
}

function bytes(text: string): number {
  const value = parseBytes(text);
  if (value === undefined) throw new Error(`not a byte size: ${text}`);
  return value;
}

const count = (text: string | undefined) => (text === undefined ? undefined : Number(text));
const profile = loadProfile();

function scenarioFor(clients: number, windowSeconds: number, fileBytes: number): Scenario {
  const door = (values["front-door"] ?? "alb") as FrontDoor;
  let scenario: Scenario = {
    ...TODAY,
    frontDoor: door,
    clients,
    windowSeconds,
    fileBytes,
    seed: Number(values.seed),
  };
  if (values.preset === "sized") scenario = sized(scenario, profile);
  else if (values.preset !== "today") throw new Error(`unknown preset ${values.preset}`);
  const reserved = values.reservedConcurrency;
  return {
    ...scenario,
    ...(reserved === undefined
      ? {}
      : { reservedConcurrency: reserved === "none" ? undefined : Number(reserved) }),
    maxSessions: count(values.maxSessions) ?? scenario.maxSessions,
    maxSessionsPerPrincipal:
      count(values.maxSessionsPerPrincipal) ?? scenario.maxSessionsPerPrincipal,
    sessionCounterShards: count(values.sessionCounterShards) ?? scenario.sessionCounterShards,
    tableMaxWriteUnits: count(values.tableMaxWriteUnits) ?? scenario.tableMaxWriteUnits,
    tableMaxReadUnits: count(values.tableMaxReadUnits) ?? scenario.tableMaxReadUnits,
    tableWarmWriteUnits: count(values.tableWarmWriteUnits) ?? scenario.tableWarmWriteUnits,
    tableWarmReadUnits: count(values.tableWarmReadUnits) ?? scenario.tableWarmReadUnits,
    partSize: values.partSize ? bytes(values.partSize) : scenario.partSize,
    principals: count(values.principals) ?? scenario.principals,
    retryDelaySeconds: values["retry-delay"]
      ? duration(values["retry-delay"])
      : scenario.retryDelaySeconds,
    clientBytesPerSecond: values.bandwidth
      ? bytes(values.bandwidth)
      : scenario.clientBytesPerSecond,
    destinationPrefixes: count(values["destination-prefixes"]) ?? scenario.destinationPrefixes,
    horizonSeconds: values.horizon ? duration(values.horizon) : scenario.horizonSeconds,
  };
}

if (values.table) {
  // The sizing table of docs/capacity.md: the sizing guide applied to each fleet, simulated.
  console.log(tableHeader());
  for (const [clients, file, window] of [
    [1_000, "20MiB", "10m"],
    [10_000, "20MiB", "10m"],
    [100_000, "20MiB", "10m"],
    [100_000, "20MiB", "30m"],
    [100_000, "100MiB", "10m"],
  ] as const) {
    const result = simulate(scenarioFor(clients, duration(window), bytes(file)), profile);
    console.log(tableRow(result));
  }
} else {
  const scenario = scenarioFor(
    Number(values.clients),
    duration(values.window),
    bytes(values["file-size"]),
  );
  const result = simulate(scenario, profile);
  if (values.svg) writeFileSync(values.svg, svgPlot(result));
  if (values.json) {
    const { samples, ...rest } = result;
    console.log(JSON.stringify({ ...rest, samples }, null, 2));
  } else console.log(textReport(result));
}
