import { ack } from "../bits/ack.ts";
import { crc32cBase64 } from "../bits/crc32c.ts";
import { BitsError } from "../bits/errors.ts";
import type { Packet } from "../bits/packet.ts";
import type { BitsResponse } from "../bits/request.ts";
import {
  type EndingStatus,
  endingFor,
  isEnded,
  type SessionOutcome,
  type SessionRecord,
  type SessionStatus,
} from "../bits/session.ts";
import { type Call, liveAndOwned, sessionTag } from "./call.ts";
import { completeFile, underKeyClaim } from "./completion.ts";
import { nowSeconds, type ServiceContext } from "./context.ts";
import { deleteTemporaryState, deleteUploadData, failSession, tombstone } from "./endings.ts";
import { emfFields } from "./metrics.ts";
import { type Attempt, again, done, untilSettled } from "./retry.ts";
import { caughtUp } from "./tail.ts";

type EndPacket = Extract<Packet, { type: "close-session" | "cancel-session" }>;

// The handler of Close- and Cancel-Session. Completing the file is completion.ts; the ways a
// session ends (failed, tombstoned, its temporary state deleted) are endings.ts, whose comment
// gives the one word per kind of thing removed.

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
  named: SessionRecord | undefined,
  packet: EndPacket,
  call: Call,
): Promise<Attempt<BitsResponse>> {
  const found = liveAndOwned(named, packet, call, nowSeconds(context));
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
      ...(ending === "discarding" ? { endingReason: discardReason(packet, call) } : {}),
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
      : // The reason decided with the ending, whoever carries it out.
        { kind: "cancelled", reason: record.endingReason ?? discardReason(packet, call) };
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

/** Why a session that is not completed is thrown away, as its client will be told. */
function discardReason(packet: EndPacket, call: Call): string {
  if (packet.type !== "cancel-session") return "closed before the last byte";
  return call.byOperator ? "cancelled by an operator" : "cancelled by the client";
}
