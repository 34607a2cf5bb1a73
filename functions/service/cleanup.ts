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
import { redactIds, sessionTag } from "./call.ts";
import { nowSeconds, type ServiceContext } from "./context.ts";
import { deleteUploadData } from "./endings.ts";
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
  await deleteUploadData(context, record);
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

/** Table entries per scan page, and keys per page of the staging listing (S3's most). */
const TABLE_PAGE = 100;
const OBJECT_PAGE = 1000;

export interface SweepOptions {
  /**
   * Milliseconds in which the sweep may still start a page; at 0 or less it stops and saves
   * where. The Lambda handler passes its time left minus a margin. None: no deadline.
   */
  readonly remainingMs?: (() => number) | undefined;
  /** Entries per table page and keys per listing page (tests make them small). */
  readonly pageSizes?: { readonly table: number; readonly objects: number } | undefined;
}

export interface SweepReport {
  /** Expired sessions given their outcome. */
  readonly expiredSessions: number;
  /** Sessions whose orphan part chunks were deleted; counted once per page they appear in. */
  readonly orphanChunkSessions: number;
  readonly orphanStagedObjects: number;
  /** Sessions and staging directories whose cleanup threw: logged, left for the next pass. */
  readonly failures: number;
  /** Pages read, of the table and of the staging listing. */
  readonly pages: number;
  /** This run went on from where an earlier one stopped. */
  readonly resumed: boolean;
  /** This run finished a pass; false when it stopped at its deadline, for the next to resume. */
  readonly complete: boolean;
}

/** Where a pass stands: the table scan first, then the staging listing (docs/cleanup.md). */
interface Position {
  readonly phase: "table" | "staging";
  /** The `next` of the last page done in this phase. */
  readonly after?: string | undefined;
}

type Counts = { -readonly [K in keyof Omit<SweepReport, "resumed" | "complete">]: number };

/**
 * The scheduled sweep, for what the stream of TTL deletions missed: sessions past their expiry
 * that DynamoDB has not removed yet, part lists and staged bytes whose session is gone, ended
 * or expired. Before deleting anything of a session it did not see live, it reads the session
 * again, so a session created during the sweep keeps its bytes.
 *
 * It goes page by page, the table's and then the staging listing's, holding one page at a time
 * (docs/cleanup.md). After each page it saves its position in the table; it starts no page
 * once `remainingMs` is spent, and the next run goes on from the saved position. A session or
 * staging directory whose cleanup throws is logged and counted, and the sweep goes on.
 */
export async function sweep(
  context: ServiceContext,
  options: SweepOptions = {},
): Promise<SweepReport> {
  const sizes = options.pageSizes ?? { table: TABLE_PAGE, objects: OBJECT_PAGE };
  const remainingMs = options.remainingMs ?? (() => Number.POSITIVE_INFINITY);
  const saved = await context.sessions.sweepPosition();
  let position = parsePosition(context, saved);
  const counts: Counts = {
    expiredSessions: 0,
    orphanChunkSessions: 0,
    orphanStagedObjects: 0,
    failures: 0,
    pages: 0,
  };
  let complete = false;
  let savedSome = saved !== undefined;
  while (remainingMs() > 0) {
    const next =
      position.phase === "table"
        ? await sweepTablePage(context, position.after, sizes.table, counts)
        : await sweepStagingPage(context, position.after, sizes.objects, counts);
    counts.pages += 1;
    if (next !== undefined) {
      position = { phase: position.phase, after: next };
    } else if (position.phase === "table") {
      position = { phase: "staging" };
    } else {
      complete = true;
      break;
    }
    // Saved after every page: a run killed mid-way loses at most the page it was on.
    await context.sessions.saveSweepPosition(JSON.stringify(position));
    savedSome = true;
  }
  if (complete && savedSome) await context.sessions.saveSweepPosition(undefined);

  const report: SweepReport = { ...counts, resumed: saved !== undefined, complete };
  context.runtime.log("info", complete ? "sweep done" : "sweep stopped at its deadline", {
    ...report,
  });
  return report;
}

function parsePosition(context: ServiceContext, saved: string | undefined): Position {
  if (saved === undefined) return { phase: "table" };
  try {
    const value = JSON.parse(saved) as Position;
    const phaseOk = value?.phase === "table" || value?.phase === "staging";
    if (phaseOk && (value.after === undefined || typeof value.after === "string")) {
      return { phase: value.phase, after: value.after };
    }
  } catch {
    // Treated below like any other unreadable position.
  }
  context.runtime.log("warn", "sweep position unreadable; starting a new pass", {});
  return { phase: "table" };
}

/** One page of the table: expired sessions get their outcome, orphan part chunks go. */
async function sweepTablePage(
  context: ServiceContext,
  after: string | undefined,
  max: number,
  counts: Counts,
): Promise<string | undefined> {
  const page = await context.sessions.scanPage({ after, max });
  const now = nowSeconds(context);
  const live = new Set<string>();
  const expired: SessionRecord[] = [];
  // A session's chunks may span pages: each page deletes those it holds.
  const chunks = new Map<string, number[]>();
  for (const item of page.items) {
    if (item.kind === "chunk") {
      const indices = chunks.get(item.sessionId);
      if (indices === undefined) chunks.set(item.sessionId, [item.index]);
      else indices.push(item.index);
    } else if (isEnded(item.record)) {
      // Ended sessions released their storage when they ended.
    } else if (isLive(item.record, now)) {
      live.add(item.record.id);
    } else {
      expired.push(item.record);
    }
  }
  for (const record of expired) {
    await isolated(context, counts, record.id, "expired session", async () => {
      await cleanUpSession(context, record, { removed: false });
      counts.expiredSessions += 1;
    });
  }
  for (const [id, indices] of chunks) {
    await isolated(context, counts, id, "orphan part chunks", async () => {
      if (live.has(id) || (await stillLive(context, id))) return;
      await context.sessions.deletePartChunksAt(id, indices);
      counts.orphanChunkSessions += 1;
    });
  }
  return page.next;
}

/** One page of the staging listing: staged objects whose session is not live go. */
async function sweepStagingPage(
  context: ServiceContext,
  after: string | undefined,
  max: number,
  counts: Counts,
): Promise<string | undefined> {
  const prefix = context.settings.stagingPrefix;
  const page = await context.objects.listPage(prefix, { after, max });
  // A directory may span pages: each page deletes the objects it holds.
  const dirs = new Map<string, string[]>();
  for (const object of page.objects) {
    const dir = object.key.slice(prefix.length).split("/")[0] ?? "";
    const keys = dirs.get(dir);
    if (keys === undefined) dirs.set(dir, [object.key]);
    else keys.push(object.key);
  }
  for (const [dir, keys] of dirs) {
    const id = sessionIdOfStagingDir(dir);
    await isolated(context, counts, id ?? dir, "orphan staged objects", async () => {
      if (id !== undefined && (await stillLive(context, id))) return;
      await context.objects.delete(keys);
      counts.orphanStagedObjects += keys.length;
    });
  }
  return page.next;
}

/** Read again: a session created or renewed since the page was read keeps what it has. */
async function stillLive(context: ServiceContext, id: string) {
  const record = await context.sessions.get(id);
  return record !== undefined && !isEnded(record) && isLive(record, nowSeconds(context));
}

/**
 * Runs the cleanup of one session (or staging directory); a failure is logged with the
 * session's tag, never its ID, counted (`CleanupFailures`, docs/monitoring.md) and skipped:
 * the next pass tries again.
 */
async function isolated(
  context: ServiceContext,
  counts: Counts,
  id: string,
  what: string,
  work: () => Promise<void>,
) {
  try {
    await work();
  } catch (error) {
    counts.failures += 1;
    const text = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
    context.runtime.log("error", `sweep: cleanup of ${what} failed; going on`, {
      session: sessionTag(id),
      // Staged keys name the session too: neither form of the ID goes into the log.
      error: redactIds(text),
      ...emfFields(
        context.settings.metrics,
        [{ name: "CleanupFailures", value: 1, unit: "Count" }],
        context.runtime.now(),
      ),
    });
  }
}
