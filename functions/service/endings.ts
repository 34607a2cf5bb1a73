import type { SessionOutcome, SessionRecord, SessionStatus } from "../bits/session.ts";
import { uploadKey } from "../bits/session.ts";
import { nowSeconds, type ServiceContext } from "./context.ts";
import { deleteStaged, openBuilder, stagingPrefixFor } from "./staging.ts";

// Removal has one word per kind of thing removed, here and in end-session.ts, fragment.ts and
// cleanup.ts: a multipart upload is *aborted*; objects and table items are *deleted*; what an
// instance keeps in memory is *forgotten*; a session's place in the open-session counts is
// *released*. A session the server gives up on is *failed*; one the client gives up on is
// *discarded* (the `discarding` decision of Close-before-the-end and Cancel).

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
export async function deleteTemporaryState(context: ServiceContext, record: SessionRecord) {
  const prefix = stagingPrefixFor(context.settings.stagingPrefix, record.id);
  context.cache?.forgetSession(record.id, prefix);
  await deleteStaged(context.objects, prefix);
  // One chunk past the recorded ones: a writer that lost its race may have sealed it.
  await context.sessions.deletePartChunks(record.id, record.chunks + 1);
}

/** The record of an ended session, with how it ended; repeats of Close and Cancel find it. */
export function tombstone(
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
