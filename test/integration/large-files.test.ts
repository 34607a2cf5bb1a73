import { describe, expect, it } from "vitest";
import { MemoryObjectStore } from "../../functions/adapters/memory/memory-object-store.ts";
import { MemorySessionStore } from "../../functions/adapters/memory/memory-session-store.ts";
import { MiB } from "../../functions/bits/constants.ts";
import { crc32c, crc32cBase64 } from "../../functions/bits/crc32c.ts";
import type { FragmentLimits } from "../../functions/bits/fragment-plan.ts";
import type { ObjectStore } from "../../functions/ports/object-store.ts";
import type { SessionStore } from "../../functions/ports/session-store.ts";
import type { UploadService } from "../../functions/service/upload-service.ts";
import { createSession, endSession, fragment } from "../support/calls.ts";
import { sha256 } from "../support/checks.ts";
import { depth } from "../support/depth.ts";
import { bucketKeys, freshStorage, serviceOver } from "../support/storage.ts";
import { fileOf } from "../support/windows-client.ts";

/**
 * docs/large-files.md: for any file size and any fragment size, no request reads back or
 * uploads more than `maxAssembledBytes`, and none needs more than a fixed number of storage
 * calls. S3's limits are scaled down (a few dozen parts of a few KiB) so that a file that needs
 * parts built from pieces, as a 5 TiB file needs 525 MiB parts, runs in seconds.
 */

/** What one request did to storage. */
interface RequestCost {
  bytesRead: number;
  /** Bodies of uploadPart and putStaged, added up. */
  bytesWritten: number;
  objectCalls: number;
  sessionCalls: number;
  copies: number;
  /** Parts of the session's own upload, uploaded or copied. */
  parts: number;
}

/** Wraps a store so that every call is counted against the request in flight. */
function metered<T extends object>(
  target: T,
  onCall: (name: string, args: unknown[], result: unknown) => void,
): T {
  return new Proxy(target, {
    get(object, name, receiver) {
      const value = Reflect.get(object, name, receiver);
      if (typeof value !== "function") return value;
      return async (...args: unknown[]) => {
        const result = await value.apply(object, args);
        onCall(String(name), args, result);
        return result;
      };
    },
  });
}

function meteredStores(objects: ObjectStore, sessions: SessionStore) {
  let cost: RequestCost = fresh();
  function fresh(): RequestCost {
    return {
      bytesRead: 0,
      bytesWritten: 0,
      objectCalls: 0,
      sessionCalls: 0,
      copies: 0,
      parts: 0,
    };
  }
  const countedObjects = metered(objects, (name, args, result) => {
    cost.objectCalls += 1;
    if (name === "get" && result instanceof Uint8Array) cost.bytesRead += result.length;
    if (name === "copyToPart") cost.copies += 1;
    const partOf = name === "copyToPart" ? args[1] : name === "uploadPart" ? args[0] : undefined;
    if (partOf === "upload/file.txt") cost.parts += 1;
    const body = name === "uploadPart" ? args[3] : name === "putStaged" ? args[1] : undefined;
    if (body instanceof Uint8Array) cost.bytesWritten += body.length;
  });
  const countedSessions = metered(sessions, () => {
    cost.sessionCalls += 1;
  });
  return {
    objects: countedObjects,
    sessions: countedSessions,
    /** The cost of what ran since the last call. */
    take(): RequestCost {
      const taken = cost;
      cost = fresh();
      return taken;
    },
  };
}

/** Deterministic fragment sizes. */
function xorshift(seed: number) {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
}

/**
 * Uploads `data` in fragments of random sizes between `minFragment` and `maxFragment`,
 * following the server's offset (200 and 416), and closes. Answers each fragment's cost.
 */
async function upload(
  service: UploadService,
  data: Uint8Array,
  sizes: { minFragment: number; maxFragment: number; seed: number },
  take: () => RequestCost,
  onFragment?: (offset: number) => Promise<void>,
) {
  const random = xorshift(sizes.seed);
  const id = await createSession(service);
  const costs: (RequestCost & { body: number })[] = [];
  let offset = 0;
  for (let requests = 0; offset < data.length; requests++) {
    if (requests > 20 * (data.length / sizes.minFragment)) throw new Error("no progress");
    await onFragment?.(offset);
    const span = sizes.maxFragment - sizes.minFragment;
    const length = Math.min(data.length - offset, sizes.minFragment + Math.floor(random() * span));
    take();
    const response = await fragment(service, id, data, offset, offset + length - 1);
    costs.push({ ...take(), body: length });
    if (response.status !== 200 && response.status !== 416) {
      throw new Error(`fragment answered ${response.status}`);
    }
    offset = Number(response.headers["BITS-Received-Content-Range"]);
  }
  const closed = await endSession(service, "Close-Session", id);
  expect(closed.status).toBe(200);
  return { id, costs };
}

const maxOf = (costs: readonly RequestCost[], field: keyof RequestCost) =>
  Math.max(...costs.map((cost) => cost[field]));

describe("large files: parts built from pieces, with scaled-down S3 limits", () => {
  const KiB = 1024;
  // 100 parts of at least 1 KiB: an 8 MiB file needs parts of 84 KB, each built from pieces
  // of at most 4 KiB. That is 2,000 pieces and 100 parts, as a 5 TiB file has 10,000 parts of
  // 525 MiB built from 64 MiB pieces.
  const maxAssembled = 4 * KiB;
  const limits: FragmentLimits = {
    maxFragmentBytes: 16 * KiB,
    maxUploadBytes: MiB * MiB,
    partSize: KiB,
    maxParts: 100,
    minPartBytes: KiB,
    maxAssembledBytes: maxAssembled,
  };
  const sizes = { minFragment: 512, maxFragment: 16 * KiB, seed: 7 };
  // A request assembles one unit from staged fragments of at least 512 bytes, and may complete
  // the units inside its own body (16 KiB: four pieces) and a part: a fixed bound.
  const maxCalls = Math.ceil(maxAssembled / sizes.minFragment) + 24;

  function scaledService(options: { maxAssembledBytes?: number | undefined; warm?: boolean } = {}) {
    const objects = new MemoryObjectStore(KiB);
    const sessions = new MemorySessionStore();
    const counted = meteredStores(objects, sessions);
    const { service } = serviceOver(
      counted.sessions,
      counted.objects,
      // Fragments of 512 bytes: more than the default cap of 512 per MiB.
      {
        limits: { ...limits, maxAssembledBytes: options.maxAssembledBytes },
        maxFragmentsPerMiB: 4096,
      },
      { warm: options.warm ?? false },
    );
    return { objects, service, take: counted.take };
  }

  it("drives an 8 MiB file through 2,000 pieces and ~100 parts: every request is bounded", async () => {
    const data = fileOf(8 * MiB, 1);
    const { objects, service, take } = scaledService({
      maxAssembledBytes: limits.maxAssembledBytes,
    });
    const { costs } = await upload(service, data, sizes, take);
    const stored = objects.objects.get("upload/file.txt");
    expect(sha256(stored?.body ?? new Uint8Array())).toBe(sha256(data));
    expect(crc32cBase64(stored?.crc32c ?? 0)).toBe(crc32cBase64(crc32c(data)));
    // Nothing temporary is left: no staged bytes, no builder objects, no builder uploads.
    expect([...objects.objects.keys()]).toEqual(["upload/file.txt"]);
    expect(objects.uploads.size).toBe(0);
    // The bound, request by request (a cold instance reads every staged head back).
    expect(costs.length).toBeGreaterThan(900);
    expect(maxOf(costs, "bytesRead")).toBeLessThanOrEqual(maxAssembled);
    for (const cost of costs) {
      // Its own bytes once, and at most one unit's staged head read back and written again.
      expect(cost.bytesWritten).toBeLessThanOrEqual(cost.body + cost.bytesRead);
      expect(cost.objectCalls + cost.sessionCalls).toBeLessThanOrEqual(maxCalls);
    }
    // At most S3's (scaled) 10,000 parts, each above 4 KiB, so each built from pieces and
    // copied into place.
    const parts = costs.reduce((sum, cost) => sum + cost.parts, 0);
    console.info(
      `large files: ${costs.length} fragments, ${parts} parts; per request at most ` +
        `${maxOf(costs, "bytesRead")} bytes read back (bound ${maxAssembled}), ` +
        `${maxOf(costs, "objectCalls")} S3 and ${maxOf(costs, "sessionCalls")} DynamoDB calls`,
    );
    expect(parts).toBeGreaterThan(90);
    expect(parts).toBeLessThanOrEqual(100);
    expect(costs.reduce((sum, cost) => sum + cost.copies, 0)).toBe(parts);
  });

  it("small fragments (512 B to 1 KiB): still bounded, while whole parts would not be", async () => {
    const data = fileOf(4 * MiB, 10);
    const small = { minFragment: 512, maxFragment: KiB, seed: 11 };
    const bounded = scaledService({ maxAssembledBytes: limits.maxAssembledBytes });
    const { costs } = await upload(bounded.service, data, small, bounded.take);
    const whole = scaledService();
    const { costs: unbounded } = await upload(whole.service, data, small, whole.take);
    for (const { objects } of [bounded, whole]) {
      const stored = objects.objects.get("upload/file.txt")?.body;
      expect(sha256(stored ?? new Uint8Array())).toBe(sha256(data));
    }
    expect(maxOf(costs, "bytesRead")).toBeLessThanOrEqual(maxAssembled);
    expect(maxOf(costs, "objectCalls") + maxOf(costs, "sessionCalls")).toBeLessThanOrEqual(
      maxCalls,
    );
    // What the bound rules out: parts of 42 KB, each read back from about 55 fragments.
    expect(maxOf(unbounded, "bytesRead")).toBeGreaterThan(32 * KiB);
    expect(maxOf(unbounded, "objectCalls")).toBeGreaterThan(maxCalls);
  });

  it("a warm instance stores the same bytes, reading nothing back", async () => {
    const data = fileOf(2 * MiB, 2);
    const { objects, service, take } = scaledService({
      maxAssembledBytes: limits.maxAssembledBytes,
      warm: true,
    });
    const { costs } = await upload(service, data, { ...sizes, seed: 3 }, take);
    expect(sha256(objects.objects.get("upload/file.txt")?.body ?? new Uint8Array())).toBe(
      sha256(data),
    );
    expect(maxOf(costs, "bytesRead")).toBe(0);
  });

  it("Cancel in the middle of a built part aborts its builder and leaves nothing", async () => {
    const data = fileOf(MiB, 4);
    const { objects, service } = scaledService({ maxAssembledBytes: limits.maxAssembledBytes });
    const id = await createSession(service);
    let offset = 0;
    while (offset < 300 * KiB) {
      const response = await fragment(service, id, data, offset, offset + 3 * KiB - 1);
      offset = Number(response.headers["BITS-Received-Content-Range"]);
    }
    // The session's own upload and the open part's builder.
    expect(objects.uploads.size).toBe(2);
    expect((await endSession(service, "Cancel-Session", id)).status).toBe(200);
    expect(objects.uploads.size).toBe(0);
    expect([...objects.objects.keys()]).toEqual([]);
  });

  it("a builder removed behind the server's back: 416 back to the part's start, then exact", async () => {
    const data = fileOf(MiB, 5);
    const { objects, service, take } = scaledService({
      maxAssembledBytes: limits.maxAssembledBytes,
    });
    let removed = 0;
    const { costs } = await upload(service, data, sizes, take, async (offset) => {
      // Once, in the middle of the file: abort every builder upload (a lifecycle rule would).
      if (removed > 0 || offset < 400 * KiB) return;
      for (const [uploadId, upload] of objects.uploads) {
        if (upload.key.includes("/part-")) {
          objects.uploads.delete(uploadId);
          removed += 1;
        }
      }
    });
    expect(removed).toBe(1);
    expect(sha256(objects.objects.get("upload/file.txt")?.body ?? new Uint8Array())).toBe(
      sha256(data),
    );
    expect(costs.length).toBeGreaterThan(0);
    expect(objects.uploads.size).toBe(0);
  });

  it("the seal's answer is lost: the resent fragment completes the same part, exactly", async () => {
    const data = fileOf(MiB, 6);
    const objects = new MemoryObjectStore(KiB);
    const sessions = new MemorySessionStore();
    let lost = 0;
    const flaky = new Proxy(objects, {
      get(target, name, receiver) {
        const value = Reflect.get(target, name, receiver);
        if (name !== "copyToPart") return value;
        return async (...args: unknown[]) => {
          const result = await value.apply(target, args);
          // The copy happened; its answer never arrives, twice.
          if (lost < 2) {
            lost += 1;
            throw new Error("connection reset");
          }
          return result;
        };
      },
    });
    const { service } = serviceOver(sessions, flaky, { limits }, { warm: false });
    const id = await createSession(service);
    let offset = 0;
    let failures = 0;
    for (let requests = 0; offset < data.length && requests < 5000; requests++) {
      const length = Math.min(data.length - offset, 5 * KiB);
      const response = await fragment(service, id, data, offset, offset + length - 1);
      if (response.status >= 500) {
        failures += 1;
        continue; // resend the same fragment, as Windows does
      }
      offset = Number(response.headers["BITS-Received-Content-Range"]);
    }
    expect(failures).toBe(2);
    expect((await endSession(service, "Close-Session", id)).status).toBe(200);
    expect(sha256(objects.objects.get("upload/file.txt")?.body ?? new Uint8Array())).toBe(
      sha256(data),
    );
    expect([...objects.objects.keys()]).toEqual(["upload/file.txt"]);
    expect(objects.uploads.size).toBe(0);
  });
});

describe("large files on the real stand-ins (fauxqs, DynamoDB Local), S3's 5 MiB parts", () => {
  /** Parts of 10 MiB the file takes (deep: four). */
  const PARTS = depth(2, 4);
  it(`a ${PARTS * 10} MiB file in ${PARTS} parts of 10 MiB, each built from 5 MiB pieces: exact, bounded`, async () => {
    // Parts of 10 MiB, more than the 5 MiB one request may assemble here (and fauxqs takes no
    // request body above 11 MiB, docs/platform.md).
    const limits: FragmentLimits = {
      maxFragmentBytes: MiB,
      maxUploadBytes: 1024 * MiB,
      partSize: 5 * MiB,
      maxParts: PARTS,
      maxAssembledBytes: 5 * MiB,
    };
    const storage = await freshStorage();
    const counted = meteredStores(storage.objects, storage.sessions);
    const { service } = serviceOver(
      counted.sessions,
      counted.objects,
      { bucket: storage.bucket, limits },
      { warm: false },
    );
    const data = fileOf(PARTS * 10 * MiB, 8);
    const sizes = { minFragment: 700 * 1024, maxFragment: MiB, seed: 9 };
    const { costs } = await upload(service, data, sizes, counted.take);
    const stored = await storage.objects.get("upload/file.txt");
    expect(sha256(stored ?? new Uint8Array())).toBe(sha256(data));
    expect(maxOf(costs, "bytesRead")).toBeLessThanOrEqual(5 * MiB);
    expect(costs.reduce((sum, cost) => sum + cost.copies, 0)).toBe(PARTS);
    expect(await bucketKeys(storage.bucket)).toEqual(["upload/file.txt"]);
  });
});
