import { describe, expect, it } from "vitest";
import { MiB } from "../../../functions/bits/constants.ts";
import { fragmentAllowance, mayWriteFragment } from "../../../functions/bits/session.ts";

/** Fragments written before the rule refuses the next, when each brings `size` new bytes. */
function fragmentsBeforeRefusal(size: number, total: number, perMiB = 512): number {
  let fragments = 0;
  let held = 0;
  while (held < total) {
    const after = Math.min(total, held + size);
    if (!mayWriteFragment(fragments, after, perMiB)) return fragments;
    fragments++;
    held = after;
  }
  return Number.POSITIVE_INFINITY;
}

describe("mayWriteFragment: the allowance follows the bytes held (docs/security.md, Caps)", () => {
  it("one-byte slivers are refused after 65, whatever total the client declares", () => {
    expect(fragmentsBeforeRefusal(1, 1024 * MiB)).toBe(65);
    expect(fragmentsBeforeRefusal(1, 5 * 1024 ** 4)).toBe(65);
  });

  it("fragments just below the floor (2 KiB at 512 per MiB) are stopped; at it they are not", () => {
    expect(fragmentsBeforeRefusal(1024, 64 * MiB)).toBeLessThan(200);
    expect(fragmentsBeforeRefusal(2048, 64 * MiB)).toBe(Number.POSITIVE_INFINITY);
  });

  it("a Windows client, 5 KB fragments growing to 1 MiB, is never stopped", () => {
    let fragments = 0;
    let held = 0;
    let size = 5 * 1024;
    const total = 200 * MiB;
    while (held < total) {
      const after = Math.min(total, held + size);
      expect(mayWriteFragment(fragments, after, 512)).toBe(true);
      fragments++;
      held = after;
      size = Math.min(MiB, size * 2);
    }
  });

  it("is never more generous than the allowance of the declared total", () => {
    for (const total of [0, 1, 1000, MiB, 10 * MiB + 3]) {
      const allowance = fragmentAllowance(total, 512);
      expect(mayWriteFragment(allowance, total, 512)).toBe(false);
      expect(mayWriteFragment(allowance - 1, total, 512)).toBe(true);
    }
  });

  it("the operator's per-MiB figure sets the floor", () => {
    expect(mayWriteFragment(64, 1, 1)).toBe(true);
    expect(mayWriteFragment(65, 1, 1)).toBe(false);
    expect(mayWriteFragment(65, MiB + 1, 1)).toBe(true);
  });
});
