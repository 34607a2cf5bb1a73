import { describe, expect, it } from "vitest";
import { crc32c } from "../../../functions/bits/crc32c.ts";
import type { SessionRecord } from "../../../functions/bits/session.ts";
import { loadConfig } from "../../../functions/config.ts";
import { stagedKey, stagingPrefixFor } from "../../../functions/service/staging.ts";
import { WarmCache } from "../../../functions/service/warm-cache.ts";
import { buildContext } from "../../../functions/wiring.ts";

const A = "{11111111-1111-1111-1111-111111111111}";
const B = "{22222222-2222-2222-2222-222222222222}";
const prefixA = stagingPrefixFor("staging/", A);
const prefixB = stagingPrefixFor("staging/", B);

/** Only the fields the cache looks at; it never reads a record's contents. */
const record = (id: string, version = 1) => ({ id, version }) as unknown as SessionRecord;

/** `length` bytes of a pattern starting at `seed`, so every range has its own bytes. */
const bytesOf = (length: number, seed = 0) =>
  Uint8Array.from({ length }, (_, i) => (seed + i * 7) & 0xff);

/** Stages [start, end) of session A's file. */
function stage(cache: WarmCache, start: number, end: number, prefix = prefixA) {
  const key = stagedKey(prefix, start, end);
  const bytes = bytesOf(end - start, start);
  cache.rememberStaged(key, bytes, crc32c(bytes));
  return { key, bytes };
}

describe("WarmCache: staged bytes within a byte bound", () => {
  it("holds up to the bound exactly, and evicts the least recently used beyond it", () => {
    const cache = new WarmCache(30);
    const first = stage(cache, 0, 10);
    const second = stage(cache, 10, 20);
    const third = stage(cache, 20, 30);
    expect(cache.heldBytes).toBe(30);
    // Reading the first makes the second the least recently used.
    expect(cache.stagedBytesOf(first.key)).toEqual(first.bytes);
    const fourth = stage(cache, 30, 31);
    expect(cache.heldBytes).toBe(21);
    expect(cache.stagedBytesOf(second.key)).toBeUndefined();
    expect(cache.stagedBytesOf(first.key)).toEqual(first.bytes);
    expect(cache.stagedBytesOf(third.key)).toEqual(third.bytes);
    expect(cache.stagedBytesOf(fourth.key)).toEqual(fourth.bytes);
  });

  it("evicts as many of the oldest as a large entry needs, and no more", () => {
    const cache = new WarmCache(30);
    const kept = [stage(cache, 0, 10), stage(cache, 10, 20), stage(cache, 20, 30)];
    const big = stage(cache, 30, 55);
    expect(cache.heldBytes).toBe(25);
    expect(cache.stagedBytesOf(kept[0]?.key ?? "")).toBeUndefined();
    expect(cache.stagedBytesOf(kept[1]?.key ?? "")).toBeUndefined();
    expect(cache.stagedBytesOf(kept[2]?.key ?? "")).toBeUndefined();
    expect(cache.stagedBytesOf(big.key)).toEqual(big.bytes);
  });

  it("keeps an entry exactly the size of the bound, but none larger, and evicts nothing for it", () => {
    const cache = new WarmCache(16);
    const small = stage(cache, 0, 4);
    const tooBig = stage(cache, 4, 21);
    expect(cache.stagedBytesOf(tooBig.key)).toBeUndefined();
    expect(cache.stagedBytesOf(small.key)).toEqual(small.bytes);
    expect(cache.heldBytes).toBe(4);
    const exact = stage(cache, 4, 20);
    expect(cache.heldBytes).toBe(16);
    expect(cache.stagedBytesOf(exact.key)).toEqual(exact.bytes);
    expect(cache.stagedBytesOf(small.key)).toBeUndefined();
  });

  it("counts a key staged again once, at its new size", () => {
    const cache = new WarmCache(100);
    stage(cache, 0, 10);
    stage(cache, 0, 10);
    expect(cache.heldBytes).toBe(10);
  });

  it("keeps nothing for empty bytes", () => {
    const cache = new WarmCache(100);
    cache.rememberStaged(stagedKey(prefixA, 5, 5), new Uint8Array(0));
    expect(cache.heldBytes).toBe(0);
    expect(cache.stagedSegments(prefixA)).toEqual([]);
  });

  it("is not made without room for a byte (a cache is turned off by not making one)", () => {
    expect(() => new WarmCache(0)).toThrow(RangeError);
  });
});

describe("WarmCache: copies, checked before use", () => {
  it("keeps a copy: changing the caller's buffer afterwards changes nothing kept", () => {
    const cache = new WarmCache(100);
    const body = bytesOf(20);
    const slice = body.subarray(5, 15);
    const expected = Uint8Array.from(slice);
    const key = stagedKey(prefixA, 0, 10);
    cache.rememberStaged(key, slice, crc32c(slice));
    body.fill(0xee);
    expect(cache.stagedBytesOf(key)).toEqual(expected);
    // Only the slice is held, not the body it is a view of.
    expect(cache.stagedBytesOf(key)?.buffer.byteLength).toBe(10);
  });

  it("computes the CRC32C itself when the caller has none", () => {
    const cache = new WarmCache(100);
    const key = stagedKey(prefixA, 0, 10);
    cache.rememberStaged(key, bytesOf(10));
    expect(cache.stagedBytesOf(key)).toEqual(bytesOf(10));
  });

  it("drops bytes that no longer match their CRC32C, and answers none for them", () => {
    const cache = new WarmCache(100);
    const damaged = stage(cache, 0, 10);
    const intact = stage(cache, 10, 20);
    // The kept copy changes in memory (the answer is that copy, not another).
    const held = cache.stagedBytesOf(damaged.key) as Uint8Array;
    held[3] = (held[3] as number) ^ 0x01;
    expect(cache.stagedBytesOf(damaged.key)).toBeUndefined();
    expect(cache.heldBytes).toBe(10);
    expect(cache.stagedSegments(prefixA).map((segment) => segment.key)).toEqual([intact.key]);
    expect(cache.stagedBytesOf(intact.key)).toEqual(intact.bytes);
  });

  it("drops bytes remembered with a CRC32C that is not theirs", () => {
    const cache = new WarmCache(100);
    const key = stagedKey(prefixA, 0, 10);
    const bytes = bytesOf(10);
    cache.rememberStaged(key, bytes, crc32c(bytes) ^ 1);
    expect(cache.stagedBytesOf(key)).toBeUndefined();
    expect(cache.heldBytes).toBe(0);
  });
});

describe("WarmCache: per session", () => {
  it("lists the staged segments under one session's prefix only", () => {
    const cache = new WarmCache(1000);
    stage(cache, 0, 10);
    stage(cache, 10, 25);
    stage(cache, 0, 5, prefixB);
    const segments = cache.stagedSegments(prefixA).sort((x, y) => x.start - y.start);
    expect(segments).toEqual([
      { key: stagedKey(prefixA, 0, 10), start: 0, end: 10 },
      { key: stagedKey(prefixA, 10, 25), start: 10, end: 25 },
    ]);
    expect(cache.stagedSegments(prefixB)).toEqual([
      { key: stagedKey(prefixB, 0, 5), start: 0, end: 5 },
    ]);
  });

  it("forgets the staged bytes named, and only those", () => {
    const cache = new WarmCache(1000);
    const gone = stage(cache, 0, 10);
    const kept = stage(cache, 10, 20);
    cache.forgetStaged([gone.key, stagedKey(prefixA, 99, 100)]);
    expect(cache.stagedBytesOf(gone.key)).toBeUndefined();
    expect(cache.stagedBytesOf(kept.key)).toEqual(kept.bytes);
    expect(cache.heldBytes).toBe(10);
  });

  it("remembers, replaces and forgets records per session", () => {
    const cache = new WarmCache(1000);
    cache.rememberRecord(record(A, 1));
    cache.rememberRecord(record(B, 1));
    cache.rememberRecord(record(A, 2));
    expect(cache.record(A)?.version).toBe(2);
    cache.rememberRecord(undefined, A);
    expect(cache.record(A)).toBeUndefined();
    expect(cache.record(B)?.version).toBe(1);
    // Neither a record nor an ID: nothing to do.
    cache.rememberRecord(undefined);
    expect(cache.record(B)?.version).toBe(1);
  });

  it("keeps at most 1024 records, forgetting the least recently used", () => {
    const cache = new WarmCache(1000);
    const id = (n: number) => `{${String(n).padStart(8, "0")}-0000-0000-0000-000000000000}`;
    for (let n = 0; n < 1024; n++) cache.rememberRecord(record(id(n)));
    cache.record(id(0));
    cache.rememberRecord(record(id(1024)));
    expect(cache.record(id(0))).toBeDefined();
    expect(cache.record(id(1))).toBeUndefined();
    expect(cache.record(id(1024))).toBeDefined();
  });

  it("forgets an ended session whole: its record and all its staged bytes, not another's", () => {
    const cache = new WarmCache(1000);
    cache.rememberRecord(record(A));
    cache.rememberRecord(record(B));
    stage(cache, 0, 10);
    stage(cache, 10, 20);
    const other = stage(cache, 0, 7, prefixB);
    cache.forgetSession(A, prefixA);
    expect(cache.record(A)).toBeUndefined();
    expect(cache.stagedSegments(prefixA)).toEqual([]);
    expect(cache.heldBytes).toBe(7);
    expect(cache.record(B)).toBeDefined();
    expect(cache.stagedBytesOf(other.key)).toEqual(other.bytes);
  });
});

describe("BITS_WARM_CACHE_SIZE", () => {
  const contextFor = (size?: string) => {
    const config = loadConfig({ BITS_BUCKET: "b", BITS_TABLE: "t", BITS_WARM_CACHE_SIZE: size });
    return buildContext(config).context;
  };

  it("0 turns the cache off: the service gets none", () => {
    expect(contextFor("0").cache).toBeUndefined();
  });

  it("gives a warm instance a cache of that many bytes, 64 MiB when unset", () => {
    expect(contextFor("1KiB").cache).toBeInstanceOf(WarmCache);
    expect(contextFor().cache).toBeInstanceOf(WarmCache);
  });
});
