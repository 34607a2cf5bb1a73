import {
  DeleteItemCommand,
  type DynamoDBClient,
  GetItemCommand,
  ScanCommand,
  type ScanCommandInput,
} from "@aws-sdk/client-dynamodb";
import {
  ListObjectsV2Command,
  type ListObjectsV2CommandInput,
  type S3Client,
} from "@aws-sdk/client-s3";
import { describe, expect, it } from "vitest";
import { DynamoDbSessionStore } from "../../functions/adapters/dynamodb/dynamodb-session-store.ts";
import { SWEEP_POSITION, sessionKey } from "../../functions/adapters/dynamodb/session-item.ts";
import { createCleanupHandler } from "../../functions/adapters/lambda/cleanup-handler.ts";
import { MemoryEventSink } from "../../functions/adapters/memory/memory-event-sink.ts";
import { S3ObjectStore } from "../../functions/adapters/s3/s3-object-store.ts";
import { MiB } from "../../functions/bits/constants.ts";
import type { ObjectStore } from "../../functions/ports/object-store.ts";
import type { SessionStore } from "../../functions/ports/session-store.ts";
import { sessionTag } from "../../functions/service/call.ts";
import { type SweepOptions, sweep } from "../../functions/service/cleanup.ts";
import type { ServiceContext } from "../../functions/service/context.ts";
import { call, createSession, endSession, fragment } from "../support/calls.ts";
import { sha256 } from "../support/checks.ts";
import {
  bucketKeys,
  realService,
  STAGING_PREFIX,
  standInClients,
  tableItems,
  uploadIsGone,
} from "../support/storage.ts";
import { randomBytes } from "../support/windows-client.ts";

const noEvents = async () => new MemoryEventSink();

const TIMEOUT = 3600;
const settings = {
  limits: { maxFragmentBytes: 2 * MiB, maxUploadBytes: 1 << 30, partSize: 5 * MiB },
  sessionTimeoutSeconds: TIMEOUT,
};

/** Sends bytes [0, end) in 2 MiB fragments. */
async function sendUpTo(
  env: Awaited<ReturnType<typeof realService>>,
  id: string,
  path: string,
  data: Uint8Array,
  end: number,
) {
  for (let first = 0; first < end; first += 2 * MiB) {
    const last = Math.min(end, first + 2 * MiB) - 1;
    const response = await fragment(env.service, id, data, first, last, path);
    expect(response.status).toBe(200);
  }
}

/** What DynamoDB's TTL does: removes the item, and the stream carries its old image. */
async function expireByTtl(table: string, id: string) {
  const { dynamodb } = standInClients();
  const Key = { pk: { S: sessionKey(id) } };
  const item = (await dynamodb.send(new GetItemCommand({ TableName: table, Key }))).Item;
  expect(item).toBeDefined();
  await dynamodb.send(new DeleteItemCommand({ TableName: table, Key }));
  return {
    Records: [
      {
        eventID: "1",
        eventName: "REMOVE",
        eventSource: "aws:dynamodb",
        awsRegion: "us-east-1",
        userIdentity: { type: "Service", principalId: "dynamodb.amazonaws.com" },
        dynamodb: { Keys: Key, OldImage: item, StreamViewType: "OLD_IMAGE" },
      },
    ],
  };
}

const stagedKeys = async (bucket: string) =>
  (await bucketKeys(bucket)).filter((key) => key.startsWith(STAGING_PREFIX));

describe("cleanup of abandoned sessions ([MC-BUP] 3.2.6.1), against DynamoDB Local and fauxqs", () => {
  it("a session past its timeout answers BG_E_SESSION_NOT_FOUND while its record still exists", async () => {
    const env = await realService(settings);
    const data = randomBytes(12 * MiB, 1);
    const id = await createSession(env.service, "/up/late.bin");
    await sendUpTo(env, id, "/up/late.bin", data, 6 * MiB);
    env.runtime.advance((TIMEOUT + 1) * 1000);
    expect(await env.sessions.get(id)).toBeDefined();
    const response = await fragment(env.service, id, data, 6 * MiB, 8 * MiB - 1, "/up/late.bin");
    expect(response.status).toBe(500);
    expect(response.headers["BITS-Error-Code"]).toBe("0x8020001F");
    expect(response.headers["BITS-Error-Context"]).toBe("0x5");
    const close = await endSession(env.service, "Close-Session", id, "/up/late.bin");
    expect(close.headers["BITS-Error-Code"]).toBe("0x8020001F");
    expect(await env.objects.head("up/late.bin")).toBeUndefined();
  });

  it("a session that expires mid-upload leaves no multipart upload and no staged bytes once its stream record is handled", async () => {
    const env = await realService(settings);
    const data = randomBytes(12 * MiB, 2);
    const id = await createSession(env.service, "/up/abandoned.bin");
    // Part 1 is uploaded and recorded; bytes past it are staged.
    await sendUpTo(env, id, "/up/abandoned.bin", data, 7 * MiB);
    const record = await env.sessions.get(id);
    expect(record?.etags.length).toBe(1);
    expect((await stagedKeys(env.bucket)).length).toBeGreaterThan(0);
    expect(await uploadIsGone(env.bucket, "up/abandoned.bin", record?.uploadId ?? "")).toBe(false);

    const sink = new MemoryEventSink();
    const cleanup = createCleanupHandler(env.context, async () => sink);
    expect(await env.sessions.openSessions()).toBe(1);
    const removal = await expireByTtl(env.table, id);
    expect(await cleanup(removal)).toEqual({ cleaned: 1, events: 1 });
    // The stream delivers at least once: a repeated batch frees the slot only once, and its
    // event is delivered again with the same ID.
    expect(await cleanup(removal)).toEqual({ cleaned: 1, events: 1 });
    expect(sink.delivered.map((event) => [event.detailType, event.detail.eventId])).toEqual([
      ["Upload Expired", id],
      ["Upload Expired", id],
    ]);

    expect(await uploadIsGone(env.bucket, "up/abandoned.bin", record?.uploadId ?? "")).toBe(true);
    expect(await bucketKeys(env.bucket)).toEqual([]);
    const left = await tableItems(env.table);
    expect(left.records).toEqual([]);
    expect(left.others).toEqual([]);
    expect(await env.sessions.openSessions()).toBe(0);
    expect(await env.sessions.openSessions(record?.slot)).toBe(0);
  });

  it("a completed object is untouched, even when an expired record still names its upload", async () => {
    const env = await realService(settings);
    const data = randomBytes(7 * MiB + 3, 3);
    const id = await createSession(env.service, "/up/done.bin");
    await sendUpTo(env, id, "/up/done.bin", data, data.length);
    expect((await endSession(env.service, "Close-Session", id, "/up/done.bin")).status).toBe(200);
    const cleanup = createCleanupHandler(env.context, async () => new MemoryEventSink());
    // The tombstone's expiry, and a stale image of the session as it was before Close.
    const stale = await expireByTtl(env.table, id);
    const image = stale.Records[0]?.dynamodb.OldImage as Record<string, { S?: string }>;
    image.st = { S: "open" };
    delete image.out;
    expect(await cleanup(stale)).toEqual({ cleaned: 1, events: 1 });
    const object = await env.objects.get("up/done.bin");
    expect(object && sha256(object)).toBe(sha256(data));
    expect(await bucketKeys(env.bucket)).toEqual(["up/done.bin"]);
  });

  it("the scheduled sweep cleans expired sessions and orphans, and leaves live sessions alone", async () => {
    const env = await realService(settings);
    const data = randomBytes(12 * MiB, 4);
    const expired = await createSession(env.service, "/up/expired.bin");
    await sendUpTo(env, expired, "/up/expired.bin", data, 7 * MiB);
    const expiredRecord = await env.sessions.get(expired);
    // An orphan: staged bytes and a part list whose session record is gone.
    await env.objects.putStaged(
      `${STAGING_PREFIX}0f0e0d0c-0b0a-4908-8706-050403020100/x`,
      data.subarray(0, 10),
    );
    await env.sessions.putPartChunk("{0F0E0D0C-0B0A-4908-8706-050403020100}", 0, ['"e"']);

    env.runtime.advance((TIMEOUT + 1) * 1000);
    const live = await createSession(env.service, "/up/live.bin");
    await sendUpTo(env, live, "/up/live.bin", data, 3 * MiB);
    const liveStaged = await stagedKeys(env.bucket);

    expect(await env.sessions.openSessions()).toBe(2);
    const report = await createCleanupHandler(env.context, noEvents)({ source: "aws.events" });
    expect(report).toEqual({
      expiredSessions: 1,
      orphanChunkSessions: 1,
      orphanStagedObjects: 1,
      failures: 0,
      pages: 2,
      resumed: false,
      complete: true,
    });
    // The expired session stops counting against the caps, and stays unknown to clients.
    expect(await env.sessions.openSessions()).toBe(1);
    expect((await fragment(env.service, expired, data, 0, 99, "/up/expired.bin")).status).toBe(500);
    expect(await createCleanupHandler(env.context, noEvents)({ source: "aws.events" })).toEqual({
      expiredSessions: 0,
      orphanChunkSessions: 0,
      orphanStagedObjects: 0,
      failures: 0,
      pages: 2,
      resumed: false,
      complete: true,
    });
    expect(await env.sessions.openSessions()).toBe(1);

    expect(await uploadIsGone(env.bucket, "up/expired.bin", expiredRecord?.uploadId ?? "")).toBe(
      true,
    );
    const left = await stagedKeys(env.bucket);
    const livePrefix = `${STAGING_PREFIX}${live.replace(/[{}]/g, "").toLowerCase()}/`;
    expect(left.length).toBeGreaterThan(0);
    expect(left.every((key) => key.startsWith(livePrefix))).toBe(true);
    expect(left).toEqual(liveStaged.filter((key) => key.startsWith(livePrefix)));
    expect((await tableItems(env.table)).others).toEqual([]);

    // The live session finishes exactly.
    await sendUpTo(env, live, "/up/live.bin", data, data.length);
    expect(
      (
        await call(env.service, {
          path: "/up/live.bin",
          headers: { "BITS-Packet-Type": "Close-Session", "BITS-Session-Id": live },
        })
      ).status,
    ).toBe(200);
    const object = await env.objects.get("up/live.bin");
    expect(object && sha256(object)).toBe(sha256(data));
    expect(await env.sessions.openSessions()).toBe(0);
  });
});

type Env = Awaited<ReturnType<typeof realService>>;

/** The S3 client of the stand-in, recording every ListObjectsV2 of the staging prefix. */
function listingCounted(bucket: string) {
  const real = standInClients().s3;
  const lists: ListObjectsV2CommandInput[] = [];
  const client = {
    send(command: Parameters<S3Client["send"]>[0]) {
      if (command instanceof ListObjectsV2Command && command.input.Prefix === STAGING_PREFIX) {
        lists.push(command.input);
      }
      return real.send(command);
    },
  } as unknown as S3Client;
  return { objects: new S3ObjectStore(client, bucket, { fauxqsChecksums: true }), lists };
}

/** The DynamoDB client of the stand-in, recording every Scan. */
function scansCounted(table: string) {
  const real = standInClients().dynamodb;
  const scans: ScanCommandInput[] = [];
  const client = {
    send(command: Parameters<DynamoDBClient["send"]>[0]) {
      if (command instanceof ScanCommand) scans.push(command.input);
      return real.send(command);
    },
  } as unknown as DynamoDBClient;
  return { sessions: new DynamoDbSessionStore(client, table), scans };
}

const guid = () => crypto.randomUUID();
const braced = (dir: string) => `{${dir.toUpperCase()}}`;

/** Staged objects of a session that no longer exists: `count` of them in its directory. */
async function orphanDir(env: Env, count: number) {
  const dir = guid();
  const keys = Array.from(
    { length: count },
    (_, i) => `${STAGING_PREFIX}${dir}/${String(i).padStart(4, "0")}`,
  );
  for (const key of keys) await env.objects.putStaged(key, new Uint8Array([1, 2, 3]));
  return { dir, id: braced(dir), keys };
}

/** Sessions that expire (each with 1 MiB staged), then one created afterwards that stays live. */
async function expiredAndLive(env: Env, expiring: number) {
  const data = randomBytes(3 * MiB, 9);
  const expired: string[] = [];
  for (let i = 0; i < expiring; i++) {
    const id = await createSession(env.service, `/up/expired-${i}.bin`);
    expect((await fragment(env.service, id, data, 0, MiB - 1, `/up/expired-${i}.bin`)).status).toBe(
      200,
    );
    expired.push(id);
  }
  env.runtime.advance((TIMEOUT + 1) * 1000);
  const live = await createSession(env.service, "/up/live.bin");
  expect((await fragment(env.service, live, data, 0, MiB - 1, "/up/live.bin")).status).toBe(200);
  const liveStaged = (await stagedKeys(env.bucket)).filter((key) =>
    key.includes(live.replace(/[{}]/g, "").toLowerCase()),
  );
  expect(liveStaged.length).toBeGreaterThan(0);
  return { expired, live, liveStaged };
}

const sweepWith = (context: ServiceContext, options: SweepOptions) => sweep(context, options);

describe("the sweep pages, isolates failures, stops at its deadline and resumes (docs/cleanup.md)", () => {
  it("a directory of staged objects and a session's part chunks spread over many pages all go; the live session keeps its bytes", async () => {
    const env = await realService(settings);
    const { live, liveStaged } = await expiredAndLive(env, 0);
    const orphan = await orphanDir(env, 13);
    const chunkOwner = braced(guid());
    for (let i = 0; i < 7; i++) await env.sessions.putPartChunk(chunkOwner, i, ['"e"']);
    const { objects, lists } = listingCounted(env.bucket);
    const { sessions, scans } = scansCounted(env.table);

    const report = await sweepWith(
      { ...env.context, objects, sessions },
      { pageSizes: { table: 3, objects: 4 } },
    );
    expect(report).toMatchObject({
      expiredSessions: 0,
      orphanStagedObjects: 13,
      failures: 0,
      resumed: false,
      complete: true,
    });
    // Pages of the asked size, each listing going on after the last key of the page before.
    const staged = 13 + liveStaged.length;
    expect(lists).toHaveLength(Math.ceil(staged / 4));
    expect(lists.every((input) => input.MaxKeys === 4)).toBe(true);
    expect(lists[0]?.StartAfter).toBeUndefined();
    expect(lists[1]?.StartAfter).toBe([...orphan.keys, ...liveStaged].sort()[3]);
    // The table: 7 chunks, the live session, its counters; three entries a page.
    expect(scans.length).toBeGreaterThanOrEqual(4);
    expect(scans.every((input) => input.Limit === 3)).toBe(true);
    expect(report.pages).toBe(scans.length + lists.length);
    expect(report.orphanChunkSessions).toBeGreaterThanOrEqual(1);

    expect(await stagedKeys(env.bucket)).toEqual(liveStaged);
    expect((await tableItems(env.table)).others).toEqual([]);
    expect((await env.sessions.get(live))?.status).toBe("open");
    expect(await env.sessions.sweepPosition()).toBeUndefined();
  });

  it("stops at its deadline after N pages, saving its position; the next run resumes there and finishes", async () => {
    const env = await realService(settings);
    const { expired, live, liveStaged } = await expiredAndLive(env, 2);
    const dirs = [];
    for (let i = 0; i < 4; i++) dirs.push(await orphanDir(env, 2));
    const chunkOwner = braced(guid());
    for (let i = 0; i < 4; i++) await env.sessions.putPartChunk(chunkOwner, i, ['"e"']);
    const pageSizes = { table: 2, objects: 3 };

    // No time at all: nothing is started.
    expect(await sweepWith(env.context, { pageSizes, remainingMs: () => 0 })).toMatchObject({
      pages: 0,
      complete: false,
    });
    let checks = 0;
    const first = await sweepWith(env.context, { pageSizes, remainingMs: () => 3 - checks++ });
    expect(first).toMatchObject({ pages: 3, failures: 0, resumed: false, complete: false });
    const position = await env.sessions.sweepPosition();
    expect(JSON.parse(position ?? "{}")).toMatchObject({ phase: "table" });
    const others = (await tableItems(env.table)).others;
    expect(others.filter((pk) => !pk.startsWith("P#"))).toEqual([SWEEP_POSITION]);
    // Still in the table's pages: no staged object was looked at yet.
    for (const dir of dirs) {
      expect(await env.objects.head(dir.keys[0] ?? "")).toBeDefined();
    }

    const { sessions, scans } = scansCounted(env.table);
    const second = await sweepWith({ ...env.context, sessions }, { pageSizes });
    expect(second).toMatchObject({ failures: 0, resumed: true, complete: true });
    // Resumed where the first stopped, not from the start of the table.
    const after = JSON.parse(position ?? "{}").after;
    expect(scans[0]?.ExclusiveStartKey).toEqual({ pk: { S: after } });
    expect(first.expiredSessions + second.expiredSessions).toBe(2);
    expect(second.orphanStagedObjects).toBe(8);

    for (const id of expired) expect((await env.sessions.get(id))?.outcome?.kind).toBe("expired");
    expect((await env.sessions.get(live))?.status).toBe("open");
    expect(await stagedKeys(env.bucket)).toEqual(liveStaged);
    expect((await tableItems(env.table)).others).toEqual([]);
    expect(await env.sessions.sweepPosition()).toBeUndefined();
    expect(await env.sessions.openSessions()).toBe(1);

    // A new pass starts from the beginning and finds nothing left.
    expect(await sweepWith(env.context, { pageSizes })).toMatchObject({
      expiredSessions: 0,
      orphanChunkSessions: 0,
      orphanStagedObjects: 0,
      resumed: false,
      complete: true,
    });
  });

  it("the Lambda handler stops 30 s before the function's timeout", async () => {
    const env = await realService(settings);
    await orphanDir(env, 1);
    const cleanup = createCleanupHandler(env.context, noEvents);
    const report = await cleanup(
      { source: "aws.events" },
      { getRemainingTimeInMillis: () => 29_000 },
    );
    expect(report).toMatchObject({ pages: 0, complete: false });
    expect(
      await cleanup({ source: "aws.events" }, { getRemainingTimeInMillis: () => 900_000 }),
    ).toMatchObject({ orphanStagedObjects: 1, complete: true });
  });

  it("a session whose cleanup throws is logged by its tag and counted; the others are cleaned", async () => {
    const env = await realService({
      ...settings,
      metrics: { namespace: "BITS", stage: "test" },
    });
    const { expired, live, liveStaged } = await expiredAndLive(env, 2);
    const [failing, fine] = expired as [string, string];
    const dirs = [await orphanDir(env, 2), await orphanDir(env, 2), await orphanDir(env, 2)];
    const stuck = dirs[1] as (typeof dirs)[number];
    const logs: { level: string; message: string; fields?: Record<string, unknown> | undefined }[] =
      [];
    env.runtime.log = (level, message, fields) => logs.push({ level, message, fields });

    // Faults: the staged objects of one directory cannot be deleted; one expired session
    // cannot be given its outcome. Both errors name the session.
    const objects: ObjectStore = Object.assign(Object.create(env.objects), {
      async delete(keys: readonly string[]) {
        if (keys.some((key) => key.includes(stuck.dir))) {
          throw new Error(`injected: cannot delete ${keys[0]}`);
        }
        return env.objects.delete(keys);
      },
    });
    const sessions: SessionStore = Object.assign(Object.create(env.sessions), {
      async replace(...args: Parameters<SessionStore["replace"]>) {
        if (args[0].id === failing) throw new Error(`injected: ${failing} cannot be written`);
        return env.sessions.replace(...args);
      },
    });
    // Listing pages large enough that each directory is deleted in one call.
    const report = await sweepWith(
      { ...env.context, objects, sessions },
      { pageSizes: { table: 2, objects: 1000 } },
    );
    expect(report).toMatchObject({
      expiredSessions: 1,
      orphanStagedObjects: 4,
      failures: 2,
      complete: true,
    });

    const errors = logs.filter((line) => line.level === "error");
    expect(errors.map((line) => line.fields?.session).sort()).toEqual(
      [sessionTag(failing), sessionTag(stuck.id)].sort(),
    );
    for (const line of errors) {
      expect(line.fields?.CleanupFailures).toBe(1);
      expect(line.fields?._aws).toBeDefined();
    }
    const text = JSON.stringify(logs);
    for (const id of [failing, stuck.id]) {
      expect(text).not.toContain(id);
      expect(text).not.toContain(id.replace(/[{}]/g, "").toLowerCase());
    }

    // The others were cleaned; the failed ones wait for the next pass.
    expect((await env.sessions.get(fine))?.outcome?.kind).toBe("expired");
    expect((await env.sessions.get(failing))?.outcome).toBeUndefined();
    expect(await stagedKeys(env.bucket)).toEqual([...liveStaged, ...stuck.keys].sort());
    expect((await env.sessions.get(live))?.status).toBe("open");

    const again = await sweepWith(env.context, { pageSizes: { table: 2, objects: 3 } });
    expect(again).toMatchObject({ expiredSessions: 1, orphanStagedObjects: 2, failures: 0 });
    expect((await env.sessions.get(failing))?.outcome?.kind).toBe("expired");
    expect(await stagedKeys(env.bucket)).toEqual(liveStaged);
  });
});
