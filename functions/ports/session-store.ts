import type { SessionRecord } from "../bits/session.ts";

/** What a table scan finds: session records and sealed part chunks. */
export type StoredItem =
  | { readonly kind: "session"; readonly record: SessionRecord }
  | { readonly kind: "chunk"; readonly sessionId: string; readonly index: number };

export type ReplaceResult =
  | { readonly ok: true }
  /** The record was not at the expected version; `current` is what is there now. */
  | { readonly ok: false; readonly current: SessionRecord | undefined };

/**
 * Session state. Every change is conditional on the version the caller read, so concurrent
 * handlers of one session (the ALB's retry racing the original) cannot both win.
 */
export interface SessionStore {
  get(id: string): Promise<SessionRecord | undefined>;
  /** Creates the record; false when the ID is already taken. */
  create(record: SessionRecord): Promise<boolean>;
  /** Replaces the record if it is still at `expectedVersion`. */
  replace(record: SessionRecord, expectedVersion: number): Promise<ReplaceResult>;
  /** Writes sealed chunk `index` of part ETags; idempotent. */
  putPartChunk(id: string, index: number, etags: readonly string[]): Promise<void>;
  /** Reads sealed chunks 0..count-1, in order; throws if one is missing. */
  getPartChunks(id: string, count: number): Promise<string[][]>;
  /** Deletes chunks 0..count-1 (missing ones are fine). */
  deletePartChunks(id: string, count: number): Promise<void>;
  /** Everything stored, for the cleanup sweep; order unspecified. */
  scan(): AsyncIterable<StoredItem>;
}
