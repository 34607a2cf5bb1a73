import { DeleteTableCommand } from "@aws-sdk/client-dynamodb";
import {
  AbortMultipartUploadCommand,
  DeleteBucketCommand,
  DeleteObjectsCommand,
} from "@aws-sdk/client-s3";
import { describe, type ExpectStatic, expect, it } from "vitest";
import { DynamoDbSessionStore } from "../../functions/adapters/dynamodb/dynamodb-session-store.ts";
import { S3ObjectStore } from "../../functions/adapters/s3/s3-object-store.ts";
import { MiB } from "../../functions/bits/constants.ts";
import { sdkCrc32c, sha256 } from "../support/checks.ts";
import { depth } from "../support/depth.ts";
import { eventsOf } from "../support/events.ts";
import {
  FAULT_KINDS,
  type FaultKind,
  type FaultPlan,
  faultyClients,
  shortName,
} from "../support/faults.ts";
import {
  bucketKeys,
  freshStorage,
  STAGING_PREFIX,
  serviceOver,
  standInClients,
  uploadIsGone,
} from "../support/storage.ts";
import { lambdaTransport } from "../support/transports.ts";
import { bitsUpload, type ClientOptions, randomBytes } from "../support/windows-client.ts";

/**
 * Every single failure of any one storage call during a multi-part upload, at every kind of call
 * (every call under `npm run test:deep`), in each of three forms (the call fails, times out
 * while its request goes on, or has its answer lost), with a client that retries as Windows does. Whatever failed, the upload must finish
 * with the exact bytes and leave nothing behind but the object.
 */

const DATA = randomBytes(6 * MiB + 123, 0x3f17);
const DIGEST = sha256(DATA);
const CRC = await sdkCrc32c(DATA);
const PATH = "/faults/file.bin";
const KEY = "faults/file.bin";
/**
 * Two parts, 5 MiB and 1 MiB + 123 bytes, each assembled from staged 1 MiB fragments: every kind
 * of storage call the upload path makes, at about half the cost of a three-part file.
 */
const SETTINGS = {
  limits: { maxFragmentBytes: MiB, maxUploadBytes: 1024 ** 4, partSize: 5 * MiB },
};
/** Fixed fragment sizes, so the fault-free calls are the same in every run. */
const CLIENT: ClientOptions = {
  initialFragment: MiB,
  maxFragment: MiB,
  ping: true,
  maxRequests: 400,
};
/** Runs at a time, each with its own bucket and table. */
const CONCURRENCY = 4;

interface Run {
  readonly error: string | undefined;
  readonly calls: readonly { index: number; command: string; outcome: string }[];
  readonly injected: { index: number; command: string; fault: FaultKind | undefined } | undefined;
  readonly digest: string | undefined;
  readonly keys: readonly string[];
  readonly uploads: readonly { call: number; answered: boolean; gone: boolean }[];
  /** What the table's stream announced once the client was done (docs/events.md). */
  readonly events: readonly {
    type: string;
    id: string;
    size: number | null;
    crc: string | undefined;
  }[];
}

async function upload(warm: boolean, plan?: FaultPlan, defer = false): Promise<Run> {
  const storage = await freshStorage();
  const clients = faultyClients(plan);
  try {
    const { service } = serviceOver(
      new DynamoDbSessionStore(clients.dynamodb, storage.table),
      new S3ObjectStore(clients.s3, storage.bucket, { fauxqsChecksums: true }),
      { ...SETTINGS, deferStagedRecords: defer },
      { warm },
    );
    let error: string | undefined;
    try {
      await bitsUpload(lambdaTransport(service, "alb"), PATH, DATA, CLIENT);
    } catch (thrown) {
      error = String(thrown);
    }
    // Every timed-out call has landed (or failed) before anything is checked.
    await clients.settle();
    const stored = await storage.objects.get(KEY);
    const keys = await bucketKeys(storage.bucket);
    const uploads = [];
    for (const u of clients.uploads) {
      uploads.push({
        call: u.call,
        answered: u.answered,
        gone: await uploadIsGone(storage.bucket, u.key, u.uploadId),
      });
    }
    const injected = clients.injected();
    // The stream function reads with its own, fault-free clients, as a separate Lambda does.
    const { context } = serviceOver(storage.sessions, storage.objects, {
      ...SETTINGS,
      bucket: storage.bucket,
    });
    const events = (await eventsOf(storage.table, context)).map((event) => ({
      type: event.detailType,
      id: event.detail.eventId,
      size: event.detail.size,
      crc: event.detail.checksum?.value,
    }));
    return {
      error,
      calls: clients.calls.map(({ index, command, outcome }) => ({ index, command, outcome })),
      injected: injected && {
        index: injected.index,
        command: injected.command,
        fault: injected.fault,
      },
      digest: stored && sha256(stored),
      keys,
      uploads,
      events,
    };
  } finally {
    clients.destroy();
    await dispose(storage.bucket, storage.table, clients.uploads);
  }
}

/** Frees the stand-ins' memory (about 6 MiB per run); any failure here is not the test's. */
async function dispose(
  bucket: string,
  table: string,
  uploads: readonly { key: string; uploadId: string }[],
) {
  const { s3, dynamodb } = standInClients();
  try {
    for (const u of uploads) {
      await s3
        .send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: u.key, UploadId: u.uploadId }))
        .catch(() => {});
    }
    const keys = await bucketKeys(bucket);
    if (keys.length > 0) {
      await s3.send(
        new DeleteObjectsCommand({
          Bucket: bucket,
          Delete: { Objects: keys.map((Key) => ({ Key })), Quiet: true },
        }),
      );
    }
    await s3.send(new DeleteBucketCommand({ Bucket: bucket }));
    await dynamodb.send(new DeleteTableCommand({ TableName: table }));
  } catch {
    // best effort
  }
}

/** A semaphore: at most CONCURRENCY uploads at once, whatever the runner's own limit. */
let free = CONCURRENCY;
const waiting: (() => void)[] = [];
async function limited<T>(work: () => Promise<T>): Promise<T> {
  if (free > 0) free -= 1;
  else await new Promise<void>((resolve) => waiting.push(resolve));
  try {
    return await work();
  } finally {
    const next = waiting.shift();
    if (next) next();
    else free += 1;
  }
}

/**
 * A warm instance (one that remembers the session and the bytes it staged, as a reused Lambda
 * container does) and a cold one (which reads everything back) make different calls.
 */
const INSTANCES = [
  { name: "warm", warm: true, defer: false },
  { name: "cold", warm: false, defer: false },
  // Staging fragments acknowledged without a record write (docs/durability.md).
  { name: "deferred", warm: true, defer: true },
] as const;

/**
 * Under `npm run test:deep` the fault hits every call of the dry run in turn. By default it hits
 * one call of each kind (command) in each form, so every kind of call still fails once in every
 * form: the first of its calls for `fail`, the middle one for `timeout`, the last for
 * `lost`, which spreads the faults over the upload.
 */
const EVERY_CALL = depth(false, true);

function faultPoints<T extends { command: string }>(cases: readonly T[], kind: FaultKind): T[] {
  if (EVERY_CALL) return [...cases];
  const byCommand = new Map<string, T[]>();
  for (const c of cases) {
    const calls = byCommand.get(c.command) ?? [];
    calls.push(c);
    byCommand.set(c.command, calls);
  }
  const k = FAULT_KINDS.indexOf(kind);
  return [...byCommand.values()].map(
    (calls) => calls[Math.floor(((calls.length - 1) * k) / (FAULT_KINDS.length - 1))] as T,
  );
}

/**
 * The fault-free runs, side by side (each has its own bucket and table and counts its own
 * calls): their calls are the ones each fault hits, one at a time.
 */
const [warmDry, deferredDry, coldDry] = await Promise.all([
  upload(true),
  upload(true, undefined, true),
  upload(false),
]);
const dryRuns = { warm: warmDry, deferred: deferredDry, cold: coldDry };

function expectClean(expect: ExpectStatic, dry: Run, run: Run, plan: FaultPlan | undefined) {
  expect(run.error, "the upload finishes").toBeUndefined();
  expect(run.digest, "the stored object is exactly the bytes sent").toBe(DIGEST);
  expect(run.keys.filter((key) => key.startsWith(STAGING_PREFIX))).toEqual([]);
  expect(run.keys, "the bucket holds the destination object and nothing else").toEqual([KEY]);
  // An upload whose CreateMultipartUpload answer never reached the server is known only to S3:
  // the bucket's AbortIncompleteMultipartUpload rule removes it. That is the only exception.
  const orphanExpected =
    plan !== undefined &&
    plan.kind !== "fail" &&
    dry.calls[plan.at - 1]?.command === "CreateMultipartUploadCommand";
  expect(
    run.uploads.filter((u) => !u.answered).map((u) => u.call),
    "uploads whose creation the server never learned of",
  ).toEqual(orphanExpected ? [plan.at] : []);
  expect(
    run.uploads.filter((u) => u.answered && !u.gone).map((u) => u.call),
    "multipart uploads still open after Close-Session (by the call that created them)",
  ).toEqual([]);
  // Whatever died where, the stored object is announced exactly once, with its checksum, and no
  // session is announced twice (a session the client abandoned is announced as it ended).
  expect(
    run.events.filter((event) => event.type === "Upload Completed"),
    "one Upload Completed event",
  ).toEqual([{ type: "Upload Completed", id: expect.any(String), size: DATA.length, crc: CRC }]);
  const ids = run.events.map((event) => event.id);
  expect(new Set(ids).size, "one event per session").toBe(ids.length);
}

for (const { name, warm, defer } of INSTANCES) {
  const dry = dryRuns[name];
  const K = dry.calls.length;

  describe(`${name} instance: a fault-free multi-part upload (the dry run)`, () => {
    it(`makes ${K} storage calls and leaves only the object`, () => {
      const commands = dry.calls.map((call) => shortName(call.command));
      expect(commands.filter((c) => c === "CreateMultipartUpload")).toHaveLength(1);
      expect(commands.filter((c) => c === "UploadPart")).toHaveLength(2);
      expect(commands.filter((c) => c === "CompleteMultipartUpload")).toHaveLength(1);
      expect(commands.includes("GetObject")).toBe(!warm);
      expect(dry.calls.every((call) => call.outcome !== "pending")).toBe(true);
      expect(dry.injected).toBeUndefined();
      expect(dry.uploads).toEqual([{ call: expect.any(Number), answered: true, gone: true }]);
      expectClean(expect, dry, dry, undefined);
    });
  });

  const cases = Array.from({ length: K }, (_, i) => ({
    at: i + 1,
    command: shortName(dry.calls[i]?.command ?? "?"),
  }));

  for (const kind of FAULT_KINDS) {
    const title = EVERY_CALL ? "every call fails once" : "every kind of call fails once";
    describe.concurrent(`${name} instance: ${title}: ${kind}`, () => {
      for (const { at, command } of faultPoints(cases, kind)) {
        it(`fault ${kind} at call ${at} (${command})`, async ({ expect }) => {
          const plan = { at, kind };
          const run = await limited(() => upload(warm, plan, defer));
          expect(run.injected, "the fault hit the same call as in the dry run").toEqual({
            index: at,
            command: `${command}Command`,
            fault: kind,
          });
          expectClean(expect, dry, run, plan);
        });
      }
    });
  }
}
