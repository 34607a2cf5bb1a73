import { beforeEach, describe, expect, it } from "vitest";
import { MiB } from "../../functions/bits/constants.ts";
import type { BitsResponse } from "../../functions/bits/request.ts";
import type { ServiceSettings } from "../../functions/service/context.ts";
import type { UploadService } from "../../functions/service/upload-service.ts";
import { createSession, endSession, fragment } from "../support/calls.ts";
import { sha256 } from "../support/checks.ts";
import {
  bucketKeys,
  freshStorage,
  type RealStorage,
  STAGING_PREFIX,
  serviceOver,
} from "../support/storage.ts";
import { randomBytes } from "../support/windows-client.ts";

/**
 * Fragments that only stage bytes are acknowledged without a record write (docs/durability.md):
 * the record catches up at the next part boundary, at Close, or when an instance that does not
 * remember the session rebuilds the tail from one listing. These cases take that design where
 * it can break, on DynamoDB Local and fauxqs: the instance that staged is lost before the
 * record caught up; two instances rebuild the same tail at once; a staged object is deleted
 * behind the server's back. Every one must end with the exact object and nothing staged.
 */

const PATH = "/upload/deferred.bin";
const KEY = "upload/deferred.bin";
/** Two 5 MiB parts and a short last one, in 1 MiB fragments: four stage before each part. */
const DATA = randomBytes(11 * MiB + 4321, 0xdefe);
const TOTAL = DATA.length;
const LIMITS = { maxFragmentBytes: MiB, maxUploadBytes: 1024 ** 4, partSize: 5 * MiB };
const BRCR = "BITS-Received-Content-Range";

let storage: RealStorage;
beforeEach(async () => {
  storage = await freshStorage();
});

/** A new instance (a Lambda container of its own) with the deferred record writes on. */
function instance(options: { cacheBytes?: number } = {}): UploadService {
  const settings: Partial<ServiceSettings> = {
    bucket: storage.bucket,
    limits: LIMITS,
    deferStagedRecords: true,
  };
  return serviceOver(storage.sessions, storage.objects, settings, options).service;
}

const offsetOf = (response: BitsResponse) => Number(response.headers[BRCR]);

/** Sends bytes [start, end) and returns the answer's status and offset. */
async function send(service: UploadService, id: string, start: number, end: number) {
  const response = await fragment(service, id, DATA, start, end - 1, PATH);
  expect(response.headers["BITS-Packet-Type"]).toBe("Ack");
  return { status: response.status, offset: offsetOf(response) };
}

/** Sends 1 MiB fragments in order from `from` to the end, as the answers direct. */
async function sendRest(service: UploadService, id: string, from: number) {
  let offset = from;
  for (let requests = 0; offset < TOTAL; requests++) {
    if (requests > 40) throw new Error("the upload did not finish in 40 fragments");
    const answer = await send(service, id, offset, Math.min(TOTAL, offset + MiB));
    expect([200, 416]).toContain(answer.status);
    expect(answer.offset).toBeLessThanOrEqual(Math.min(TOTAL, offset + MiB));
    offset = answer.offset;
  }
}

/** Closes the session and checks the stored object and that nothing staged is left. */
async function closeAndCheck(service: UploadService, id: string) {
  expect((await endSession(service, "Close-Session", id, PATH)).status).toBe(200);
  const stored = await storage.objects.get(KEY);
  expect(stored && sha256(stored), "the stored object is exactly the bytes sent").toBe(
    sha256(DATA),
  );
  const keys = await bucketKeys(storage.bucket);
  expect(keys.filter((key) => key.startsWith(STAGING_PREFIX))).toEqual([]);
}

/** One instance sends the first three MiB: the first fragment is recorded, two are not. */
async function stageThree(service: UploadService) {
  const id = await createSession(service, PATH);
  for (let n = 0; n < 3; n++) {
    expect(await send(service, id, n * MiB, (n + 1) * MiB)).toEqual({
      status: 200,
      offset: (n + 1) * MiB,
    });
  }
  // The record lags behind the Acks: the two later fragments staged without a record write.
  expect((await storage.sessions.get(id))?.offset).toBe(MiB);
  return id;
}

describe("deferred record writes (docs/durability.md)", () => {
  it("an instance lost after its Ack, before the record caught up: the next one rebuilds the tail", async () => {
    const id = await stageThree(instance());
    // The instance is gone with what it remembered; another one gets the next fragment.
    const next = instance();
    expect(await send(next, id, 3 * MiB, 4 * MiB)).toEqual({ status: 200, offset: 4 * MiB });
    expect((await storage.sessions.get(id))?.offset).toBeGreaterThanOrEqual(3 * MiB);
    await sendRest(next, id, 4 * MiB);
    await closeAndCheck(next, id);
  });

  it("a resend to a cold instance is answered with the rebuilt offset, not the lagging one", async () => {
    const id = await stageThree(instance());
    expect(await send(instance(), id, 2 * MiB, 3 * MiB)).toEqual({
      status: 200,
      offset: 3 * MiB,
    });
    const last = instance();
    await sendRest(last, id, 3 * MiB);
    await closeAndCheck(last, id);
  });

  it("two instances rebuild the same tail at once, then race on a part-completing fragment", async () => {
    const id = await stageThree(instance());
    const [b, c] = [instance(), instance()];
    const first = await Promise.all([send(b, id, 3 * MiB, 4 * MiB), send(c, id, 3 * MiB, 4 * MiB)]);
    expect(first).toEqual([
      { status: 200, offset: 4 * MiB },
      { status: 200, offset: 4 * MiB },
    ]);
    // Both now remember the session; the fragment that completes part 1 reaches both.
    const second = await Promise.all([
      send(b, id, 4 * MiB, 5 * MiB),
      send(c, id, 4 * MiB, 5 * MiB),
    ]);
    expect(second).toEqual([
      { status: 200, offset: 5 * MiB },
      { status: 200, offset: 5 * MiB },
    ]);
    expect((await storage.sessions.get(id))?.bytesInParts).toBe(5 * MiB);
    await sendRest(c, id, 5 * MiB);
    await closeAndCheck(b, id);
  });

  it("a staged object deleted behind the server's back: a cold instance answers 416 from the bytes S3 still holds", async () => {
    const id = await stageThree(instance());
    const staged = await storage.objects.list(STAGING_PREFIX);
    const lost = staged.filter((object) => /\/0*1048576-/.test(object.key));
    expect(lost).toHaveLength(1);
    await storage.objects.delete(lost.map((object) => object.key));
    const cold = instance();
    // The staged [1, 2) MiB is gone: the tail rebuilt from S3 stops at 1 MiB.
    expect(await send(cold, id, 3 * MiB, 4 * MiB)).toEqual({ status: 416, offset: MiB });
    await sendRest(cold, id, MiB);
    await closeAndCheck(cold, id);
  });

  it("a staged object deleted behind the server's back: the instance that staged it, remembering nothing of the bytes, rewinds to the part's start", async () => {
    // A cache of one byte keeps the record but none of the staged bytes.
    const warm = instance({ cacheBytes: 1 });
    const id = await stageThree(warm);
    const staged = await storage.objects.list(STAGING_PREFIX);
    await storage.objects.delete(
      staged.filter((object) => /\/0*2097152-/.test(object.key)).map((object) => object.key),
    );
    expect(await send(warm, id, 3 * MiB, 4 * MiB)).toEqual({ status: 200, offset: 4 * MiB });
    // The part-completing fragment finds the head incomplete: back to the part's start.
    expect(await send(warm, id, 4 * MiB, 5 * MiB)).toEqual({ status: 416, offset: 0 });
    await sendRest(warm, id, 0);
    await closeAndCheck(warm, id);
  });
});
