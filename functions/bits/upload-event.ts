import { isEnded, type OutcomeKind, type SessionRecord } from "./session.ts";

/**
 * Completion events (docs/events.md): one per session, derived from the session table's
 * durable changes, never from a call made after a commit, so no ending goes unannounced.
 */

export const EVENT_DETAIL_TYPES: Record<OutcomeKind, string> = {
  completed: "Upload Completed",
  cancelled: "Upload Cancelled",
  expired: "Upload Expired",
  failed: "Upload Failed",
};

/** The `detail` of an event, as EventBridge rules match it; version 1 of the schema. */
export interface UploadEventDetail {
  readonly version: 1;
  /**
   * Stable for the session's ending: deliveries are at least once, and every delivery of one
   * ending carries the same ID, so consumers deduplicate on it.
   */
  readonly eventId: string;
  readonly outcome: OutcomeKind;
  readonly reason?: string | undefined;
  readonly sessionId: string;
  readonly bucket: string;
  /** The destination key the client uploaded to. */
  readonly key: string;
  /** Whether this session left an object at `key` (upload-reply: only if the reply asked). */
  readonly stored: boolean;
  readonly versionId?: string | undefined;
  /** The file's size from the client's Content-Range; null if no fragment arrived. */
  readonly size: number | null;
  readonly checksum?:
    | {
        readonly algorithm: "CRC32C";
        /** Base64 of the big-endian value, as S3 and `aws s3api` show it. */
        readonly value: string;
        readonly verifiedBy: "s3" | "server";
      }
    | undefined;
  readonly principal: string;
  readonly authMode?: string | undefined;
  readonly clientAddress?: string | undefined;
  readonly startedAt?: string | undefined;
  readonly endedAt: string;
  /** Fragments that wrote something. */
  readonly fragments: number;
  /** Body bytes of those fragments, overlapping resends included. */
  readonly bytesReceived: number;
  /** Contiguous bytes held from byte 0 when the session ended. */
  readonly bytesHeld: number;
  readonly uploadReply?: { readonly copied: boolean } | undefined;
}

export interface UploadEvent {
  readonly detailType: string;
  /** Epoch ms of the ending. */
  readonly time: number;
  /** The object the event is about, as an ARN. */
  readonly resource: string;
  readonly detail: UploadEventDetail;
}

/** One write to the session table, as its stream reports it; either image may be missing. */
export interface SessionChange {
  readonly before?: SessionRecord | undefined;
  readonly after?: SessionRecord | undefined;
}

/**
 * The session this change ended, if it did: a write that gave the record its outcome. Later
 * writes of a tombstone, and its removal by TTL, end nothing.
 */
export function endedBy(change: SessionChange): SessionRecord | undefined {
  const { before, after } = change;
  if (after?.outcome === undefined || before?.outcome !== undefined) return undefined;
  return after;
}

/**
 * A session removed while not ended (DynamoDB's TTL, or an operator): its ending is decided by
 * whoever handles the removal (docs/events.md, "Expired").
 */
export function removedUnended(change: SessionChange): SessionRecord | undefined {
  const { before, after } = change;
  if (after !== undefined || before === undefined) return undefined;
  return isEnded(before) || before.outcome !== undefined ? undefined : before;
}

/** The event announcing an ended session (its record carries its outcome). */
export function uploadEvent(record: SessionRecord, bucket: string): UploadEvent {
  const outcome = record.outcome;
  if (outcome === undefined) throw new Error("uploadEvent needs an ended session");
  const stored = outcome.kind === "completed" && (!record.notify || record.reply?.copied === true);
  const detail: UploadEventDetail = {
    version: 1,
    eventId: record.id,
    outcome: outcome.kind,
    reason: outcome.reason,
    sessionId: record.id,
    bucket,
    key: record.key,
    stored,
    versionId: stored ? outcome.versionId : undefined,
    size: record.total ?? null,
    checksum:
      outcome.crc32c === undefined
        ? undefined
        : {
            algorithm: "CRC32C",
            value: outcome.crc32c,
            verifiedBy: outcome.verifiedBy ?? "server",
          },
    principal: record.principal,
    authMode: record.auth,
    clientAddress: record.client,
    startedAt: record.createdAt === undefined ? undefined : iso(record.createdAt),
    endedAt: iso(outcome.at),
    fragments: record.fragments,
    bytesReceived: record.bytesReceived ?? 0,
    bytesHeld: record.offset,
    uploadReply: record.notify ? { copied: record.reply?.copied === true } : undefined,
  };
  return {
    detailType: EVENT_DETAIL_TYPES[outcome.kind],
    time: outcome.at,
    resource: `arn:aws:s3:::${bucket}/${record.key}`,
    detail: withoutUndefined(detail),
  };
}

const iso = (ms: number) => new Date(ms).toISOString();

/** JSON drops undefined fields anyway; tests comparing objects should not see them either. */
function withoutUndefined<T extends object>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as T;
}
