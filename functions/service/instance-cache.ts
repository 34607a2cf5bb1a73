import type { SessionRecord } from "../bits/session.ts";
import type { Segment } from "./staging.ts";

/**
 * What one warm instance (a Lambda container, the local server) keeps between requests to skip
 * reads: the session records it last wrote or read, and copies of the bytes it staged. It is
 * only ever a shortcut, never trusted for correctness: a stale record makes the conditional
 * write fail, which returns the current record to re-decide on; staged bytes are checked
 * against their CRC32C before use, and anything not (or no longer) held is read from the
 * stores. So an instance without one (`BITS_WARM_CACHE_SIZE=0`) behaves the same, only slower.
 *
 * In-process memory, not an outside system: it lives with the service rather than among the
 * ports, and its one implementation is WarmCache.
 */
export interface InstanceCache {
  /** The session record last remembered for `id`. */
  record(id: string): SessionRecord | undefined;
  /**
   * Remembers the record as it is now stored; `undefined` (a session gone, or a write whose
   * outcome is unknown) forgets what was remembered for `id`.
   */
  rememberRecord(record: SessionRecord | undefined, id?: string): void;
  /**
   * Keeps a copy of bytes just staged under `key` (a key naming their range), with their CRC32C
   * when the caller already computed it (otherwise it is computed here).
   */
  rememberStaged(key: string, bytes: Uint8Array, crc32c?: number): void;
  /**
   * The staged bytes kept under `key`, checked against their CRC32C first; undefined when not
   * kept or when the check fails (the entry is then dropped, and the caller reads the store).
   * The answer is the cache's own copy: read it, do not change it.
   */
  stagedBytesOf(key: string): Uint8Array | undefined;
  /** The staged segments kept for one session's staging prefix. */
  stagedSegments(prefix: string): Segment[];
  /** Forgets staged bytes, e.g. once they are held in an uploaded part. */
  forgetStaged(keys: readonly string[]): void;
  /** Drops everything kept for a session that has ended: its record and all its staged bytes. */
  forgetSession(id: string, prefix: string): void;
  /** Bytes of staged objects held now; never above the bound the cache was made with. */
  readonly heldBytes: number;
}
