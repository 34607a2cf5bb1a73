import { ack } from "../bits/ack.ts";
import { BitsError } from "../bits/errors.ts";
import type { Packet } from "../bits/packet.ts";
import type { BitsResponse } from "../bits/request.ts";
import {
  type EndingStatus,
  endingFor,
  isEnded,
  isLive,
  type SessionRecord,
  type SessionStatus,
} from "../bits/session.ts";
import { nowSeconds, type ServiceContext } from "./context.ts";
import { deleteStaged, stagingPrefixFor } from "./staging.ts";

type EndPacket = Extract<Packet, { type: "close-session" | "cancel-session" }>;

const MAX_ATTEMPTS = 8;

/**
 * Close-Session and Cancel-Session ([MC-BUP] 3.2.5.2.7-8), in two phases. First the decision
 * (commit a complete file, or discard) is written into the record, conditionally on the version
 * read, so no racing fragment can change what the session ends with. Then the S3 work is done,
 * every step of it retry-safe, and a tombstone is written, so a repeat answers 200
 * (bits-protocol.md 9.5). Whoever finds a session mid-way (a repeated Close after a crash or a
 * timeout) finishes the same decision.
 */
export async function endSession(
  context: ServiceContext,
  packet: EndPacket,
): Promise<BitsResponse> {
  let record = await context.sessions.get(packet.sessionId);
  for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
    if (record === undefined || !isLive(record, nowSeconds(context))) {
      throw new BitsError("sessionNotFound", "no such session");
    }
    if (isEnded(record)) return ack(200, { sessionId: record.id });
    const ending = endingFor(record, packet.type === "close-session" ? "close" : "cancel");
    if (record.status === "open") {
      const decided: SessionRecord = { ...record, status: ending, version: record.version + 1 };
      const result = await context.sessions.replace(decided, record.version);
      if (!result.ok) {
        record = result.current;
        continue;
      }
      record = decided;
    }
    await finish(context, record, ending);
    const ended: SessionStatus = ending === "committing" ? "closed" : "cancelled";
    const result = await context.sessions.replace(
      tombstone(context, record, ended),
      record.version,
    );
    if (result.ok) {
      context.runtime.log("info", `session ${ended}`, {
        sessionId: record.id,
        key: record.key,
        committed: ending === "committing",
      });
      return ack(200, { sessionId: record.id });
    }
    // Someone else finished the same decision meanwhile: the next round sees its tombstone.
    record = result.current;
  }
  throw new BitsError("internal", "session kept changing under this request");
}

/** The S3 side of a decided ending; every call in it may be repeated. */
async function finish(context: ServiceContext, record: SessionRecord, ending: EndingStatus) {
  if (ending === "committing") {
    const outcome = await commit(context, record);
    if (outcome !== "completed") {
      await discard(context, record);
      if (outcome === "exists") {
        // Checked again at commit: another writer created the object meanwhile (Project decisions).
        throw new BitsError("accessDenied", "destination appeared and overwrite is off");
      }
      // The upload's data is gone or unusable (removed behind our back, or parts that do not
      // match): the client restarts from byte 0 on BG_E_SESSION_NOT_FOUND ([MC-BUP] 3.1.5.2.1).
      throw new BitsError("sessionNotFound", `the upload cannot be completed (${outcome})`);
    }
    await removeTemporaryState(context, record);
  } else {
    await releaseStorage(context, record);
  }
}

/** Completes the multipart upload, or writes the empty object of a zero-byte file. */
async function commit(context: ServiceContext, record: SessionRecord) {
  const { objects, sessions, settings } = context;
  const options = { overwrite: settings.allowOverwrite, owner: record.id };
  if (record.total === 0) {
    const outcome = await objects.putObject(record.key, new Uint8Array(0), options);
    await objects.abortUpload(record.key, record.uploadId);
    return outcome === "stored" ? "completed" : outcome;
  }
  const sealed = await sessions.getPartChunks(record.id, record.chunks);
  const etags = [...sealed.flat(), ...record.etags];
  return objects.completeUpload(record.key, record.uploadId, etags, options);
}

/**
 * Abandons a session whose upload cannot be completed (its data is gone or unusable), leaving a
 * tombstone: the client is then told BG_E_SESSION_NOT_FOUND and starts over.
 */
export async function discard(context: ServiceContext, record: SessionRecord) {
  await releaseStorage(context, record);
  await context.sessions.replace(tombstone(context, record, "cancelled"), record.version);
}

/** Aborts the upload and removes staged bytes and part lists; never touches the object. */
export async function releaseStorage(context: ServiceContext, record: SessionRecord) {
  await context.objects.abortUpload(record.key, record.uploadId);
  await removeTemporaryState(context, record);
}

/** Every ending goes through here: staged bytes, part lists and what this instance kept. */
async function removeTemporaryState(context: ServiceContext, record: SessionRecord) {
  const prefix = stagingPrefixFor(context.settings.stagingPrefix, record.id);
  context.cache?.forgetSession(record.id, prefix);
  await deleteStaged(context.objects, prefix);
  // One chunk past the recorded ones: a writer that lost its race may have sealed it.
  await context.sessions.deletePartChunks(record.id, record.chunks + 1);
}

function tombstone(
  context: ServiceContext,
  record: SessionRecord,
  status: SessionStatus,
): SessionRecord {
  return {
    ...record,
    status,
    etags: [],
    chunks: 0,
    version: record.version + 1,
    expiresAt: nowSeconds(context) + context.settings.tombstoneSeconds,
  };
}
