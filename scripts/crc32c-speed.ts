/**
 * The CPU cost of the server's CRC32C against the AWS SDK's own JavaScript one, in MiB/s, measured
 * side by side in one run (docs/checksums.md): over one 64 MiB buffer, and over the same 64 MiB
 * taken as 8 MiB, 1 MiB and 64 KiB pieces (the sizes of request bodies and parts, where the cost
 * of each call counts too). Best of three for each. Prints them and writes crc32c-speed.json.
 * Run: npx tsx scripts/crc32c-speed.ts
 */
import { randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import { Crc32cJs } from "@aws-sdk/checksums/crc";
import { crc32c, crc32cCombine } from "../functions/bits/crc32c.ts";

const MiB = 1024 * 1024;
const SIZE = 64 * MiB;
const PIECES = [SIZE, 8 * MiB, MiB, 64 * 1024];
const data = new Uint8Array(randomBytes(SIZE));

async function sdk(bytes: Uint8Array): Promise<number> {
  const hash = new Crc32cJs();
  hash.update(bytes);
  return Buffer.from(await hash.digest()).readUInt32BE(0);
}

/** The CRC of all of `data`, taken `piece` bytes per call, and the best MiB/s of three runs. */
async function best(run: (bytes: Uint8Array) => Promise<number> | number, piece: number) {
  let fastest = Number.POSITIVE_INFINITY;
  let crc = 0;
  for (let i = 0; i < 3; i++) {
    const start = performance.now();
    crc = 0;
    for (let at = 0; at < SIZE; at += piece) {
      crc = crc32cCombine(crc, await run(data.subarray(at, at + piece)), piece);
    }
    fastest = Math.min(fastest, performance.now() - start);
  }
  return { mibPerSecond: Math.round(SIZE / MiB / (fastest / 1000)), crc };
}

const rows = [];
for (const piece of PIECES) {
  const server = await best((bytes) => crc32c(bytes), piece);
  const reference = await best(sdk, piece);
  if (server.crc !== reference.crc) throw new Error(`the CRCs differ in ${piece}-byte pieces`);
  rows.push({
    pieceBytes: piece,
    serverMiBps: server.mibPerSecond,
    sdkMiBps: reference.mibPerSecond,
    ratio: Number((server.mibPerSecond / reference.mibPerSecond).toFixed(2)),
  });
}
console.log(`CRC32C of ${SIZE / MiB} MiB: functions/bits/crc32c.ts against @aws-sdk Crc32cJs`);
console.table(rows);
writeFileSync("crc32c-speed.json", `${JSON.stringify({ bytes: SIZE, rows }, null, 2)}\n`);
console.log("written to crc32c-speed.json");
