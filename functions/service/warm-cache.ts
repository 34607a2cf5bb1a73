import { LRUCache } from "lru-cache";
import { crc32c } from "../bits/crc32c.ts";
import type { SessionRecord } from "../bits/session.ts";
import type { InstanceCache } from "./instance-cache.ts";
import { parseStagedKey, type Segment } from "./staging.ts";

/** Session records kept; each is small (the part ETags beyond a chunk live in DynamoDB). */
const MAX_RECORDS = 1024;

/** Staged bytes as kept: a private copy and the CRC32C they had when staged. */
interface StagedEntry {
  readonly bytes: Uint8Array;
  readonly crc32c: number;
}

/**
 * InstanceCache in this process's memory: least recently used entries go first. Staged bytes
 * are bounded by the bytes they hold, counted exactly (lru-cache's `maxSize` with each entry's
 * length); an entry larger than the whole bound is not kept.
 */
export class WarmCache implements InstanceCache {
  private readonly records = new LRUCache<string, SessionRecord>({ max: MAX_RECORDS });
  private readonly staged: LRUCache<string, StagedEntry>;

  /** @param maxStagedBytes bound on the staged bytes kept, across all sessions; at least 1. */
  constructor(maxStagedBytes: number) {
    if (!Number.isSafeInteger(maxStagedBytes) || maxStagedBytes < 1) {
      // No cache at all is how a cache is turned off (BITS_WARM_CACHE_SIZE=0).
      throw new RangeError(`a warm cache needs a bound of at least 1 byte: ${maxStagedBytes}`);
    }
    this.staged = new LRUCache<string, StagedEntry>({
      maxSize: maxStagedBytes,
      sizeCalculation: (entry) => entry.bytes.length,
    });
  }

  record(id: string): SessionRecord | undefined {
    return this.records.get(id);
  }

  rememberRecord(record: SessionRecord | undefined, id = record?.id): void {
    if (id === undefined) return;
    if (record === undefined) this.records.delete(id);
    else this.records.set(id, record);
  }

  /**
   * Keeps a copy, not the view: `bytes` is usually a slice of a whole request body, and keeping
   * the view would keep the whole body alive while counting only the slice (a client sending
   * 1 MiB fragments that each add one byte would then hold 1 MiB per byte counted). The bound
   * counts exactly the memory held. Empty bytes are not kept: they hold nothing to skip a read
   * for, and lru-cache counts no entry as zero bytes.
   */
  rememberStaged(key: string, bytes: Uint8Array, crc = crc32c(bytes)): void {
    if (bytes.length === 0) return;
    if (bytes.length > this.staged.maxSize) {
      // Bytes staged again under a key always supersede what was kept under it.
      this.staged.delete(key);
      return;
    }
    // `new Uint8Array(view)` copies; a Buffer's `slice` would not.
    this.staged.set(key, { bytes: new Uint8Array(bytes), crc32c: crc >>> 0 });
  }

  get heldBytes(): number {
    return this.staged.calculatedSize;
  }

  /**
   * The check is one CRC32C pass over bytes about to be uploaded in a part anyway, a fraction
   * of what reading them back from S3 would cost (docs/checksums.md, CPU cost).
   */
  stagedBytesOf(key: string): Uint8Array | undefined {
    const entry = this.staged.get(key);
    if (entry === undefined) return undefined;
    if (crc32c(entry.bytes) !== entry.crc32c) {
      this.staged.delete(key);
      return undefined;
    }
    return entry.bytes;
  }

  stagedSegments(prefix: string): Segment[] {
    const segments: Segment[] = [];
    // Iterating neither refreshes nor evicts entries.
    for (const [key, entry] of this.staged.entries()) {
      if (!key.startsWith(prefix)) continue;
      const segment = parseStagedKey(prefix, { key, size: entry.bytes.length });
      if (segment !== undefined) segments.push(segment);
    }
    return segments;
  }

  forgetStaged(keys: readonly string[]): void {
    for (const key of keys) this.staged.delete(key);
  }

  forgetSession(id: string, prefix: string): void {
    this.records.delete(id);
    this.forgetStaged([...this.staged.keys()].filter((key) => key.startsWith(prefix)));
  }
}
