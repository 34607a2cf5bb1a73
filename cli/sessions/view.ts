import {
  isEnded,
  isLive,
  recordedParts,
  type SessionRecord,
  type SessionStatus,
} from "../../functions/bits/session.ts";

/**
 * A session as the operator sees it: the record's status, or `expired` for a session past its
 * timeout that nobody ended yet (clients no longer reach it; the cleanup releases it,
 * docs/cleanup.md).
 */
export type SessionState = SessionStatus | "expired";

/** One session, as `bits-sessions --json` prints it; sizes in bytes, times ISO 8601 (UTC). */
export interface SessionView {
  readonly id: string;
  readonly state: SessionState;
  readonly principal: string;
  readonly auth: string | null;
  readonly client: string | null;
  readonly key: string;
  /** Contiguous bytes durably held from byte 0 (what Acks report). */
  readonly received: number;
  /** The file's size from the first Fragment's Content-Range; null before it. */
  readonly total: number | null;
  /** `received` of `total`, rounded down to a tenth; null before the first Fragment. */
  readonly percent: number | null;
  /**
   * S3 parts recorded, their bytes, and the bytes staged for the part being gathered; all 0
   * once the session ended (its storage was released or became the object).
   */
  readonly parts: number;
  readonly bytesInParts: number;
  readonly bytesStaged: number;
  /** Fragments that wrote something, and their body bytes (resends included). */
  readonly fragments: number;
  readonly bytesReceived: number;
  readonly uploadId: string;
  /** The multipart upload's key when it is not `key` (an upload-reply job's request object). */
  readonly uploadKey: string | null;
  readonly uploadReply: boolean;
  readonly createdAt: string | null;
  readonly ageSeconds: number | null;
  /** The last Fragment, Create-, Close- or Cancel-Session that changed the session. */
  readonly lastActivityAt: string;
  readonly idleSeconds: number;
  readonly expiresAt: string;
  readonly outcome: {
    readonly kind: string;
    readonly at: string;
    readonly reason: string | null;
  } | null;
}

/** Open sessions: those a client can still send packets to, ending ones included. */
export function isOpenState(state: SessionState): boolean {
  return state === "open" || state === "committing" || state === "discarding";
}

const iso = (ms: number) => new Date(ms).toISOString();
const elapsed = (since: number, nowMs: number) => Math.max(0, Math.floor((nowMs - since) / 1000));

/**
 * The view of a record at `nowMs`. The record keeps no time of last activity, but every change
 * renews the expiry to a full session timeout ([MC-BUP] 3.2.6.1), so an unended session was
 * last active `sessionTimeoutSeconds` before it expires; an ended one, when it ended.
 */
export function sessionView(
  record: SessionRecord,
  nowMs: number,
  sessionTimeoutSeconds: number,
): SessionView {
  const ended = isEnded(record);
  const state: SessionState =
    ended || isLive(record, Math.floor(nowMs / 1000)) ? record.status : "expired";
  const total = record.total ?? null;
  const renewed = (record.expiresAt - sessionTimeoutSeconds) * 1000;
  const lastActivity = Math.max(
    record.outcome?.at ?? Math.min(renewed, nowMs),
    record.createdAt ?? Number.NEGATIVE_INFINITY,
  );
  return {
    id: record.id,
    state,
    principal: record.principal,
    auth: record.auth ?? null,
    client: record.client ?? null,
    key: record.key,
    received: record.offset,
    total,
    percent: total === null ? null : percentOf(record.offset, total),
    parts: ended ? 0 : recordedParts(record),
    bytesInParts: ended ? 0 : record.bytesInParts,
    bytesStaged: ended ? 0 : Math.max(0, record.offset - record.bytesInParts),
    fragments: record.fragments,
    bytesReceived: record.bytesReceived ?? 0,
    uploadId: record.uploadId,
    uploadKey: record.requestKey ?? null,
    uploadReply: record.notify !== undefined,
    createdAt: record.createdAt === undefined ? null : iso(record.createdAt),
    ageSeconds: record.createdAt === undefined ? null : elapsed(record.createdAt, nowMs),
    lastActivityAt: iso(lastActivity),
    idleSeconds: elapsed(lastActivity, nowMs),
    expiresAt: iso(record.expiresAt * 1000),
    outcome:
      record.outcome === undefined
        ? null
        : {
            kind: record.outcome.kind,
            at: iso(record.outcome.at),
            reason: record.outcome.reason ?? null,
          },
  };
}

/** Percent of `total`, rounded down to a tenth: 99.99 % received is not 100.0 %. */
export function percentOf(received: number, total: number): number {
  if (total === 0) return 100;
  return Math.floor((received * 1000) / total) / 10;
}

/** Oldest first; sessions without a creation time (older records) before the others. */
export function byAge(a: SessionView, b: SessionView): number {
  const at = (view: SessionView) => (view.createdAt === null ? "" : view.createdAt);
  return at(a).localeCompare(at(b)) || a.id.localeCompare(b.id);
}
