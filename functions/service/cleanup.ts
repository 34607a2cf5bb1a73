import { isEnded, isLive, type SessionRecord } from "../bits/session.ts";
import { sessionTag } from "./call.ts";
import { nowSeconds, type ServiceContext } from "./context.ts";
import { releaseStorage } from "./end-session.ts";
import { emfFields } from "./metrics.ts";
import { sessionIdOfStagingDir } from "./staging.ts";

/**
 * Releases what an expired session held: its multipart upload is aborted, its staged bytes and
 * part lists deleted ([MC-BUP] 3.2.6.1: on expiry the server MUST delete all session data).
 * The destination object is never touched, so a completed upload stays as it is. Idempotent.
 */
export async function cleanUpSession(
  context: ServiceContext,
  record: SessionRecord,
  { removed }: { removed: boolean },
) {
  await releaseStorage(context, record);
  if (record.status === "open") await releaseSlot(context, record, removed);
  const expired = record.status === "open" ? 1 : 0;
  context.runtime.log("info", "expired session cleaned up", {
    session: sessionTag(record.id),
    key: record.key,
    status: record.status,
    ...emfFields(
      context.settings.metrics,
      [{ name: "SessionsExpired", value: expired, unit: "Count" }],
      context.runtime.now(),
    ),
  });
}

/**
 * An expired session still counted as open stops counting, exactly once. One that DynamoDB's
 * TTL removed is released through an idempotent marker (the stream delivers at least once).
 * One still in the table is ended by a versioned write that keeps its past expiry, so it stays
 * unknown to clients; a fragment that renewed it meanwhile makes that write fail, and the
 * session, live again, keeps counting.
 */
async function releaseSlot(context: ServiceContext, record: SessionRecord, removed: boolean) {
  if (removed) {
    await context.sessions.releaseRemoved(record);
    return;
  }
  const ended = { ...record, status: "cancelled" as const, version: record.version + 1 };
  await context.sessions.replace(ended, record.version, { release: true });
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
