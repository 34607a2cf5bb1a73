import { describe, expect, it } from "vitest";
import { S3ObjectStore } from "../../functions/adapters/s3/s3-object-store.ts";
import { MiB } from "../../functions/bits/constants.ts";
import type { ServiceSettings } from "../../functions/service/context.ts";
import { call, createSession, endSession, fragment } from "../support/calls.ts";
import { sdkCrc32c, sha256 } from "../support/checks.ts";
import { checksummingS3 } from "../support/checksum-s3.ts";
import { depth } from "../support/depth.ts";
import { eventsOf } from "../support/events.ts";
import {
  bucketKeys,
  freshStorage,
  realService,
  STAGING_PREFIX,
  serviceOver,
  uploadIsGone,
} from "../support/storage.ts";
import { randomBytes } from "../support/windows-client.ts";

/** Parts of 5 MiB gathered from fragments of at most 1 MiB: a 12 MiB file takes three parts. */
const settings: Partial<ServiceSettings> = {
  limits: { maxFragmentBytes: MiB, maxUploadBytes: 1 << 30, partSize: 5 * MiB },
};
/**
 * The damaged files: past the first part, so a part is assembled before the damage is found
 * (12 MiB, three parts, deep).
 */
const DAMAGED_FILE = depth(6 * MiB, 12 * MiB);
const PATH = "/sums/file.bin";
const KEY = "sums/file.bin";

type Env = { service: Parameters<typeof fragment>[0] };

/** Sends [from, to) in fragments of `size`; every answer must be 200. */
async function send(
  env: Env,
  id: string,
  data: Uint8Array,
  from = 0,
  to = data.length,
  size = MiB,
) {
  for (let first = from; first < to; first += size) {
    const last = Math.min(to, first + size) - 1;
    const response = await fragment(env.service, id, data, first, last, PATH);
    expect(response.status).toBe(200);
  }
}

/** The stored object is the data sent, byte for byte, and carries the data's CRC32C. */
async function expectStored(objects: S3ObjectStore, data: Uint8Array) {
  const stored = await objects.get(KEY);
  expect(stored?.length).toBe(data.length);
  expect(sha256(stored ?? new Uint8Array([1]))).toBe(sha256(data));
  const head = await objects.head(KEY);
  expect(head?.checksum?.crc32c).toBe(await sdkCrc32c(data));
  return head;
}

describe("full-object CRC32C of stored files (docs/checksums.md)", () => {
  it("a zero-byte file carries the CRC32C of nothing", async () => {
    const env = await realService(settings);
    const id = await createSession(env.service, PATH);
    const response = await call(env.service, {
      path: PATH,
      headers: {
        "BITS-Packet-Type": "Fragment",
        "BITS-Session-Id": id,
        "Content-Range": "bytes */0",
      },
    });
    expect(response.status).toBe(200);
    expect((await endSession(env.service, "Close-Session", id, PATH)).status).toBe(200);
    const head = await expectStored(env.objects, new Uint8Array(0));
    expect(head?.checksum?.crc32c).toBe("AAAAAA==");
  });

  it("a one-part file", async () => {
    const env = await realService(settings);
    const data = randomBytes(3 * MiB + 7, 31);
    const id = await createSession(env.service, PATH);
    await send(env, id, data);
    expect((await endSession(env.service, "Close-Session", id, PATH)).status).toBe(200);
    await expectStored(env.objects, data);
    const record = await env.sessions.get(id);
    expect(record?.receivedCrc32c).toBe(record?.partsCrc32c);
  });

  it("Close-Session's Ack reports the stored object's CRC32C, and so does a repeated Close", async () => {
    const env = await realService(settings);
    const data = randomBytes(6 * MiB + 5, 33);
    const id = await createSession(env.service, PATH);
    await send(env, id, data);
    const expected = await sdkCrc32c(data);
    for (let close = 0; close < 2; close++) {
      const response = await endSession(env.service, "Close-Session", id, PATH);
      expect(response.status).toBe(200);
      expect(response.headers["X-Object-CRC32C"]).toBe(expected);
    }
    await expectStored(env.objects, data);
  });

  it("a cancelled session stores nothing and its Ack reports no checksum", async () => {
    const env = await realService(settings);
    const data = randomBytes(2 * MiB, 34);
    const id = await createSession(env.service, PATH);
    await send(env, id, data);
    const cancelled = await endSession(env.service, "Cancel-Session", id, PATH);
    expect(cancelled.status).toBe(200);
    expect(cancelled.headers["X-Object-CRC32C"]).toBeUndefined();
    expect(await bucketKeys(env.bucket)).toEqual([]);
  });

  it.each([
    ["a warm instance (staged bytes from memory)", true],
    ["instances that remember nothing (staged bytes read back from S3)", false],
  ])("a many-part file, sent in 1 MiB fragments: %s", async (_, warm) => {
    const env = await realService(settings, { warm });
    const data = randomBytes(12 * MiB + 123, 32);
    const id = await createSession(env.service, PATH);
    await send(env, id, data);
    expect((await endSession(env.service, "Close-Session", id, PATH)).status).toBe(200);
    await expectStored(env.objects, data);
    expect(await bucketKeys(env.bucket)).toEqual([KEY]);
  });

  it("overlapping and resent fragments count each byte once", async () => {
    const env = await realService(settings, { warm: false });
    const data = randomBytes(11 * MiB + 5, 33);
    const id = await createSession(env.service, PATH);
    // Each fragment starts up to 700 KiB before the offset, some wholly below it (held).
    let offset = 0;
    let step = 0;
    while (offset < data.length) {
      step += 1;
      const back = Math.min(offset, ((step * 7919) % 700) * 1024);
      const first = offset - back;
      const length = step % 5 === 0 ? Math.max(1, back - 1) : MiB - ((step * 104_729) % 4096);
      const last = Math.min(data.length, first + length) - 1;
      const response = await fragment(env.service, id, data, first, last, PATH);
      expect(response.status).toBe(200);
      offset = Number(response.headers["BITS-Received-Content-Range"]);
      expect(offset).toBe(Math.max(offset, last + 1));
    }
    expect((await endSession(env.service, "Close-Session", id, PATH)).status).toBe(200);
    await expectStored(env.objects, data);
  });

  it("a session written before checksums were kept still completes, unverified", async () => {
    const env = await realService(settings);
    const data = randomBytes(6 * MiB, 34);
    const id = await createSession(env.service, PATH);
    const record = await env.sessions.get(id);
    if (record === undefined) throw new Error("no record");
    const legacy = {
      ...record,
      receivedCrc32c: undefined,
      partsCrc32c: undefined,
      version: record.version + 1,
    };
    expect((await env.sessions.replace(legacy, record.version)).ok).toBe(true);
    await send(env, id, data);
    expect((await endSession(env.service, "Close-Session", id, PATH)).status).toBe(200);
    const stored = await env.objects.get(KEY);
    expect(sha256(stored ?? new Uint8Array())).toBe(sha256(data));
  });
});

describe("bytes damaged between receipt and storage", () => {
  it("a staged fragment damaged at rest: Close fails with BG_E_SESSION_NOT_FOUND and nothing stays", async () => {
    // No warm cache: the part is assembled from the staged objects as S3 holds them.
    const env = await realService(settings, { warm: false });
    const data = randomBytes(DAMAGED_FILE, 35);
    const id = await createSession(env.service, PATH);
    await send(env, id, data, 0, 2 * MiB);
    const staged = (await bucketKeys(env.bucket)).filter((key) => key.startsWith(STAGING_PREFIX));
    expect(staged).toHaveLength(2);
    const victim = staged[0] as string;
    const damaged = new Uint8Array((await env.objects.get(victim)) ?? new Uint8Array());
    damaged[12_345] = (damaged[12_345] as number) ^ 1;
    await env.objects.putStaged(victim, damaged);

    await send(env, id, data, 2 * MiB);
    const close = await endSession(env.service, "Close-Session", id, PATH);
    expect(close.status).toBe(500);
    expect(close.headers["BITS-Error-Code"]).toBe("0x8020001F");
    expect(await env.objects.head(KEY)).toBeUndefined();
    const record = await env.sessions.get(id);
    expect(record?.status).toBe("cancelled");
    expect(await uploadIsGone(env.bucket, KEY, record?.uploadId ?? "")).toBe(true);
    expect(await bucketKeys(env.bucket)).toEqual([]);
    // Announced as failed, with why (docs/events.md).
    const events = await eventsOf(env.table, env.context);
    expect(events.map((event) => [event.detailType, event.detail.eventId])).toEqual([
      ["Upload Failed", id],
    ]);
    expect(events[0]?.detail).toMatchObject({
      stored: false,
      reason: expect.stringMatching(/checksum mismatch/),
    });
  });

  it("a part damaged in transit is refused by S3's check; the client's resend stores the file exactly", async () => {
    const storage = await freshStorage();
    const { client, stats } = checksummingS3({ corruptParts: 1 });
    const objects = new S3ObjectStore(client, storage.bucket);
    const env = serviceOver(storage.sessions, objects, { ...settings, bucket: storage.bucket });
    const logs: Record<string, unknown>[] = [];
    (env.runtime as { log: typeof env.runtime.log }).log = (_, message, fields) => {
      logs.push({ message, ...fields });
    };
    const data = randomBytes(DAMAGED_FILE + 9, 36);
    const id = await createSession(env.service, PATH);
    await send(env, id, data, 0, 4 * MiB);
    // The fifth fragment completes part 1, which is damaged on its way to S3.
    const refused = await fragment(env.service, id, data, 4 * MiB, 5 * MiB - 1, PATH);
    expect(refused.status).toBe(500);
    expect(refused.headers["BITS-Error-Code"]).toBe("0x80004005"); // E_FAIL: the client resends
    expect(stats).toEqual({ corrupted: 1, refusedParts: 1, refusedCompletions: 0 });
    await send(env, id, data, 4 * MiB);
    expect((await endSession(env.service, "Close-Session", id, PATH)).status).toBe(200);
    const head = await expectStored(objects, data);
    expect(head?.checksum?.reportedBy).toBe("store");
    expect(logs).toContainEqual(
      expect.objectContaining({
        message: "file stored",
        crc32c: await sdkCrc32c(data),
        verifiedBy: "s3",
      }),
    );
    expect(stats.refusedCompletions).toBe(0);
  });
});
