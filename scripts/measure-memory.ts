/**
 * Measures how much memory the upload server holds while it receives a file: the server runs
 * as its own process (`functions/local.ts`) against stand-ins in this process, a sequential
 * client sends the file in 1 MiB fragments generated on the fly (so the client holds no file),
 * and the server's peak resident set (VmHWM) is read from /proc after each upload.
 *
 *   npx tsx scripts/measure-memory.ts [sizeMiB ...]     (default: 64 256)
 */
import { type ChildProcess, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { Agent, request } from "node:http";
import { BITS_PROTOCOL_GUID, MiB } from "../functions/bits/constants.ts";
import { provision, startStandIns } from "../infra/stand-ins.ts";

const FRAGMENT = MiB;
const PART = 8 * MiB;

function chunk(offset: number, length: number): Buffer {
  const out = Buffer.alloc(length);
  for (let i = 0; i < length; i += 4)
    out.writeUInt32BE((Math.imul(offset + i, 2654435761) ^ 0x9e3779b9) >>> 0, i);
  return out;
}

function kib(status: string, field: string): number {
  const match = new RegExp(`${field}:\\s+(\\d+) kB`).exec(status);
  return Number(match?.[1] ?? 0);
}

function memoryOf(pid: number) {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  return { rssMiB: kib(status, "VmRSS") / 1024, peakMiB: kib(status, "VmHWM") / 1024 };
}

async function startServer(s3: string, dynamodb: string, bucket: string, table: string) {
  // Node itself, not npx: the SIGTERM that ends a measurement must reach the server.
  const child: ChildProcess = spawn(process.execPath, ["--import", "tsx", "functions/local.ts"], {
    env: {
      ...process.env,
      PORT: "0",
      BITS_STAND_INS: "external",
      BITS_S3_ENDPOINT: s3,
      BITS_DYNAMODB_ENDPOINT: dynamodb,
      BITS_BUCKET: bucket,
      BITS_TABLE: table,
      BITS_PART_SIZE: String(PART),
      BITS_LOG_LEVEL: "warn",
      AWS_ACCESS_KEY_ID: "local",
      AWS_SECRET_ACCESS_KEY: "local",
      NODE_NO_WARNINGS: "1",
    },
    stdio: ["ignore", "pipe", "inherit"],
  });
  const url = await new Promise<string>((resolve, reject) => {
    child.stdout?.on("data", (data: Buffer) => {
      const match = /listening on (http:\/\/[\d.:]+)/.exec(data.toString());
      if (match?.[1]) resolve(match[1]);
    });
    child.once("exit", (code) => reject(new Error(`server exited with ${code}`)));
  });
  // node --import tsx: the server is this very process, with no child of its own.
  return { child, url, pid: child.pid as number };
}

const agent = new Agent({ keepAlive: true, maxSockets: 1 });

function post(url: string, headers: Record<string, string>, body: Buffer = Buffer.alloc(0)) {
  return new Promise<Record<string, string | string[] | undefined>>((resolve, reject) => {
    const req = request(
      url,
      {
        method: "BITS_POST",
        agent,
        headers: { ...headers, "Content-Length": String(body.length) },
      },
      (res) => {
        res.resume();
        res.on("end", () =>
          res.statusCode === 200
            ? resolve(res.headers)
            : reject(new Error(`status ${res.statusCode}`)),
        );
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

async function upload(url: string, size: number): Promise<string> {
  const created = await post(url, {
    "BITS-Packet-Type": "Create-Session",
    "BITS-Supported-Protocols": BITS_PROTOCOL_GUID,
  });
  const sid = String(created["bits-session-id"]);
  const hash = createHash("sha256");
  for (let offset = 0; offset < size; offset += FRAGMENT) {
    const body = chunk(offset, Math.min(FRAGMENT, size - offset));
    hash.update(body);
    await post(
      url,
      {
        "BITS-Packet-Type": "Fragment",
        "BITS-Session-Id": sid,
        "Content-Range": `bytes ${offset}-${offset + body.length - 1}/${size}`,
      },
      body,
    );
  }
  await post(url, { "BITS-Packet-Type": "Close-Session", "BITS-Session-Id": sid });
  return hash.digest("hex");
}

async function downloadHash(url: string): Promise<string> {
  const res = await fetch(url);
  const hash = createHash("sha256");
  for await (const part of res.body as unknown as AsyncIterable<Uint8Array>) hash.update(part);
  return hash.digest("hex");
}

async function main() {
  const sizes = process.argv
    .slice(2)
    .map(Number)
    .filter((n) => n > 0);
  const standIns = await startStandIns();
  const results = [];
  try {
    for (const sizeMiB of sizes.length > 0 ? sizes : [64, 256]) {
      const name = `mem${sizeMiB}`;
      const clients = await provision(standIns, name, name);
      clients.s3.destroy();
      clients.dynamodb.destroy();
      const server = await startServer(standIns.s3Endpoint, standIns.dynamodbEndpoint, name, name);
      try {
        await upload(`${server.url}/warm.bin`, 2 * PART);
        const before = memoryOf(server.pid);
        const sent = await upload(`${server.url}/file.bin`, sizeMiB * MiB);
        const after = memoryOf(server.pid);
        const stored = await downloadHash(`${server.url}/file.bin`);
        results.push({
          fileMiB: sizeMiB,
          partMiB: PART / MiB,
          fragmentMiB: FRAGMENT / MiB,
          rssAfterWarmUpMiB: Math.round(before.rssMiB),
          peakRssAfterWarmUpMiB: Math.round(before.peakMiB),
          peakRssMiB: Math.round(after.peakMiB),
          peakGrowthMiB: Math.round(after.peakMiB - before.peakMiB),
          exact: sent === stored,
        });
      } finally {
        server.child.kill("SIGTERM");
      }
    }
  } finally {
    await standIns.stop();
    agent.destroy();
  }
  console.table(results);
  console.log(JSON.stringify(results));
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
