import {
  isEnded,
  isLive,
  type SessionOutcome,
  type SessionRecord,
  type SessionStatus,
} from "../bits/session.ts";
import {
  endedBy,
  removedUnended,
  type SessionChange,
  type UploadEvent,
  uploadEvent,
} from "../bits/upload-event.ts";
import type { EventSink } from "../ports/event-sink.ts";
import { sessionTag } from "./call.ts";
import { nowSeconds, type ServiceContext } from "./context.ts";
import { releaseStorage } from "./end-session.ts";
import { emfFields } from "./metrics.ts";
import { sessionIdOfStagingDir } from "./staging.ts";

/**
 * Handles a batch of the session table's changes, in order (docs/events.md): a write that ended
 * a session is announced; a session removed before it ended (DynamoDB's TTL) has its storage
 * released, then is announced. Events come from these durable writes, not from the request
 * that made them, so a function that dies after a commit cannot lose the announcement. The
 * batch is delivered at least once: every step is idempotent and every event keeps its ID.
 */
export async function handleSessionChanges(
  context: ServiceContext,
  changes: readonly SessionChange[],
  sink: EventSink,
): Promise<{ readonly cleaned: number; readonly events: number }> {
  const events: UploadEvent[] = [];
  let cleaned = 0;
  for (const change of changes) {
    const removed = removedUnended(change);
    if (removed !== undefined) cleaned += 1;
    const ended =
      removed === undefined
        ? endedBy(change)
        : { ...removed, outcome: await cleanUpSession(context, removed, { removed: true }) };
    if (ended !== undefined) events.push(uploadEvent(ended, context.settings.bucket));
  }
  await sink.publish(events);
  return { cleaned, events: events.length };
}

/**
 * Releases what an expired session held: its multipart upload is aborted, its staged bytes and
 * part lists deleted ([MC-BUP] 3.2.6.1: on expiry the server MUST delete all session data).
 * The destination object is never touched, so a completed upload stays as it is. Idempotent.
 * Returns how the session ended. One still in the table (`removed: false`, found by the sweep)
 * is given that outcome by a versioned write, which the stream then announces.
 */
export async function cleanUpSession(
  context: ServiceContext,
  record: SessionRecord,
  { removed }: { removed: boolean },
): Promise<SessionOutcome> {
  const outcome = await expiryOutcome(context, record);
  await releaseStorage(context, record);
  if (removed) {
    if (record.status === "open") await context.sessions.releaseRemoved(record);
  } else {
    await endExpired(context, record, outcome);
  }
  context.runtime.log("info", "expired session cleaned up", {
    session: sessionTag(record.id),
    key: record.key,
    status: record.status,
    outcome: outcome.kind,
    ...emfFields(
      context.settings.metrics,
      [{ name: "SessionsExpired", value: outcome.kind === "expired" ? 1 : 0, unit: "Count" }],
      context.runtime.now(),
    ),
  });
  return outcome;
}

/**
 * How a session that reached its timeout unended did end. Usually it expired. But one whose
 * end was decided (a Close or Cancel whose handler died before writing the tombstone) ends as
 * decided: a commit that completed left the session's own object at the key (its owner
 * metadata), and an upload-reply session was handed over when the application answered.
 */
async function expiryOutcome(
  context: ServiceContext,
  record: SessionRecord,
): Promise<SessionOutcome> {
  const at = context.runtime.now();
  const late = "the session timed out before its end was recorded";
  if (record.status === "committing") {
    const done =
      record.notify !== undefined || (await context.objects.head(record.key))?.owner === record.id;
    if (done) return { kind: "completed", at, reason: late };
  }
  if (record.status === "discarding") return { kind: "cancelled", at, reason: late };
  return { kind: "expired", at, reason: "no Close-Session before the session timeout" };
}

/**
 * Ends an expired session still in the table, exactly once. An open one stops counting in the
 * same write (docs/security.md, Caps). The expiry stays in the past, so the session stays
 * unknown to clients; a fragment that renewed it meanwhile makes the write fail, and the
 * session, live again, keeps counting and is not announced.
 */
async function endExpired(context: ServiceContext, record: SessionRecord, outcome: SessionOutcome) {
  const status: SessionStatus = outcome.kind === "completed" ? "closed" : "cancelled";
  const ended = { ...record, status, outcome, version: record.version + 1 };
  await context.sessions.replace(ended, record.version, { release: record.status === "open" });
}

export interface SweepReport {
  readonly expiredSessions: number;
  readonly orphanChunkSessions: number;
  readonly orphanStagedObjects: number;
}

/**
 * The scheduled sweep, for what the stream of TTL deletions missed: sessions past their expiry
 * that DynamoDB has not removed yet, part lists and staged bytes whose session is gone, ended
 * or expired. Before deleting anything of a session it did not see live, it reads the session
 * again, so a session created during the sweep keeps its bytes.
 */
export async function sweep(context: ServiceContext): Promise<SweepReport> {
  const now = nowSeconds(context);
  const live = new Set<string>();
  const expired: SessionRecord[] = [];
  const chunks = new Map<string, number>();
  for await (const item of context.sessions.scan()) {
    if (item.kind === "chunk") {
      chunks.set(item.sessionId, Math.max(chunks.get(item.sessionId) ?? 0, item.index + 1));
    } else if (isEnded(item.record)) {
      // Ended sessions released their storage when they ended.
    } else if (isLive(item.record, now)) {
      live.add(item.record.id);
    } else {
      expired.push(item.record);
    }
  }
  const stillLive = async (id: string) => {
    if (live.has(id)) return true;
    const record = await context.sessions.get(id);
    return record !== undefined && !isEnded(record) && isLive(record, nowSeconds(context));
  };

  for (const record of expired) await cleanUpSession(context, record, { removed: false });

  let orphanChunkSessions = 0;
  for (const [id, count] of chunks) {
    if (await stillLive(id)) continue;
    await context.sessions.deletePartChunks(id, count);
    orphanChunkSessions += 1;
  }

  const prefix = context.settings.stagingPrefix;
  const staged = new Map<string, string[]>();
  for (const object of await context.objects.list(prefix)) {
    const dir = object.key.slice(prefix.length).split("/")[0] ?? "";
    staged.set(dir, [...(staged.get(dir) ?? []), object.key]);
  }
  let orphanStagedObjects = 0;
  for (const [dir, keys] of staged) {
    const id = sessionIdOfStagingDir(dir);
    if (id !== undefined && (await stillLive(id))) continue;
    await context.objects.delete(keys);
    orphanStagedObjects += keys.length;
  }

  const report = { expiredSessions: expired.length, orphanChunkSessions, orphanStagedObjects };
  context.runtime.log("info", "sweep done", { ...report });
  return report;
}
