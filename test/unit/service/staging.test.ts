import { describe, expect, it } from "vitest";
import {
  chainSegments,
  longestChain,
  parseStagedKey,
  type Segment,
  stagedKey,
} from "../../../functions/service/staging.ts";

const seg = (start: number, end: number): Segment => ({ key: `${start}-${end}`, start, end });
const keys = (chain: Segment[] | undefined) => chain?.map((segment) => segment.key);

describe("chainSegments: any staged segments that exactly cover a part's head", () => {
  it("follows a plain chain", () => {
    expect(keys(chainSegments([seg(0, 5), seg(5, 10)], 0, 10))).toEqual(["0-5", "5-10"]);
  });

  it("finds a chain past a longer segment that leads nowhere (left by a racing writer)", () => {
    const segments = [seg(0, 10), seg(0, 5), seg(5, 10), seg(5, 12)];
    expect(keys(chainSegments(segments, 0, 12))).toEqual(["0-5", "5-12"]);
  });

  it("prefers the fewest segments", () => {
    const segments = [seg(0, 2), seg(2, 4), seg(4, 6), seg(0, 4)];
    expect(keys(chainSegments(segments, 0, 6))).toEqual(["0-4", "4-6"]);
  });

  it("never uses a segment that runs past the end, and reports a hole as undefined", () => {
    expect(chainSegments([seg(0, 5), seg(5, 11)], 0, 10)).toBeUndefined();
    expect(chainSegments([seg(0, 5), seg(6, 10)], 0, 10)).toBeUndefined();
  });

  it("an empty range needs no segment", () => {
    expect(chainSegments([], 7, 7)).toEqual([]);
  });
});

describe("longestChain: the tail a listing shows (docs/durability.md)", () => {
  it("follows the segments from the offset to the furthest end within the limit", () => {
    const segments = [seg(0, 5), seg(5, 10), seg(10, 12), seg(12, 20)];
    expect(keys(longestChain(segments, 5, 15))).toEqual(["5-10", "10-12"]);
  });

  it("stops at a hole, and is empty when nothing starts at the offset", () => {
    expect(keys(longestChain([seg(0, 5), seg(6, 10)], 0, 10))).toEqual(["0-5"]);
    expect(longestChain([seg(1, 5)], 0, 10)).toEqual([]);
  });

  it("takes the furthest end however resends overlap, with the fewest segments", () => {
    const segments = [seg(0, 2), seg(2, 4), seg(0, 3), seg(3, 6), seg(4, 5)];
    expect(keys(longestChain(segments, 0, 10))).toEqual(["0-3", "3-6"]);
  });
});

describe("stagedKey: a staged object names its range and CRC32C", () => {
  it("parses back, with and without the CRC32C", () => {
    const withCrc = stagedKey("p/", 5, 10, 0xdeadbeef);
    expect(withCrc).toBe("p/0000000000000005-0000000000000010-deadbeef");
    expect(parseStagedKey("p/", { key: withCrc, size: 5 })).toEqual({
      key: withCrc,
      start: 5,
      end: 10,
      crc32c: 0xdeadbeef,
    });
    const plain = stagedKey("p/", 5, 10);
    expect(parseStagedKey("p/", { key: plain, size: 5 })?.crc32c).toBeUndefined();
    expect(parseStagedKey("p/", { key: withCrc, size: 4 })).toBeUndefined();
  });
});
