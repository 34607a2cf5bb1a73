import { ack } from "../bits/ack.ts";
import { BitsError } from "../bits/errors.ts";
import type { Packet } from "../bits/packet.ts";
import type { BitsResponse } from "../bits/request.ts";
import { isComplete, isLive, type SessionRecord, type SessionStatus } from "../bits/session.ts";
import { nowSeconds, type ServiceContext } from "./context.ts";
import { deleteStaged, stagingPrefixFor } from "./staging.ts";

type EndPacket = Extract<Packet, { type: "close-session" | "cancel-session" }>;

const MAX_ATTEMPTS = 8;

/**
 * Close-Session and Cancel-Session ([MC-BUP] 3.2.5.2.7-8). Close commits the file when every
 * byte has arrived and discards it otherwise (a partial file is never committed, close-session
 * docs); Cancel discards an open session and leaves a completed file alone (cancel-session
 * docs). Either leaves a tombstone, so a repeat answers 200 (bits-protocol.md 9.5).
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
    if (record.status !== "open") return ack(200, { sessionId: record.id });
    const closing = packet.type === "close-session";
    const status: SessionStatus = closing ? "closed" : "cancelled";
    if (closing && isComplete(record)) {
      await commit(context, record);
    } else {
      await context.objects.abortUpload(record.key, record.uploadId);
    }
    await removeTemporaryState(context, record);
    const result = await context.sessions.replace(
      tombstone(context, record, status),
      record.version,
    );
    if (result.ok) {
      context.runtime.log("info", `session ${status}`, {
        sessionId: record.id,
        key: record.key,
        committed: closing && isComplete(record),
      });
      return ack(200, { sessionId: record.id });
    }
    record = result.current;
  }
  throw new BitsError("internal", "session kept changing under this request");
}

/** Completes the multipart upload, or writes the empty object of a zero-byte file. */
async function commit(context: ServiceContext, record: SessionRecord): Promise<void> {
  const { objects, sessions, settings } = context;
  const overwrite = settings.allowOverwrite;
  let outcome: "completed" | "stored" | "exists" | "missing";
  if (record.total === 0) {
    outcome = await objects.put(record.key, new Uint8Array(0), overwrite);
    await objects.abortUpload(record.key, record.uploadId);
  } else {
    const sealed = await sessions.getPartChunks(record.id, record.chunks);
    const etags = [...sealed.flat(), ...record.etags];
    outcome = await objects.completeUpload(record.key, record.uploadId, etags, overwrite);
  }
  if (outcome === "exists") {
    // Checked again at commit: another writer created the object meanwhile (Project decisions).
    await discard(context, record, "cancelled");
    throw new BitsError("accessDenied", "destination appeared and overwrite is off");
  }
  if (outcome === "missing") {
    // The upload was removed behind our back (lifecycle rule, operator): the bytes are gone,
    // and the client restarts from byte 0 on BG_E_SESSION_NOT_FOUND ([MC-BUP] 3.1.5.2.1).
    await discard(context, record, "cancelled");
    throw new BitsError("sessionNotFound", "the upload's data is gone");
  }
}

async function discard(context: ServiceContext, record: SessionRecord, status: SessionStatus) {
  await context.objects.abortUpload(record.key, record.uploadId);
  await removeTemporaryState(context, record);
  await context.sessions.replace(tombstone(context, record, status), record.version);
}

async function removeTemporaryState(context: ServiceContext, record: SessionRecord) {
  await deleteStaged(context.objects, stagingPrefixFor(context.settings.stagingPrefix, record.id));
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
