/**
 * `npm run bench`: throughput, cost per byte, latency, cold start and concurrency of the BITS
 * upload server, against the local server and its stand-ins, next to a direct S3 multipart
 * upload of the same bytes to the same S3 stand-in, and where each fragment's time goes
 * (the body arriving, S3, DynamoDB, the rest). Prints tables and writes bench-results.json.
 *
 *   npm run bench                   256 MiB file, one round
 *   npm run bench -- --quick        64 MiB file, three rounds, smaller concurrency run (about
 *                                   two minutes)
 *   npm run bench -- --rounds N     N rounds per fragment size (each: a direct upload, then the
 *                                   BITS upload right after it; the ratio is the median of the
 *                                   rounds' ratios, so that a busy machine shows less in it)
 *   npm run bench -- --target URL   throughput only, against any BITS upload server
 *   npm run bench -- --fixed        also fragments of one fixed size from the first byte (1 and
 *                                   8 MiB; 4 MiB too without --quick), beside the growing ones,
 *                                   each next to the floor (floor.ts): the body's arrival plus one
 *                                   S3 write of the same bytes
 *   npm run bench -- --peer tus     with --fixed: the tus peer (peer-tus.ts) uploads the same
 *                                   file in chunks of the same size, side by side; the S3
 *                                   stand-in then answers ListParts (stand-in-s3.ts)
 *   npm run bench -- --fixed-only   the fixed sizes only (no growth, cold start, concurrency)
 */
import { writeFileSync } from "node:fs";
import { cpus, totalmem } from "node:os";
import { DeleteObjectCommand, GetObjectCommand, type S3Client } from "@aws-sdk/client-s3";
import { startLocalServer } from "../../functions/adapters/node/local-server.ts";
import { ANONYMOUS } from "../../functions/auth/authenticator.ts";
import { MiB } from "../../functions/bits/constants.ts";
import { loadConfig } from "../../functions/config.ts";
import { authorizeRead } from "../../functions/service/upload-service.ts";
import { buildContext, jsonRuntime } from "../../functions/wiring.ts";
import { provision, standInS3, startStandIns } from "../../infra/stand-ins.ts";
import { httpTransport } from "../../test/support/transports.ts";
import { bitsUpload, randomBytes } from "../../test/support/windows-client.ts";
import { floorMs } from "./floor.ts";
import { authCost, coldStart, directUpload, percentile, sha256, timed } from "./measure.ts";
import { addCounts, meter, noCounts } from "./meter.ts";
import { startTusPeer } from "./peer-tus.ts";
import { usdPerGB } from "./prices.ts";
import { startS3StandInWithListParts } from "./stand-in-s3.ts";

const args = process.argv.slice(2);
const quick = args.includes("--quick");
const target = args[args.indexOf("--target") + 1];
const targetUrl = args.includes("--target") ? target : undefined;
const memoryMB = 1024;
const FRAGMENTS = [64 * 1024, MiB, 4 * MiB, 8 * MiB];
const fixedOnly = args.includes("--fixed-only");
const fixedMode = fixedOnly || args.includes("--fixed");
const growth = !fixedOnly;
const peerName = args.includes("--peer") ? args[args.indexOf("--peer") + 1] : undefined;
if (peerName !== undefined && peerName !== "tus") throw new Error(`unknown peer ${peerName}`);
const FIXED = quick ? [MiB, 8 * MiB] : [MiB, 4 * MiB, 8 * MiB];
/** The server's part size (BITS_PART_SIZE's default): the floor's PUT or UploadPart switch. */
const PART_BYTES = 8 * MiB;
const FILE_BYTES = (quick ? 64 : 256) * MiB;
const ROUNDS = args.includes("--rounds")
  ? Math.max(1, Number(args[args.indexOf("--rounds") + 1]) || 1)
  : quick
    ? 3
    : 1;
const CONCURRENT = { sessions: 32, bytes: (quick ? 4 : 16) * MiB, fragment: MiB };
const round = (x: number, digits = 2) => Number(x.toFixed(digits));
const mibps = (bytes: number, ms: number) => bytes / MiB / (ms / 1000);

/** Whether a server that serves GET for uploads (ours does) stored the exact bytes. */
async function storedAs(url: URL, data: Uint8Array): Promise<"exact" | "different" | "unknown"> {
  try {
    const response = await fetch(url);
    if (response.status !== 200) return "unknown";
    const stored = new Uint8Array(await response.arrayBuffer());
    return sha256(stored) === sha256(data) ? "exact" : "different";
  } catch {
    return "unknown";
  }
}

async function againstTarget(url: string) {
  const data = randomBytes(FILE_BYTES, 42);
  const throughput = [];
  for (const fragmentBytes of FRAGMENTS) {
    const transport = httpTransport(url);
    const started = performance.now();
    // A new name each run: a server that refuses overwrites would answer 403.
    const path = `/bench/${Date.now()}-${fragmentBytes}.bin`;
    await bitsUpload(transport, path, data, { maxFragment: fragmentBytes });
    const ms = performance.now() - started;
    transport.close();
    throughput.push({
      fragmentBytes,
      bitsMiBps: round(mibps(data.length, ms)),
      stored: await storedAs(new URL(path, url), data),
    });
  }
  console.table(throughput);
  writeFileSync("bench-results.json", `${JSON.stringify({ target: url, throughput }, null, 2)}\n`);
}

async function main() {
  if (targetUrl !== undefined) return againstTarget(targetUrl);
  const standIns = await startStandIns(
    peerName === "tus" ? startS3StandInWithListParts : undefined,
  );
  const clients = await provision(standIns, "bench", "bench");
  const direct = standInS3(standIns.s3Endpoint);
  const metered = meter(clients.s3, clients.dynamodb);
  // The floor writes with the server's S3 adapter on a client of its own, not metered.
  const floorClients = { s3: standInS3(standIns.s3Endpoint), dynamodb: clients.dynamodb };
  const floorObjects = buildContext(
    loadConfig({ BITS_BUCKET: "bench", BITS_TABLE: "bench", BITS_LOG_LEVEL: "silent" }),
    jsonRuntime("silent"),
    floorClients,
  ).context.objects;

  /** The service as configured for the front door, behind the local server. */
  async function server(maxFragment: number) {
    const config = loadConfig({
      BITS_BUCKET: "bench",
      BITS_TABLE: "bench",
      BITS_MAX_FRAGMENT_SIZE: String(maxFragment),
      BITS_LOG_LEVEL: "silent",
    });
    const { service, context } = buildContext(config, jsonRuntime("silent"), clients);
    const handler = timed(service);
    const running = await startLocalServer(
      {
        service: handler,
        objects: context.objects,
        authorizeRead: (request) => authorizeRead(context, ANONYMOUS, request),
        maxBodyBytes: maxFragment,
      },
      0,
    );
    return { running, handler, objects: context.objects };
  }

  const data = randomBytes(FILE_BYTES, 42);
  const expected = sha256(data);
  const throughput = [];
  const cost = [];
  const latency = [];
  const breakdown = [];
  const fixed = [];
  const fixedCost = [];
  const fixedBreakdown = [];
  const peer = peerName === "tus" ? await startTusPeer(standIns.s3Endpoint, "bench") : undefined;

  /**
   * Uploads the file through the server in `rounds`, each right after `beside` (the direct
   * upload, or the peer's), with fragments that grow from 5 KB as Windows sends them, or of
   * one fixed size from the first byte. Checks every stored object against the file.
   */
  async function measure(fragmentBytes: number, fixedSize: boolean, beside: () => Promise<number>) {
    const { running, handler, objects } = await server(fragmentBytes);
    const rounds: { besideMs: number; bitsMs: number }[] = [];
    const counts = noCounts();
    for (let n = 0; n < ROUNDS; n++) {
      const besideMs = await beside();
      metered.reset();
      const transport = httpTransport(running.url);
      const started = performance.now();
      await bitsUpload(transport, `/bits/${fragmentBytes}.bin`, data, {
        maxFragment: fragmentBytes,
        ...(fixedSize ? { initialFragment: fragmentBytes } : {}),
      });
      const bitsMs = performance.now() - started;
      transport.close();
      addCounts(counts, metered.counts);
      rounds.push({ besideMs, bitsMs });
      const stored = await objects.get(`bits/${fragmentBytes}.bin`);
      if (stored === undefined || sha256(stored) !== expected) {
        throw new Error(`the object uploaded in ${fragmentBytes}-byte fragments is not exact`);
      }
      await objects.delete([`bits/${fragmentBytes}.bin`]);
    }
    await running.close();
    // Every count and time below is summed over the rounds, and so are the fragments.
    const fragments = handler.times.fragment.length;
    const all = Object.values(handler.times).flat();
    const bitsMs = rounds.reduce((sum, r) => sum + r.bitsMs, 0);
    const bytesSent = data.length * rounds.length;
    const costs = {
      fragmentBytes,
      s3RequestsPerFragment: round((counts.s3Put + counts.s3Get + counts.s3Delete) / fragments, 3),
      dynamodbRequestsPerFragment: round(counts.dynamodbRequests / fragments, 3),
      s3BytesWrittenPerByte: round(counts.s3BytesWritten / bytesSent, 3),
      s3BytesReadPerByte: round(counts.s3BytesRead / bytesSent, 3),
      usdPerGB: round(
        usdPerGB(counts, bytesSent, {
          requests: all.length,
          handlerSeconds: all.reduce((sum, ms) => sum + ms, 0) / 1000,
          memoryMB,
        }),
        5,
      ),
    };
    // Where a fragment's time goes, per fragment on average (the session's other requests
    // included): the client's wall time, of which the handler's share is S3, DynamoDB and
    // the rest; what the handler did not see is the body arriving and the Ack leaving
    // through the local server.
    const handlerMs = all.reduce((sum, ms) => sum + ms, 0) / fragments;
    const s3Ms = counts.s3Ms / fragments;
    const dynamodbMs = counts.dynamodbMs / fragments;
    const where = {
      fragmentBytes,
      wallMs: round(bitsMs / fragments),
      transferMs: round(Math.max(0, bitsMs / fragments - handlerMs)),
      s3Ms: round(s3Ms),
      dynamodbMs: round(dynamodbMs),
      otherMs: round(Math.max(0, handlerMs - s3Ms - dynamodbMs)),
    };
    console.error(`fragments of ${fragmentBytes} bytes: ${fragments} fragments done`);
    return { rounds, costs, where, fragmentTimes: handler.times.fragment };
  }
  const median = (values: number[]) => percentile(values, 0.5);

  try {
    for (const fragmentBytes of growth ? FRAGMENTS : []) {
      const key = `direct/${fragmentBytes}.bin`;
      // Side by side: the direct upload, then the BITS upload of the same bytes right after.
      const { rounds, costs, where, fragmentTimes } = await measure(fragmentBytes, false, () =>
        directUpload(direct, "bench", key, data).finally(() => deleteObject(direct, key)),
      );
      const ratios = rounds.map((r) => r.besideMs / r.bitsMs);
      throughput.push({
        fragmentBytes,
        bitsMiBps: round(median(rounds.map((r) => mibps(data.length, r.bitsMs)))),
        directMiBps: round(median(rounds.map((r) => mibps(data.length, r.besideMs)))),
        ratio: round(median(ratios), 3),
        ...(rounds.length > 1
          ? { ratioRange: `${round(Math.min(...ratios), 3)}-${round(Math.max(...ratios), 3)}` }
          : {}),
      });
      cost.push(costs);
      latency.push({
        fragmentBytes,
        p50Ms: round(percentile(fragmentTimes, 0.5)),
        p99Ms: round(percentile(fragmentTimes, 0.99)),
      });
      breakdown.push(where);
    }

    for (const fragmentBytes of fixedMode ? FIXED : []) {
      // Side by side: the peer's upload (when asked for), then this server's, in chunks and
      // fragments of the same size; the floor after them.
      const peerKeys: string[] = [];
      const { rounds, costs, where } = await measure(fragmentBytes, true, async () => {
        if (peer === undefined) return 0;
        const started = performance.now();
        const key = await peer.upload(data, fragmentBytes);
        const ms = performance.now() - started;
        peerKeys.push(key);
        return ms;
      });
      for (const key of peerKeys) {
        const stored = await getObject(direct, key);
        if (sha256(stored) !== expected) throw new Error(`the peer stored ${key} wrong`);
        await deleteObject(direct, key);
      }
      const floor = await floorMs(floorObjects, data, fragmentBytes, PART_BYTES);
      const bitsMiBps = median(rounds.map((r) => mibps(data.length, r.bitsMs)));
      const peerMiBps =
        peer === undefined ? undefined : median(rounds.map((r) => mibps(data.length, r.besideMs)));
      fixed.push({
        fragmentBytes,
        bitsMiBps: round(bitsMiBps),
        ...(peerMiBps === undefined ? {} : { peerMiBps: round(peerMiBps) }),
        wallMs: where.wallMs,
        floorMs: round(floor),
        ...(peerMiBps === undefined ? {} : { bitsOverPeer: round(bitsMiBps / peerMiBps, 3) }),
        wallOverFloor: round(where.wallMs / floor, 3),
      });
      fixedCost.push(costs);
      fixedBreakdown.push(where);
    }
    const concurrency = growth ? await concurrent() : undefined;
    const results = {
      ...(growth ? { throughput, cost, latency, breakdown } : {}),
      ...(fixedMode ? { fixed, fixedCost, fixedBreakdown, peer: peerName ?? null } : {}),
      ...(growth ? { coldStart: await coldStart(), concurrency, auth: await authCost() } : {}),
      machine: {
        cpu: cpus()[0]?.model ?? "unknown",
        cores: cpus().length,
        memoryGiB: Math.round(totalmem() / 1024 ** 3),
        node: process.version,
        fileMiB: FILE_BYTES / MiB,
        concurrentFileMiB: CONCURRENT.bytes / MiB,
        lambdaMemoryMB: memoryMB,
        quick,
        rounds: ROUNDS,
      },
    };
    writeFileSync("bench-results.json", `${JSON.stringify(results, null, 2)}\n`);
    console.log(
      `BITS upload server benchmark (${FILE_BYTES / MiB} MiB file, ${ROUNDS} round${ROUNDS > 1 ? "s" : ""} per fragment size)`,
    );
    if (growth) {
      console.table(throughput);
      console.table(cost);
      console.table(latency);
      console.log("Where each fragment's time goes (ms per fragment, averages):");
      console.table(breakdown);
    }
    if (fixedMode) {
      console.log(
        `Fixed fragments: this server, ${peerName === undefined ? "no peer" : `the ${peerName} peer`}, and the floor (one S3 write per fragment):`,
      );
      console.table(fixed);
      console.table(fixedCost);
      console.log("Where each fixed fragment's time goes (ms per fragment, averages):");
      console.table(fixedBreakdown);
    }
    if (results.coldStart !== undefined) {
      console.table([{ ...results.coldStart, ...concurrency }]);
      console.table([results.auth]);
    }
    console.log("written to bench-results.json");
  } finally {
    await peer?.close();
    clients.s3.destroy();
    clients.dynamodb.destroy();
    floorClients.s3.destroy();
    direct.destroy();
    await standIns.stop();
  }

  /** 32 sessions at once, 1 MiB fragments; every object checked. */
  async function concurrent() {
    const { running, objects } = await server(CONCURRENT.fragment);
    const started = performance.now();
    await Promise.all(
      Array.from({ length: CONCURRENT.sessions }, async (_, i) => {
        const file = randomBytes(CONCURRENT.bytes, 1000 + i);
        const transport = httpTransport(running.url);
        await bitsUpload(transport, `/concurrent/${i}.bin`, file, {
          maxFragment: CONCURRENT.fragment,
        });
        transport.close();
        const stored = await objects.get(`concurrent/${i}.bin`);
        if (stored === undefined || sha256(stored) !== sha256(file)) {
          throw new Error(`concurrent session ${i} stored a wrong object`);
        }
      }),
    );
    const concurrentMs = performance.now() - started;
    await running.close();
    return {
      sessions: CONCURRENT.sessions,
      aggregateMiBps: round(mibps(CONCURRENT.sessions * CONCURRENT.bytes, concurrentMs)),
    };
  }
}

async function getObject(s3: S3Client, key: string): Promise<Uint8Array> {
  const got = await s3.send(new GetObjectCommand({ Bucket: "bench", Key: key }));
  return (await got.Body?.transformToByteArray()) ?? new Uint8Array();
}

async function deleteObject(s3: S3Client, key: string): Promise<void> {
  await s3.send(new DeleteObjectCommand({ Bucket: "bench", Key: key }));
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
