/**
 * The session record: everything the server keeps between requests ([MC-BUP] 3.2.1.4, 9.1).
 * A closed or cancelled session stays as a tombstone so repeats answer 200 (bits-protocol.md 9.5).
 */
export type SessionStatus = "open" | "closed" | "cancelled";

export interface SessionRecord {
  readonly id: string;
  readonly status: SessionStatus;
  /** Destination object key. */
  readonly key: string;
  /** The S3 multipart upload that receives the file. */
  readonly uploadId: string;
  /** Total length from the first Fragment's Content-Range; undefined before it. */
  readonly total?: number | undefined;
  /** Size of every part but the last; fixed with the total. */
  readonly partSize?: number | undefined;
  /** Contiguous bytes durably held from byte 0: `E` in bits-protocol.md 5.2. */
  readonly offset: number;
  /** ETags of recorded parts not yet sealed into part chunks, in part order. */
  readonly etags: readonly string[];
  /** Number of sealed chunks of `PART_CHUNK` ETags kept beside the record. */
  readonly chunks: number;
  /** Incremented by every change; the condition of every write. */
  readonly version: number;
  /** Epoch seconds after which the record counts as gone ([MC-BUP] 3.2.6.1). */
  readonly expiresAt: number;
}

/**
 * ETags per sealed chunk. Keeping only the unsealed tail in the session record bounds its size
 * (about 1 KB) whatever the number of parts, far from DynamoDB's 400 KB item limit, and keeps
 * every per-fragment write small.
 */
export const PART_CHUNK = 32;

/** An expired record counts as unknown even before DynamoDB's TTL removes it. */
export function isLive(record: SessionRecord | undefined, nowSeconds: number) {
  return record !== undefined && record.expiresAt > nowSeconds;
}

export function isComplete(record: SessionRecord): boolean {
  return record.total !== undefined && record.offset === record.total;
}

export function recordedParts(record: SessionRecord): number {
  return record.chunks * PART_CHUNK + record.etags.length;
}
