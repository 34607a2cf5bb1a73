/**
 * The CPU cost of the server's CRC32C against the AWS SDK's own JavaScript one, in MiB/s over a
 * 64 MiB buffer (docs/checksums.md), measured side by side in one run. Prints them and writes
 * crc32c-speed.json. Run: npx tsx scripts/crc32c-speed.ts
 */
import { randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import { Crc32cJs } from "@aws-sdk/checksums/crc";
import { crc32c, crc32cBase64 } from "../functions/bits/crc32c.ts";

const MiB = 1024 * 1024;
const SIZE = 64 * MiB;
const data = new Uint8Array(randomBytes(SIZE));

async function sdk(bytes: Uint8Array): Promise<string> {
  const hash = new Crc32cJs();
  hash.update(bytes);
  return Buffer.from(await hash.digest()).toString("base64");
}

async function best(name: string, run: () => Promise<string> | string) {
  let fastest = Number.POSITIVE_INFINITY;
  let result = "";
  for (let i = 0; i < 3; i++) {
    const start = performance.now();
    result = await run();
    fastest = Math.min(fastest, performance.now() - start);
  }
  const rate = SIZE / MiB / (fastest / 1000);
  console.log(`${name.padEnd(28)} ${rate.toFixed(0).padStart(6)} MiB/s  (${result})`);
  return Math.round(rate);
}

const server = await best("functions/bits/crc32c.ts", () => crc32cBase64(crc32c(data)));
const reference = await best("@aws-sdk/checksums Crc32cJs", () => sdk(data));
const results = {
  bytes: SIZE,
  mibPerSecond: { server, sdk: reference },
  ratio: server / reference,
};
writeFileSync("crc32c-speed.json", `${JSON.stringify(results, null, 2)}\n`);
console.log(`ratio ${results.ratio.toFixed(2)}; written to crc32c-speed.json`);
