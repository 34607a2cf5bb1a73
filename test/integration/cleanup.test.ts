import { DeleteItemCommand, GetItemCommand } from "@aws-sdk/client-dynamodb";
import { describe, expect, it } from "vitest";
import { sessionKey } from "../../functions/adapters/dynamodb/session-item.ts";
import { createCleanupHandler } from "../../functions/adapters/lambda/cleanup-handler.ts";
import { MemoryEventSink } from "../../functions/adapters/memory/memory-event-sink.ts";
import { MiB } from "../../functions/bits/constants.ts";
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
    await env.objects.put(
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
    expect(report).toEqual({ expiredSessions: 1, orphanChunkSessions: 1, orphanStagedObjects: 1 });
    // The expired session stops counting against the caps, and stays unknown to clients.
    expect(await env.sessions.openSessions()).toBe(1);
    expect((await fragment(env.service, expired, data, 0, 99, "/up/expired.bin")).status).toBe(500);
    expect(await createCleanupHandler(env.context, noEvents)({ source: "aws.events" })).toEqual({
      expiredSessions: 0,
      orphanChunkSessions: 0,
      orphanStagedObjects: 0,
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
