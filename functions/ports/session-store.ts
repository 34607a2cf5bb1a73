import type { SessionRecord } from "../bits/session.ts";

/** What a table scan finds: session records and sealed part chunks. */
export type StoredItem =
  | { readonly kind: "session"; readonly record: SessionRecord }
  | { readonly kind: "chunk"; readonly sessionId: string; readonly index: number };

/** One page of a table scan (`scanPage`). */
export interface ScanPage {
  readonly items: StoredItem[];
  /** Where the next page starts; undefined when this page is the last. */
  readonly next?: string | undefined;
}

export type ReplaceResult =
  | { readonly ok: true }
  /** The record was not at the expected version; `current` is what is there now. */
  | { readonly ok: false; readonly current: SessionRecord | undefined };

/** How many sessions may be open at once: in one slot (a principal) and in all. */
export interface SessionCaps {
  readonly perSlot: number;
  readonly total: number;
}

export type CreateResult =
  | "created"
  /** The session ID is already taken. */
  | "taken"
  /** The slot already holds `perSlot` open sessions. */
  | "slot-full"
  /** `total` sessions are open. */
  | "server-full";

export type ClaimResult = { readonly ok: true } | { readonly ok: false; readonly owner: string };

/**
 * Session state. Every change is conditional on the version the caller read, so concurrent
 * handlers of one session (the ALB's retry racing the original) cannot both win.
 *
 * Open sessions are counted per slot and in all (docs/security.md, "Caps"). A session enters
 * the count atomically with its creation and leaves it exactly once: atomically with the write
 * that ends it (`replace` with `release`), or, if DynamoDB's TTL removed it while still open,
 * through `releaseRemoved`, which is idempotent.
 *
 * Vendor errors never cross this interface: a failing store throws StorageError
 * (storage-error.ts).
 */
export interface SessionStore {
  get(id: string): Promise<SessionRecord | undefined>;
  /** Creates the record and counts it as open, unless a cap is reached or the ID is taken. */
  create(record: SessionRecord, caps: SessionCaps): Promise<CreateResult>;
  /**
   * Replaces the record if it is still at `expectedVersion`. With `release`, the same atomic
   * write stops counting the session as open (it is being ended).
   */
  replace(
    record: SessionRecord,
    expectedVersion: number,
    options?: { readonly release?: boolean },
  ): Promise<ReplaceResult>;
  /** Stops counting a session that was removed while open; repeated calls change nothing. */
  releaseRemoved(record: SessionRecord): Promise<void>;
  /** Open sessions counted in a slot, or in all. */
  openSessions(slot?: string): Promise<number>;
  /**
   * Claims the right to write `key` until `expiresAt` (epoch seconds), for `owner`. Granted when
   * nobody holds it, `owner` already does, or the holder's claim has expired (`now`).
   */
  claimKey(key: string, owner: string, expiresAt: number, now: number): Promise<ClaimResult>;
  /** Gives a claim back; a claim held by someone else is left alone. */
  releaseKey(key: string, owner: string): Promise<void>;
  /** Writes sealed chunk `index` of part ETags; idempotent. */
  putPartChunk(id: string, index: number, etags: readonly string[]): Promise<void>;
  /** Reads sealed chunks 0..count-1, in order; throws if one is missing. */
  getPartChunks(id: string, count: number): Promise<string[][]>;
  /** Deletes chunks 0..count-1 (missing ones are fine). */
  deletePartChunks(id: string, count: number): Promise<void>;
  /** Deletes the chunks at these indices (missing ones are fine): orphans the sweep found. */
  deletePartChunksAt(id: string, indices: readonly number[]): Promise<void>;
  /**
   * One page of what is stored, for the cleanup sweep (docs/cleanup.md): session records and
   * sealed chunks, in an unspecified but stable order. At most `max` entries of the table are
   * read (a page may hold fewer items, even none, and still have a `next`); `after` is the
   * `next` of an earlier page, possibly from another process.
   */
  scanPage(options?: { after?: string | undefined; max?: number | undefined }): Promise<ScanPage>;
  /** Where an unfinished sweep stopped (an opaque string it saved); undefined when none. */
  sweepPosition(): Promise<string | undefined>;
  /** Saves where the sweep stopped; undefined clears it (a pass was completed). */
  saveSweepPosition(position: string | undefined): Promise<void>;
}
