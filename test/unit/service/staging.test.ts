import { describe, expect, it } from "vitest";
import { chainSegments, type Segment } from "../../../functions/service/staging.ts";

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
