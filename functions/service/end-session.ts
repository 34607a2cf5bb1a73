import { ack } from "../bits/ack.ts";
import { crc32cBase64, parsePartEntry } from "../bits/crc32c.ts";
import { BitsError } from "../bits/errors.ts";
import type { Packet } from "../bits/packet.ts";
import type { BitsResponse } from "../bits/request.ts";
import {
  type EndingStatus,
  endingFor,
  isEnded,
  isLive,
  type SessionOutcome,
  type SessionRecord,
  type SessionStatus,
  uploadKey,
} from "../bits/session.ts";
import type { CompleteResult } from "../ports/object-store.ts";
import { type Call, ownedBy, redactIds, sessionTag } from "./call.ts";
import { nowSeconds, type ServiceContext } from "./context.ts";
import { emfFields } from "./metrics.ts";
import { type Attempt, again, done, untilSettled } from "./retry.ts";
import { deleteStaged, openBuilder, stagingPrefixFor } from "./staging.ts";
import { caughtUp } from "./tail.ts";

type EndPacket = Extract<Packet, { type: "close-session" | "cancel-session" }>;

// Removal has one word per kind of thing removed, here and in fragment.ts and cleanup.ts:
// a multipart upload is *aborted*; objects and table items are *deleted*; what an instance keeps
// in memory is *forgotten*; a session's place in the open-session counts is *released*. A
// session the server gives up on is *failed*; one the client gives up on is *discarded* (the
// `discarding` decision of Close-before-the-end and Cancel).

/**
 * Close-Session and Cancel-Session ([MC-BUP] 3.2.5.2.7-8), in two phases. First the decision
 * (commit a complete file, or discard) is written into the record, conditionally on the version
 * read, so no racing fragment can change what the session ends with. Then the S3 work is done,
 * every step of it retry-safe, and a tombstone is written, so a repeat answers 200
 * (docs/protocol.md, "Repeated Close/Cancel and tombstones"). Whoever finds a session mid-way (a
 * repeated Close after a crash or a timeout) finishes the same decision.
 */
export async function endSession(
  context: ServiceContext,
  packet: EndPacket,
  call: Call,
): Promise<BitsResponse> {
  const first = { record: await context.sessions.get(packet.sessionId), fresh: true };
  return untilSettled(first, ({ record }) => endAttempt(context, record, packet, call), "request");
}

/** One attempt: decide the ending (if not decided yet), carry it out, write the tombstone. */
async function endAttempt(
  context: ServiceContext,
  found: SessionRecord | undefined,
  packet: EndPacket,
  call: Call,
): Promise<Attempt<BitsResponse>> {
  if (found === undefined || !isLive(found, nowSeconds(context))) {
    throw new BitsError("sessionNotFound", "no such session");
  }
  if (!ownedBy(found, packet, call)) {
    throw new BitsError("sessionNotFound", "no such session for this client and URL");
  }
  if (isEnded(found)) return done(endAck(found.id, found.status, found.outcome));
  const ending = endingFor(found, packet.type === "close-session" ? "close" : "cancel");
  let record = found;
  if (record.status === "open") {
    // Bytes staged since the last record write count as held (docs/durability.md, 4).
    record = await caughtUp(context, record);
    // A Close or Cancel is activity on the session ([MC-BUP] 3.2.6.1 times out idle ones):
    // the decision renews the expiry, so a slow completion is not taken for an abandoned
    // session by the sweep or TTL while it runs.
    const decided: SessionRecord = {
      ...record,
      status: ending,
      version: record.version + 1,
      expiresAt: nowSeconds(context) + context.settings.sessionTimeoutSeconds,
    };
    // The session stops counting as open in the same write that decides its end.
    const result = await context.sessions.replace(decided, record.version, { release: true });
    if (!result.ok) return again(result.current);
    record = decided;
  }
  const stored = await finish(context, record, ending);
  const ended: SessionStatus = ending === "committing" ? "closed" : "cancelled";
  const outcome: Omit<SessionOutcome, "at"> =
    ending === "committing"
      ? { kind: "completed", ...stored }
      : {
          kind: "cancelled",
          reason:
            packet.type !== "cancel-session"
              ? "closed before the last byte"
              : call.byOperator
                ? "cancelled by an operator"
                : "cancelled by the client",
        };
  const result = await context.sessions.replace(
    tombstone(context, record, ended, outcome),
    record.version,
  );
  // Someone else finished the same decision meanwhile: the next attempt sees its tombstone.
  if (!result.ok) return again(result.current);
  const name = ended === "closed" ? "SessionsCompleted" : "SessionsCancelled";
  context.runtime.log("info", `session ${ended}`, {
    session: sessionTag(record.id),
    key: record.key,
    committed: ending === "committing",
    ...emfFields(
      context.settings.metrics,
      [{ name, value: 1, unit: "Count" }],
      context.runtime.now(),
    ),
  });
  return done(endAck(record.id, ended, outcome));
}

/** The Ack of an ended session: for a stored file, with the object's CRC32C when known. */
function endAck(
  sessionId: string,
  status: SessionStatus,
  outcome: Omit<SessionOutcome, "at"> | undefined,
): BitsResponse {
  const stored = status === "closed" && outcome?.kind === "completed";
  return ack(200, { sessionId, objectCrc32c: stored ? outcome.crc32c : undefined });
}

/** What the completion event says of a stored object (docs/events.md). */
type StoredObject = Pick<SessionOutcome, "versionId" | "crc32c" | "verifiedBy">;

/** The S3 side of a decided ending; every call in it may be repeated. */
async function finish(
  context: ServiceContext,
  record: SessionRecord,
  ending: EndingStatus,
): Promise<StoredObject> {
  // Upload-reply: what is kept was decided when the application answered (a copy at the
  // destination, if it asked); Close and Cancel both remove the request and the reply
  // ([MC-BUP] 3.2.5.2.7-8).
  if (ending === "committing" && record.notify === undefined) {
    const completion = await commit(context, record);
    const { result: outcome, reason } = completion;
    if (outcome !== "completed") {
      if (outcome === "exists") {
        // Checked again at commit: another writer created the object meanwhile (docs/protocol.md,
        // "Overwrite").
        await failSession(context, record, "the destination appeared and overwrite is off");
        throw new BitsError("accessDenied", "destination appeared and overwrite is off");
      }
      // The upload's data is gone or unusable (removed behind our back, or parts that do not
      // match): the client restarts from byte 0 on BG_E_SESSION_NOT_FOUND ([MC-BUP] 3.1.5.2.1).
      const why = reason ?? outcome;
      await failSession(context, record, `the upload cannot be completed (${why})`);
      throw new BitsError("sessionNotFound", `the upload cannot be completed (${why})`);
    }
    await deleteTemporaryState(context, record);
    return {
      versionId: completion.versionId,
      crc32c: completion.checksum?.crc32c,
      verifiedBy: completion.checksum?.verifiedBy,
    };
  }
  await deleteUploadData(context, record);
  // Upload-reply: the request object was completed and checked when the application was
  // notified; its checksum is the one of the bytes received (docs/checksums.md).
  if (ending === "committing" && record.receivedCrc32c !== undefined) {
    return { crc32c: crc32cBase64(record.receivedCrc32c), verifiedBy: "server" };
  }
  return {};
}

/**
 * Completes the multipart upload, or writes the empty object of a zero-byte file. With
 * overwrite off, under a claim on the key (see `claimKey`).
 */
async function commit(context: ServiceContext, record: SessionRecord) {
  const completion = await underKeyClaim(context, record, () =>
    completeFile(context, record, record.key, record.overwrite),
  );
  if (completion.result === "completed") {
    context.runtime.log("info", "file stored", {
      session: sessionTag(record.id),
      key: record.key,
      versionId: completion.versionId,
      crc32c: completion.checksum?.crc32c,
      verifiedBy: completion.checksum?.verifiedBy,
    });
  }
  return completion;
}

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
    await new Promise((resolve) => setTimeout(resolve, wait));
  }
  throw new BitsError("internal", "another session is completing the same key");
}

/**
 * Ends a session the server gives up on: its upload cannot be completed (its data is gone or
 * unusable) or the client broke a cap. Its data is deleted and a tombstone says why: the client is then told its error
 * and starts over, and the session's event is `Upload Failed` (docs/events.md).
 */
export async function failSession(context: ServiceContext, record: SessionRecord, reason: string) {
  await deleteUploadData(context, record);
  const ended = tombstone(context, record, "cancelled", { kind: "failed", reason });
  await context.sessions.replace(ended, record.version, { release: record.status === "open" });
}

/** Aborts the upload and deletes staged bytes and part lists; never touches the object. */
export async function deleteUploadData(context: ServiceContext, record: SessionRecord) {
  await context.objects.abortUpload(uploadKey(record), record.uploadId);
  // The open part's builder (docs/large-files.md); a completed one is an object under the
  // staging prefix, deleted with the staged bytes.
  const builder = openBuilder(context.settings.stagingPrefix, record);
  if (builder !== undefined) await context.objects.abortUpload(builder.key, builder.uploadId);
  await deleteTemporaryState(context, record);
}

/**
 * Every ending goes through here: deletes staged bytes and part lists, and forgets what this
 * instance kept of the session.
 */
async function deleteTemporaryState(context: ServiceContext, record: SessionRecord) {
  const prefix = stagingPrefixFor(context.settings.stagingPrefix, record.id);
  context.cache?.forgetSession(record.id, prefix);
  await deleteStaged(context.objects, prefix);
  // One chunk past the recorded ones: a writer that lost its race may have sealed it.
  await context.sessions.deletePartChunks(record.id, record.chunks + 1);
}

/** The record of an ended session, with how it ended; repeats of Close and Cancel find it. */
function tombstone(
  context: ServiceContext,
  record: SessionRecord,
  status: SessionStatus,
  outcome: Omit<SessionOutcome, "at">,
): SessionRecord {
  return {
    ...record,
    status,
    etags: [],
    chunks: 0,
    builder: undefined,
    version: record.version + 1,
    expiresAt: nowSeconds(context) + context.settings.tombstoneSeconds,
    outcome: { ...outcome, at: context.runtime.now() },
  };
}
