import { DeleteItemCommand } from "@aws-sdk/client-dynamodb";
import { AbortMultipartUploadCommand } from "@aws-sdk/client-s3";
import { describe, expect, it } from "vitest";
import { MemoryEventSink } from "../../functions/adapters/memory/memory-event-sink.ts";
import { MiB } from "../../functions/bits/constants.ts";
import type { SessionRecord } from "../../functions/bits/session.ts";
import type { UploadEvent } from "../../functions/bits/upload-event.ts";
import type { EventSink } from "../../functions/ports/event-sink.ts";
import type { SessionStore } from "../../functions/ports/session-store.ts";
import { sweep } from "../../functions/service/cleanup.ts";
import { createSession, endSession, fragment } from "../support/calls.ts";
import { sdkCrc32c, sha256 } from "../support/checks.ts";
import { eventsOf, streamFunction } from "../support/events.ts";
import {
  bucketKeys,
  freshStorage,
  realService,
  serviceOver,
  standInClients,
} from "../support/storage.ts";
import { randomBytes } from "../support/windows-client.ts";

const TIMEOUT = 3600;
const settings = {
  limits: { maxFragmentBytes: 2 * MiB, maxUploadBytes: 1 << 30, partSize: 5 * MiB },
  sessionTimeoutSeconds: TIMEOUT,
};

type Env = Awaited<ReturnType<typeof realService>>;

/** Sends bytes [0, end) in 2 MiB fragments. */
async function send(
  env: Pick<Env, "service">,
  id: string,
  path: string,
  data: Uint8Array,
  end = data.length,
) {
  for (let first = 0; first < end; first += 2 * MiB) {
    const last = Math.min(end, first + 2 * MiB) - 1;
    expect((await fragment(env.service, id, data, first, last, path)).status).toBe(200);
  }
}

/** Every session's events: exactly one distinct event per session, whatever was delivered. */
function bySession(events: readonly UploadEvent[]) {
  const map = new Map<string, UploadEvent[]>();
  for (const event of events) {
    map.set(event.detail.sessionId, [...(map.get(event.detail.sessionId) ?? []), event]);
  }
  return map;
}

function only(events: readonly UploadEvent[], id: string): UploadEvent {
  const mine = events.filter((event) => event.detail.sessionId === id);
  expect(mine.map((event) => [event.detailType, event.detail.eventId])).toHaveLength(1);
  return mine[0] as UploadEvent;
}

describe("completion events come from the session table's stream (docs/events.md)", () => {
  it("every ending produces exactly one event with the right fields", async () => {
    const env = await realService({ ...settings, maxFragmentsPerMiB: 2 });
    const data = randomBytes(7 * MiB + 11, 1);

    const done = await createSession(env.service, "/ev/done.bin");
    await send(env, done, "/ev/done.bin", data);
    expect((await endSession(env.service, "Close-Session", done, "/ev/done.bin")).status).toBe(200);

    const cancelled = await createSession(env.service, "/ev/cancelled.bin");
    await send(env, cancelled, "/ev/cancelled.bin", data, 3 * MiB);
    await endSession(env.service, "Cancel-Session", cancelled, "/ev/cancelled.bin");

    const early = await createSession(env.service, "/ev/early.bin");
    await send(env, early, "/ev/early.bin", data, 2 * MiB);
    await endSession(env.service, "Close-Session", early, "/ev/early.bin");

    // Parts removed behind the server's back: the commit cannot complete.
    const broken = await createSession(env.service, "/ev/broken.bin");
    await send(env, broken, "/ev/broken.bin", data);
    const record = (await env.sessions.get(broken)) as SessionRecord;
    await standInClients().s3.send(
      new AbortMultipartUploadCommand({
        Bucket: env.bucket,
        Key: "ev/broken.bin",
        UploadId: record.uploadId,
      }),
    );
    expect((await endSession(env.service, "Close-Session", broken, "/ev/broken.bin")).status).toBe(
      500,
    );

    // A client writing the file in slivers breaks the fragment cap (2 per MiB here).
    const slivers = await createSession(env.service, "/ev/slivers.bin");
    const small = randomBytes(100_000, 2);
    let status = 200;
    for (let first = 0; status === 200 && first < small.length; first += 1000) {
      status = (await fragment(env.service, slivers, small, first, first + 999, "/ev/slivers.bin"))
        .status;
    }
    expect(status).toBe(403);

    const idle = await createSession(env.service, "/ev/idle.bin");
    await send(env, idle, "/ev/idle.bin", data, 2 * MiB);
    env.runtime.advance((TIMEOUT + 1) * 1000);
    expect((await sweep(env.context)).expiredSessions).toBe(1);

    const events = await eventsOf(env.table, env.context);
    expect([...bySession(events).keys()].sort()).toEqual(
      [done, cancelled, early, broken, slivers, idle].sort(),
    );
    expect(only(events, done)).toMatchObject({
      detailType: "Upload Completed",
      resource: `arn:aws:s3:::${env.bucket}/ev/done.bin`,
      detail: {
        outcome: "completed",
        eventId: done,
        key: "ev/done.bin",
        bucket: env.bucket,
        stored: true,
        size: data.length,
        bytesHeld: data.length,
        bytesReceived: data.length,
        fragments: 4,
        principal: "anonymous",
        checksum: { algorithm: "CRC32C", value: await sdkCrc32c(data) },
      },
    });
    expect(only(events, cancelled).detail).toMatchObject({
      outcome: "cancelled",
      reason: "cancelled by the client",
      stored: false,
      bytesHeld: 3 * MiB,
    });
    expect(only(events, early).detail).toMatchObject({
      outcome: "cancelled",
      reason: "closed before the last byte",
    });
    expect(only(events, broken)).toMatchObject({
      detailType: "Upload Failed",
      detail: { reason: expect.stringMatching(/cannot be completed/), stored: false },
    });
    expect(only(events, slivers)).toMatchObject({
      detailType: "Upload Failed",
      detail: { reason: "too many fragments for the file's size" },
    });
    expect(only(events, idle)).toMatchObject({
      detailType: "Upload Expired",
      detail: { outcome: "expired", bytesHeld: 2 * MiB, size: data.length },
    });
    expect(await bucketKeys(env.bucket)).toEqual(["ev/done.bin"]);
  });

  it("a session DynamoDB's TTL removes is released and announced as expired, once", async () => {
    const env = await realService(settings);
    const data = randomBytes(3 * MiB, 3);
    const id = await createSession(env.service, "/ev/ttl.bin");
    await send(env, id, "/ev/ttl.bin", data, 2 * MiB);
    // What TTL does: the item goes, and the stream carries its old image.
    await standInClients().dynamodb.send(
      new DeleteItemCommand({ TableName: env.table, Key: { pk: { S: `S#${id}` } } }),
    );
    const events = await eventsOf(env.table, env.context);
    expect(only(events, id)).toMatchObject({ detailType: "Upload Expired" });
    expect(await bucketKeys(env.bucket)).toEqual([]);
    expect(await env.sessions.openSessions()).toBe(0);
  });

  it("a function killed between the commit and the tombstone: the retried Close announces it once", async () => {
    const data = randomBytes(6 * MiB + 5, 4);
    const { storage, env, id } = await killedAfterCommit("/ev/killed.bin", data);
    const sink = new MemoryEventSink();
    const consumer = await streamFunction(storage.table, env.context, sink);
    await consumer.drain();
    expect(sink.delivered, "nothing is announced before the end is durable").toEqual([]);
    // Windows resends Close-Session; the completion is recognised as the session's own.
    expect((await endSession(env.service, "Close-Session", id, "/ev/killed.bin")).status).toBe(200);
    await consumer.drain();
    await consumer.stop();
    expect(only(sink.delivered, id)).toMatchObject({
      detailType: "Upload Completed",
      detail: { size: data.length, checksum: { value: await sdkCrc32c(data) } },
    });
    const stored = await storage.objects.get("ev/killed.bin");
    expect(stored && sha256(stored)).toBe(sha256(data));
  });

  it("a function killed after the commit, with no Close ever again: the sweep announces it completed", async () => {
    const data = randomBytes(5 * MiB + 9, 5);
    const { storage, env, id } = await killedAfterCommit("/ev/orphan.bin", data);
    env.runtime.advance((TIMEOUT + 1) * 1000);
    await sweep(env.context);
    const events = await eventsOf(storage.table, env.context);
    expect(only(events, id)).toMatchObject({
      detailType: "Upload Completed",
      detail: { stored: true, reason: expect.stringMatching(/timed out/) },
    });
    const stored = await storage.objects.get("ev/orphan.bin");
    expect(stored && sha256(stored)).toBe(sha256(data));
  });

  it("a consumer that dies after publishing delivers the batch again with the same event ID", async () => {
    const env = await realService(settings);
    const data = randomBytes(1000, 6);
    const id = await createSession(env.service, "/ev/twice.bin");
    await send(env, id, "/ev/twice.bin", data);
    await endSession(env.service, "Close-Session", id, "/ev/twice.bin");

    const delivered: UploadEvent[] = [];
    let calls = 0;
    const flaky: EventSink = {
      async publish(events) {
        calls += 1;
        // The first call dies before publishing, the second after it.
        if (calls === 1) throw new Error("killed before publishing");
        delivered.push(...events);
        if (calls === 2) throw new Error("killed after publishing");
      },
    };
    const stream = await streamFunction(env.table, env.context, flaky);
    // Each death fails its batch, which the next read handles again: the poller's own first
    // read or a drain. Nothing else may fail on the way.
    const failures: unknown[] = [];
    for (let round = 0; round < 3; round++) await stream.drain().catch((e) => failures.push(e));
    const messages = [...stream.loopErrors, ...failures].map((e) => (e as Error).message);
    expect(messages.sort()).toEqual(["killed after publishing", "killed before publishing"]);
    await stream.stop();
    expect(calls).toBe(3);
    expect(delivered.map((event) => [event.detailType, event.detail.eventId])).toEqual([
      ["Upload Completed", id],
      ["Upload Completed", id],
    ]);
    expect(delivered[0]).toEqual(delivered[1]);
  });
});

/**
 * Uploads `data` to `path` and closes it on a function that completes the object and dies
 * before it can record the session's end: Close-Session answers 500.
 */
async function killedAfterCommit(path: string, data: Uint8Array) {
  const storage = await freshStorage();
  const dying = dieOnce(storage.sessions, (record) => record.status === "closed");
  const env = {
    ...storage,
    ...serviceOver(dying, storage.objects, { ...settings, bucket: storage.bucket }),
  };
  const id = await createSession(env.service, path);
  await send(env, id, path, data);
  expect((await endSession(env.service, "Close-Session", id, path)).status).toBe(500);
  return { storage, env, id };
}

/**
 * A session store whose first write matching `dies` never happens: the function died after
 * the S3 work that preceded it (the completion) and before DynamoDB took the write.
 */
function dieOnce(store: SessionStore, dies: (record: SessionRecord) => boolean): SessionStore {
  let died = false;
  return new Proxy(store, {
    get(target, name, receiver) {
      const value = Reflect.get(target, name, receiver);
      if (name !== "replace") return typeof value === "function" ? value.bind(target) : value;
      return async (record: SessionRecord, ...rest: unknown[]) => {
        if (!died && dies(record)) {
          died = true;
          throw new Error("the function died before writing the tombstone");
        }
        return (value as SessionStore["replace"]).call(target, record, ...(rest as [number]));
      };
    },
  });
}
