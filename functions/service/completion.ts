import { crc32cBase64, parsePartEntry } from "../bits/crc32c.ts";
import { BitsError } from "../bits/errors.ts";
import { type SessionRecord, uploadKey } from "../bits/session.ts";
import type { CompleteResult } from "../ports/object-store.ts";
import { redactIds, sessionTag } from "./call.ts";
import { nowSeconds, type ServiceContext } from "./context.ts";

/**
 * Completing a session's file: the S3 completion checked against the bytes received
 * (docs/checksums.md), under a claim on its key when overwrite is off. Close-Session commits
 * through it (end-session.ts), and so does an upload-reply job's copy (reply.ts).
 */

/**
 * Runs a write of the destination object (a completion, a copy) under a claim on its key when
 * overwrite is off (see `claimKey`). Only a known outcome gives the claim back: after an error
 * the write may still land, and the claim must keep others out until it expires.
 */
export async function underKeyClaim<T>(
  context: ServiceContext,
  record: SessionRecord,
  write: () => Promise<T>,
): Promise<T> {
  if (record.overwrite) return write();
  await claimKey(context, record);
  const outcome = await write();
  await context.sessions.releaseKey(record.key, record.id).catch((error: unknown) => {
    context.runtime.log("warn", "key claim left to expire", {
      session: sessionTag(record.id),
      error: redactIds(String(error)),
    });
  });
  return outcome;
}

/** How completing a session's file turned out (completeFile). */
export interface FileCompletion {
  readonly result: CompleteResult;
  /** The object's version, where the bucket keeps versions. */
  readonly versionId?: string | undefined;
  /**
   * The stored object's full-object CRC32C (base64) and who checked it against the bytes
   * received (docs/checksums.md): "s3", which computed it from the stored bytes, or "server",
   * which compared the CRC of the parts it uploaded with the CRC of what it received. Undefined
   * for sessions older than checksums.
   */
  readonly checksum?: { readonly crc32c: string; readonly verifiedBy: "s3" | "server" } | undefined;
  /** Why a file was not completed, where `result` alone does not say it. */
  readonly reason?: string | undefined;
}

const CHECKSUM_MISMATCH = "checksum mismatch";

/**
 * Completes the session's multipart upload at `key` (its destination, or an upload-reply
 * session's request object), or writes the empty object of a zero-byte file there. Retry-safe:
 * a completion whose answer was lost is recognised by its owner.
 *
 * Nothing is completed whose bytes are not the bytes received (docs/checksums.md): the CRC32C
 * of the parts must equal the CRC32C of the request bodies, and S3 must find that same CRC32C
 * in the object it assembles; otherwise the answer is "invalid" and the session is discarded.
 */
export async function completeFile(
  context: ServiceContext,
  record: SessionRecord,
  key: string,
  overwrite: boolean,
): Promise<FileCompletion> {
  const { objects, sessions } = context;
  const options = { overwrite, owner: record.id };
  if (record.total === 0) {
    const outcome = await objects.putObject(key, new Uint8Array(0), options);
    await objects.abortUpload(uploadKey(record), record.uploadId);
    if (outcome !== "stored") return { result: outcome };
    // The CRC32C of no bytes; S3 reports it too where it keeps checksums.
    const crc32c = crc32cBase64(0);
    const head = await objects.head(key);
    const byS3 = head?.checksum?.reportedBy === "store" && head.checksum.crc32c === crc32c;
    const checksum = { crc32c, verifiedBy: byS3 ? "s3" : "server" } as const;
    return { result: "completed", versionId: head?.versionId, checksum };
  }
  const received = record.receivedCrc32c;
  const known = received !== undefined && record.partsCrc32c !== undefined;
  if (known && (received !== record.partsCrc32c || record.bytesInParts !== record.offset)) {
    return { result: "invalid", reason: CHECKSUM_MISMATCH };
  }
  const sealed = await sessions.getPartChunks(record.id, record.chunks);
  const parts = [...sealed.flat(), ...record.etags].map(parsePartEntry);
  const expected = known ? received : undefined;
  const done = await objects.completeUpload(key, record.uploadId, parts, {
    ...options,
    crc32c: expected,
    size: record.total,
  });
  if (done.result !== "completed") return { result: done.result };
  if (expected === undefined) return { result: "completed", versionId: done.versionId };
  const crc32c = crc32cBase64(expected);
  if (done.crc32c === undefined) {
    return {
      result: "completed",
      versionId: done.versionId,
      checksum: { crc32c, verifiedBy: "server" },
    };
  }
  if (done.crc32c !== crc32c) {
    // S3 should have refused this completion itself: leave no wrong object in place.
    if ((await objects.head(key))?.owner === record.id) await objects.delete([key]);
    return { result: "invalid", reason: CHECKSUM_MISMATCH };
  }
  return { result: "completed", versionId: done.versionId, checksum: { crc32c, verifiedBy: "s3" } };
}

/** A claim outlives any completion that could still be running (the function's timeout). */
const CLAIM_SECONDS = 300;
const CLAIM_WAITS_MS = [50, 100, 200, 400, 800, 1600];

/**
 * With overwrite off, two sessions completing one key must not both succeed. S3 refuses the
 * second with `If-None-Match: *`, but a store that ignores the header would let both win, so a
 * conditional write in the session table is the second guard: whoever holds the key's claim
 * checks that the key is free and completes; anyone else waits for the claim to be given back
 * and then finds the object there (S3 reads are strongly consistent). A claim left by a
 * crashed completion expires. Waiting too long is a transient error: the client resends.
 */
async function claimKey(context: ServiceContext, record: SessionRecord) {
  for (const wait of [...CLAIM_WAITS_MS, undefined]) {
    const now = nowSeconds(context);
    const claim = await context.sessions.claimKey(record.key, record.id, now + CLAIM_SECONDS, now);
    if (claim.ok) return;
    if (wait === undefined) break;
    await context.runtime.sleep(wait);
  }
  throw new BitsError("internal", "another session is completing the same key");
}
