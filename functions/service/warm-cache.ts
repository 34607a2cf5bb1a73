import type { SessionRecord } from "../bits/session.ts";
import { parseStagedKey, type Segment } from "./staging.ts";

const MAX_RECORDS = 1024;

/**
 * What a warm instance (a Lambda container, the local server) remembers between requests, to
 * skip reads: the session record it last wrote or read, and the bytes it staged. Nothing here is
 * trusted for correctness. A stale record only makes the conditional write fail, which returns
 * the current record to re-decide on; staged bytes are kept only as written to S3 under a key
 * that names their range, and the same range of a file is always the same bytes.
 */
export class WarmCache {
  private readonly records = new Map<string, SessionRecord>();
  private readonly staged = new Map<string, Uint8Array>();
  private stagedBytes = 0;

  /** @param maxStagedBytes bound on the staged bytes kept, across all sessions. */
  constructor(private readonly maxStagedBytes: number) {}

  record(id: string): SessionRecord | undefined {
    return this.records.get(id);
  }

  rememberRecord(record: SessionRecord | undefined, id = record?.id): void {
    if (id === undefined) return;
    this.records.delete(id);
    if (record === undefined) return;
    this.records.set(id, record);
    if (this.records.size > MAX_RECORDS) this.records.delete(this.oldest(this.records));
  }

  /**
   * Keeps a copy of staged bytes. A copy, not the view: `bytes` is usually a slice of a whole
   * request body, and keeping the view would keep the whole body alive while counting only the
   * slice (a client sending 1 MiB fragments that each add one byte would then hold 1 MiB per
   * byte counted). The bound counts exactly the memory held.
   */
  rememberStaged(key: string, bytes: Uint8Array): void {
    if (bytes.length > this.maxStagedBytes) return;
    this.forgetStaged([key]);
    // `new Uint8Array(view)` copies; a Buffer's `slice` would not.
    this.staged.set(key, new Uint8Array(bytes));
    this.stagedBytes += bytes.length;
    while (this.stagedBytes > this.maxStagedBytes) this.forgetStaged([this.oldest(this.staged)]);
  }

  /** Bytes held now; never above the bound given at construction. */
  get heldBytes(): number {
    return this.stagedBytes;
  }

  stagedBytesOf(key: string): Uint8Array | undefined {
    return this.staged.get(key);
  }

  /** The staged segments kept for one session's prefix. */
  stagedSegments(prefix: string): Segment[] {
    const segments: Segment[] = [];
    for (const [key, bytes] of this.staged) {
      if (!key.startsWith(prefix)) continue;
      const segment = parseStagedKey(prefix, { key, size: bytes.length });
      if (segment !== undefined) segments.push(segment);
    }
    return segments;
  }

  forgetStaged(keys: readonly string[]): void {
    for (const key of keys) {
      const bytes = this.staged.get(key);
      if (bytes === undefined) continue;
      this.staged.delete(key);
      this.stagedBytes -= bytes.length;
    }
  }

  /** Drops everything kept for a session that has ended. */
  forgetSession(id: string, prefix: string): void {
    this.records.delete(id);
    this.forgetStaged([...this.staged.keys()].filter((key) => key.startsWith(prefix)));
  }

  private oldest<V>(map: Map<string, V>): string {
    return map.keys().next().value as string;
  }
}
