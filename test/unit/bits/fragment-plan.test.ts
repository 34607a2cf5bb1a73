import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  MiB,
  S3_MAX_OBJECT_SIZE,
  S3_MAX_PART_SIZE,
  S3_MAX_PARTS,
  S3_MIN_PART_SIZE,
} from "../../../functions/bits/constants.ts";
import {
  type FragmentDecision,
  type FragmentLimits,
  followingPartEnd,
  partSizeFor,
  planFragment,
  type Write,
} from "../../../functions/bits/fragment-plan.ts";
import type { ContentRange } from "../../../functions/bits/range.ts";
import { fileOf } from "../../support/windows-client.ts";
import { bitsErrorFrom, thrownKind } from "./throws.ts";

/** What the planner reads: the session record's byte bookkeeping and the recorded part count. */
interface Model {
  offset: number;
  total: number | undefined;
  bytesInParts: number;
  openPartEnd: number | undefined;
  parts: number;
}

const FRESH: Readonly<Model> = {
  offset: 0,
  total: undefined,
  bytesInParts: 0,
  openPartEnd: undefined,
  parts: 0,
};

type PartWrite = Extract<Write, { kind: "part" }>;

const KiB = 1024;
const GiB = 1024 * MiB;

const LIMITS: FragmentLimits = {
  maxFragmentBytes: 16 * MiB,
  maxUploadBytes: 1024 * GiB,
  partSize: 8 * MiB,
};

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.compare(a, b) === 0;
}

const rangeOf = (first: number, last: number, total: number): ContentRange => ({
  first,
  last,
  total,
});

/** Plans the fragment [first, end) of `file`, the body cut from the file itself. */
function plan(record: Model, file: Uint8Array, first: number, end: number, limits = LIMITS) {
  return planFragment(
    record,
    rangeOf(first, end - 1, file.length),
    file.subarray(first, end),
    limits,
  );
}

function accepted(decision: FragmentDecision) {
  if (decision.kind !== "accept") throw new Error(`expected accept, got ${decision.kind}`);
  return decision;
}

/** A write without its bytes, with the end it reaches: what a storage layer is told to do. */
function outline(write: Write) {
  switch (write.kind) {
    case "stage":
      return { kind: write.kind, start: write.start, end: write.end };
    case "part":
      return {
        kind: write.kind,
        partNumber: write.partNumber,
        partStart: write.partStart,
        from: write.from,
        end: write.from + write.bytes.length,
      };
    case "piece":
      return {
        kind: write.kind,
        partNumber: write.partNumber,
        pieceNumber: write.pieceNumber,
        pieceStart: write.pieceStart,
        from: write.from,
        end: write.from + write.bytes.length,
      };
    case "seal":
      return { ...write };
  }
}

/** The record the service stores after an accepted decision: parts grow by its part writes. */
function recordAfter(before: Model, decision: FragmentDecision): Model {
  const accept = accepted(decision);
  return {
    offset: accept.offset,
    total: accept.total,
    bytesInParts: accept.bytesInParts,
    openPartEnd: accept.openPartEnd,
    parts: before.parts + accept.writes.filter((write) => write.kind === "part").length,
  };
}

describe("partSizeFor (S3 multipart: 10,000 parts of 5 MiB-5 GiB)", () => {
  it("uses the preferred size when the file fits in 10,000 parts of it", () => {
    expect(partSizeFor(0, 8 * MiB)).toBe(8 * MiB);
    expect(partSizeFor(1, 8 * MiB)).toBe(8 * MiB);
    expect(partSizeFor(8 * MiB * S3_MAX_PARTS, 8 * MiB)).toBe(8 * MiB);
  });

  it("never goes below S3's 5 MiB minimum part size", () => {
    expect(partSizeFor(0, 0)).toBe(S3_MIN_PART_SIZE);
    expect(partSizeFor(100, 1024)).toBe(S3_MIN_PART_SIZE);
  });

  it("raises the size to whole MiB once the file would need more than 10,000 parts", () => {
    expect(partSizeFor(8 * MiB * S3_MAX_PARTS + 1, 8 * MiB)).toBe(9 * MiB);
  });

  it("gives a 5 TiB object 525 MiB parts", () => {
    expect(partSizeFor(S3_MAX_OBJECT_SIZE, 8 * MiB)).toBe(525 * MiB);
  });

  it("property: every size up to 5 TiB fits in 10,000 parts of 5 MiB to 5 GiB", () => {
    fc.assert(
      fc.property(
        fc.bigInt({ min: 0n, max: BigInt(S3_MAX_OBJECT_SIZE) }).map(Number),
        fc.integer({ min: 0, max: 64 }).map((mib) => mib * MiB),
        (total, preferred) => {
          const size = partSizeFor(total, preferred);
          expect(size).toBeGreaterThanOrEqual(S3_MIN_PART_SIZE);
          expect(size).toBeGreaterThanOrEqual(preferred);
          expect(size).toBeLessThanOrEqual(S3_MAX_PART_SIZE);
          expect(Math.ceil(total / size)).toBeLessThanOrEqual(S3_MAX_PARTS);
          expect(size % MiB).toBe(0);
          // Raised no further than needed: one MiB less would not fit.
          if (size > Math.max(preferred, S3_MIN_PART_SIZE)) {
            expect(Math.ceil(total / (size - MiB))).toBeGreaterThan(S3_MAX_PARTS);
          }
        },
      ),
    );
  });
});

describe("followingPartEnd: the next part ends at a fragment end of a client keeping its length", () => {
  const total = 1024 * MiB;

  it("small fragments: the part ends j fragments after the completing one, at least the preferred size", () => {
    // Part ended at 5 MiB, the 2 MiB fragment ended at 6 MiB: 1 MiB is staged; 5 MiB parts
    // need 4 MiB more, two fragments: the next part is [5, 10) MiB.
    expect(
      followingPartEnd({
        partStart: 5 * MiB,
        fragmentEnd: 6 * MiB,
        fragmentLength: 2 * MiB,
        total: total,
        preferredPartSize: 5 * MiB,
      }),
    ).toBe(10 * MiB);
    // 8 MiB preferred: 1 + 4 * 2 = 9 MiB >= 8 MiB.
    expect(
      followingPartEnd({
        partStart: 5 * MiB,
        fragmentEnd: 6 * MiB,
        fragmentLength: 2 * MiB,
        total: total,
        preferredPartSize: 8 * MiB,
      }),
    ).toBe(14 * MiB);
    // 1 MiB fragments, nothing staged, 8 MiB preferred: exactly eight fragments.
    expect(
      followingPartEnd({
        partStart: 8 * MiB,
        fragmentEnd: 8 * MiB,
        fragmentLength: MiB,
        total: total,
        preferredPartSize: 8 * MiB,
      }),
    ).toBe(16 * MiB);
    // 5 KB fragments: whole fragments past the preferred size, never fewer bytes.
    expect(
      followingPartEnd({
        partStart: 0,
        fragmentEnd: 5000,
        fragmentLength: 5000,
        total: total,
        preferredPartSize: 8 * MiB,
      }),
    ).toBe(5000 + 1677 * 5000);
    expect(5000 + 1677 * 5000).toBeGreaterThanOrEqual(8 * MiB);
    expect(5000 + 1676 * 5000).toBeLessThan(8 * MiB);
  });

  it("fragments of 5 MiB or more: a part is one fragment, whatever the preferred size", () => {
    expect(
      followingPartEnd({
        partStart: 40 * MiB,
        fragmentEnd: 40 * MiB,
        fragmentLength: 5 * MiB,
        total: total,
        preferredPartSize: 8 * MiB,
      }),
    ).toBe(45 * MiB);
    expect(
      followingPartEnd({
        partStart: 40 * MiB,
        fragmentEnd: 40 * MiB,
        fragmentLength: 8 * MiB,
        total: total,
        preferredPartSize: 8 * MiB,
      }),
    ).toBe(48 * MiB);
    expect(
      followingPartEnd({
        partStart: 40 * MiB,
        fragmentEnd: 40 * MiB,
        fragmentLength: 13_000_000,
        total: total,
        preferredPartSize: 8 * MiB,
      }),
    ).toBe(40 * MiB + 13_000_000);
    // A staged tail goes with the next fragment: still one fragment more (j = 1).
    expect(
      followingPartEnd({
        partStart: 40 * MiB,
        fragmentEnd: 43 * MiB,
        fragmentLength: 8 * MiB,
        total: total,
        preferredPartSize: 8 * MiB,
      }),
    ).toBe(51 * MiB);
  });

  it("at least one more fragment (j >= 1), even when the staged tail alone is a part's size", () => {
    expect(
      followingPartEnd({
        partStart: 0,
        fragmentEnd: 12 * MiB,
        fragmentLength: 13 * MiB,
        total: total,
        preferredPartSize: 8 * MiB,
      }),
    ).toBe(25 * MiB);
    expect(
      followingPartEnd({
        partStart: 0,
        fragmentEnd: 9 * MiB,
        fragmentLength: 3 * MiB,
        total: total,
        preferredPartSize: 8 * MiB,
      }),
    ).toBe(12 * MiB);
  });

  it("capped at the total: the part that reaches it is the last", () => {
    expect(
      followingPartEnd({
        partStart: 5 * MiB,
        fragmentEnd: 6 * MiB,
        fragmentLength: 2 * MiB,
        total: 7 * MiB,
        preferredPartSize: 5 * MiB,
      }),
    ).toBe(7 * MiB);
    expect(
      followingPartEnd({
        partStart: 40 * MiB,
        fragmentEnd: 40 * MiB,
        fragmentLength: 8 * MiB,
        total: 41 * MiB,
        preferredPartSize: 8 * MiB,
      }),
    ).toBe(41 * MiB);
  });

  it("a big file raises every part to partSizeFor(total): 5 TiB needs 525 MiB parts", () => {
    const huge = S3_MAX_OBJECT_SIZE;
    // 8 MiB fragments: 66 of them (528 MiB) make the first part >= 525 MiB.
    expect(
      followingPartEnd({
        partStart: 0,
        fragmentEnd: 0,
        fragmentLength: 8 * MiB,
        total: huge,
        preferredPartSize: 8 * MiB,
      }),
    ).toBe(528 * MiB);
    // Even 100 MiB fragments are gathered six at a time.
    expect(
      followingPartEnd({
        partStart: 0,
        fragmentEnd: 0,
        fragmentLength: 100 * MiB,
        total: huge,
        preferredPartSize: 8 * MiB,
      }),
    ).toBe(600 * MiB);
  });

  it("property: aligned to the fragment (end + j*f, j >= 1), minimal, large enough, capped, <= 5 GiB", () => {
    const unit = fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true });
    fc.assert(
      fc.property(
        fc.bigInt({ min: 1n, max: BigInt(S3_MAX_OBJECT_SIZE) }).map(Number),
        // The configuration bounds: fragments and preferred parts up to 2 GiB (config.ts).
        fc.oneof(fc.integer({ min: 1, max: 20 * MiB }), fc.integer({ min: 1, max: 2 * GiB })),
        fc.integer({ min: S3_MIN_PART_SIZE, max: 2 * GiB }),
        unit,
        unit,
        (total, length, preferred, stagedAt, endAt) => {
          const f = Math.min(length, total);
          // The completing fragment covered the old part end: its tail past it is shorter than f.
          const staged = Math.floor(stagedAt * f);
          const fragmentEnd = staged + Math.floor(endAt * (total - staged));
          const bytesInParts = fragmentEnd - staged;
          const next = followingPartEnd({
            partStart: bytesInParts,
            fragmentEnd: fragmentEnd,
            fragmentLength: f,
            total: total,
            preferredPartSize: preferred,
          });
          const minimum = partSizeFor(total, S3_MIN_PART_SIZE);
          const target = Math.max(
            minimum,
            f >= S3_MIN_PART_SIZE ? f : partSizeFor(total, preferred),
          );
          expect(next).toBeLessThanOrEqual(total);
          expect(next - bytesInParts).toBeLessThanOrEqual(S3_MAX_PART_SIZE);
          if (fragmentEnd < total) expect(next).toBeGreaterThan(fragmentEnd);
          if (next === total) return;
          const j = (next - fragmentEnd) / f;
          expect(Number.isInteger(j)).toBe(true);
          expect(j).toBeGreaterThanOrEqual(1);
          expect(next - bytesInParts).toBeGreaterThanOrEqual(minimum);
          expect(next - bytesInParts).toBeGreaterThanOrEqual(target);
          // Minimal: one fragment fewer would not reach the target.
          if (j > 1) expect(next - f - bytesInParts).toBeLessThan(target);
          // f >= the part minimum and nothing staged: exactly one fragment.
          if (f >= minimum && staged === 0) expect(next).toBe(fragmentEnd + f);
        },
      ),
      { numRuns: 1000 },
    );
  });
});

describe("planFragment: docs/protocol.md, Fragments and offsets", () => {
  /** 25 bytes: smaller than any part, so the first (and only) part ends at the total. */
  const file = fileOf(25);
  const small = (offset: number): Model => ({
    offset,
    total: 25,
    bytesInParts: 0,
    openPartEnd: 25,
    parts: 0,
  });

  it("the first fragment fixes the total and the first part's end, min(total, partSizeFor)", () => {
    const decision = accepted(plan(FRESH, file, 0, 4));
    expect(decision).toMatchObject({ total: 25, offset: 4, bytesInParts: 0, openPartEnd: 25 });
    const big = fileOf(30 * MiB);
    expect(accepted(plan(FRESH, big, 0, 4)).openPartEnd).toBe(8 * MiB);
    const fives = { ...LIMITS, partSize: 5 * MiB };
    expect(accepted(plan(FRESH, big, 0, 4, fives)).openPartEnd).toBe(5 * MiB);
  });

  it("the first part's end never depends on the first fragment", () => {
    const big = fileOf(30 * MiB);
    for (const end of [1, 5000, 3 * MiB, 8 * MiB - 1]) {
      const decision = accepted(plan(FRESH, big, 0, end));
      expect(decision.openPartEnd).toBe(8 * MiB);
      expect(decision.writes.map(outline)).toEqual([{ kind: "stage", start: 0, end }]);
    }
    // A first fragment past it writes part 1 = [0, 8 MiB) all the same.
    const past = accepted(plan(FRESH, big, 0, 13_000_000));
    expect(past.writes.map(outline)).toEqual([
      { kind: "part", partNumber: 1, partStart: 0, from: 0, end: 8 * MiB },
      { kind: "stage", start: 8 * MiB, end: 13_000_000 },
    ]);
  });

  it("a file needing more than 10,000 preferred parts starts with a raised first part", () => {
    // 100 GiB / 10,000 = 10.24 MiB: 11 MiB parts.
    const total = 100 * GiB;
    const decision = accepted(
      planFragment(FRESH, rangeOf(0, 9, total), new Uint8Array(10), LIMITS),
    );
    expect(decision.openPartEnd).toBe(11 * MiB);
  });

  it("F == E (in order) is staged below the part end and E becomes L+1", () => {
    const decision = accepted(plan(small(0), file, 0, 4));
    expect(decision.offset).toBe(4);
    expect(decision.writes).toEqual([
      { kind: "stage", start: 0, end: 4, bytes: file.subarray(0, 4) },
    ]);
    const next = accepted(plan(small(4), file, 4, 7));
    expect(next).toMatchObject({ offset: 7, bytesInParts: 0, openPartEnd: 25 });
    expect(next.writes).toEqual([{ kind: "stage", start: 4, end: 7, bytes: file.subarray(4, 7) }]);
  });

  it("an overlap (F < E <= L) writes only the new tail", () => {
    const decision = accepted(plan(small(5), file, 2, 9));
    expect(decision.offset).toBe(9);
    expect(decision.writes).toEqual([
      { kind: "stage", start: 5, end: 9, bytes: file.subarray(5, 9) },
    ]);
  });

  it("an overlap whose last byte is E writes that one new byte", () => {
    const decision = accepted(plan(small(5), file, 0, 6));
    expect(decision.writes).toEqual([
      { kind: "stage", start: 5, end: 6, bytes: file.subarray(5, 6) },
    ]);
  });

  it.each([
    [0, 5],
    [3, 8],
    [0, 8],
    [7, 8],
  ])(
    "a fragment wholly below E ([%i, %i), E=8) is held: 200 with E, nothing written",
    (first, end) => {
      expect(plan(small(8), file, first, end)).toEqual({ kind: "held", offset: 8 });
    },
  );

  it("resending the final fragment of a complete file is held at the total", () => {
    const complete = { ...small(25), bytesInParts: 25, parts: 1 };
    expect(plan(complete, file, 20, 25)).toEqual({ kind: "held", offset: 25 });
  });

  it("F > E (gap) is 416 with E, nothing written ([MC-BUP] 3.2.5.2.6)", () => {
    expect(plan(small(8), file, 9, 13)).toEqual({ kind: "gap", offset: 8 });
    expect(plan(FRESH, file, 1, 5)).toEqual({ kind: "gap", offset: 0 });
  });

  it("a zero-byte file (bytes */0) is accepted, fixing total 0, writing nothing", () => {
    const empty = new Uint8Array(0);
    const decision = planFragment(FRESH, rangeOf(0, -1, 0), empty, LIMITS);
    expect(decision).toEqual({
      kind: "accept",
      total: 0,
      offset: 0,
      bytesInParts: 0,
      openPartEnd: 0,
      writes: [],
    });
    expect(planFragment(recordAfter(FRESH, decision), rangeOf(0, -1, 0), empty, LIMITS)).toEqual({
      kind: "held",
      offset: 0,
    });
  });

  it("a total different from the first fragment's is 400 E_INVALIDARG ([MC-BUP] 2.2.1.2)", () => {
    const error = bitsErrorFrom(() =>
      planFragment(small(8), rangeOf(8, 9, 26), file.subarray(8, 10), LIMITS),
    );
    expect(error.kind).toBe("invalidArg");
    expect(error.status).toBe(400);
    expect(error.code).toBe(0x80070057);
  });

  it("a changed total is refused even for a fragment that would be held or a gap", () => {
    expect(
      thrownKind(() => planFragment(small(8), rangeOf(0, 1, 30), file.subarray(0, 2), LIMITS)),
    ).toBe("invalidArg");
    expect(
      thrownKind(() => planFragment(small(8), rangeOf(20, 21, 30), file.subarray(0, 2), LIMITS)),
    ).toBe("invalidArg");
  });

  it("a total above the maximum upload size is 500 BG_E_TOO_LARGE", () => {
    const limits = { ...LIMITS, maxUploadBytes: 24 };
    const error = bitsErrorFrom(() => plan(FRESH, file, 0, 4, limits));
    expect(error.kind).toBe("tooLarge");
    expect(error.status).toBe(500);
    expect(error.code).toBe(0x80200020);
  });

  it("a total of exactly the maximum upload size is accepted", () => {
    expect(plan(FRESH, file, 0, 4, { ...LIMITS, maxUploadBytes: 25 }).kind).toBe("accept");
  });

  it("a body above the per-request maximum is 413 with no BITS error ([MC-BUP] 3.1.5.2.4)", () => {
    const limits = { ...LIMITS, maxFragmentBytes: 4 };
    const error = bitsErrorFrom(() => plan(small(0), file, 0, 5, limits));
    expect(error.kind).toBe("fragmentTooLarge");
    expect(error.status).toBe(413);
    expect(error.code).toBeUndefined();
    expect(plan(small(0), file, 0, 4, limits).kind).toBe("accept");
  });

  it("a file smaller than one part is uploaded as part 1, with its staged head, at its last byte", () => {
    const decision = accepted(plan(small(10), file, 8, 25));
    expect(decision).toMatchObject({ offset: 25, bytesInParts: 25, openPartEnd: 25 });
    expect(decision.writes).toEqual([
      { kind: "part", partNumber: 1, partStart: 0, from: 10, bytes: file.subarray(10, 25) },
    ]);
  });

  describe("on real part sizes (a 40 MiB file, 8 MiB preferred parts)", () => {
    const big = fileOf(40 * MiB);
    const record: Model = {
      offset: 10 * MiB,
      total: 40 * MiB,
      bytesInParts: 8 * MiB,
      openPartEnd: 16 * MiB,
      parts: 1,
    };

    it("new bytes short of openPartEnd are one stage write; the part bounds stay", () => {
      const decision = accepted(plan(record, big, 10 * MiB, 16 * MiB - 1));
      expect(decision).toMatchObject({
        offset: 16 * MiB - 1,
        bytesInParts: 8 * MiB,
        openPartEnd: 16 * MiB,
      });
      expect(decision.writes.map(outline)).toEqual([
        { kind: "stage", start: 10 * MiB, end: 16 * MiB - 1 },
      ]);
    });

    it("reaching openPartEnd uploads part parts+1 = [bytesInParts, openPartEnd): staged head, then the slice", () => {
      const decision = accepted(plan(record, big, 10 * MiB, 16 * MiB));
      expect(decision.writes.map(outline)).toEqual([
        { kind: "part", partNumber: 2, partStart: 8 * MiB, from: 10 * MiB, end: 16 * MiB },
      ]);
      const bytes = (decision.writes[0] as PartWrite).bytes;
      expect(sameBytes(bytes, big.subarray(10 * MiB, 16 * MiB))).toBe(true);
      // No staged tail; 6 MiB fragments (>= 5 MiB): the next part is one more fragment.
      expect(decision).toMatchObject({
        offset: 16 * MiB,
        bytesInParts: 16 * MiB,
        openPartEnd: 22 * MiB,
      });
    });

    it("past openPartEnd: the part, then the rest staged; the next part end is aligned to the fragment", () => {
      const decision = accepted(plan(record, big, 10 * MiB, 17 * MiB));
      expect(decision.writes.map(outline)).toEqual([
        { kind: "part", partNumber: 2, partStart: 8 * MiB, from: 10 * MiB, end: 16 * MiB },
        { kind: "stage", start: 16 * MiB, end: 17 * MiB },
      ]);
      expect(decision.bytesInParts).toBe(16 * MiB);
      expect(decision.openPartEnd).toBe(
        followingPartEnd({
          partStart: 16 * MiB,
          fragmentEnd: 17 * MiB,
          fragmentLength: 7 * MiB,
          total: 40 * MiB,
          preferredPartSize: 8 * MiB,
        }),
      );
      expect(decision.openPartEnd).toBe(24 * MiB);
    });

    it("the next part end uses the whole fragment's length, resent bytes included", () => {
      const decision = accepted(plan(record, big, 9 * MiB, 17 * MiB));
      expect(decision.writes.map(outline)).toEqual([
        { kind: "part", partNumber: 2, partStart: 8 * MiB, from: 10 * MiB, end: 16 * MiB },
        { kind: "stage", start: 16 * MiB, end: 17 * MiB },
      ]);
      expect(decision.openPartEnd).toBe(25 * MiB);
    });

    it("small fragments gather into parts of the preferred size ending at a fragment end", () => {
      const decision = accepted(plan({ ...record, offset: 15 * MiB }, big, 15 * MiB, 17 * MiB));
      // 1 MiB staged + four 2 MiB fragments = 9 MiB >= 8 MiB.
      expect(decision.openPartEnd).toBe(25 * MiB);
    });

    it("the fragment that reaches the total uploads the last part [openPartEnd, total) too", () => {
      const near: Model = {
        ...record,
        offset: 30 * MiB,
        bytesInParts: 24 * MiB,
        openPartEnd: 32 * MiB,
        parts: 2,
      };
      const decision = accepted(plan(near, big, 30 * MiB, 40 * MiB));
      expect(decision.writes.map(outline)).toEqual([
        { kind: "part", partNumber: 3, partStart: 24 * MiB, from: 30 * MiB, end: 32 * MiB },
        { kind: "part", partNumber: 4, partStart: 32 * MiB, from: 32 * MiB, end: 40 * MiB },
      ]);
      expect(decision).toMatchObject({
        offset: 40 * MiB,
        bytesInParts: 40 * MiB,
        openPartEnd: 40 * MiB,
      });
    });

    it("a fragment ending where the last part ends uploads it alone", () => {
      const last: Model = {
        ...record,
        offset: 35 * MiB,
        bytesInParts: 32 * MiB,
        openPartEnd: 40 * MiB,
        parts: 3,
      };
      const decision = accepted(plan(last, big, 35 * MiB, 40 * MiB));
      expect(decision.writes.map(outline)).toEqual([
        { kind: "part", partNumber: 4, partStart: 32 * MiB, from: 35 * MiB, end: 40 * MiB },
      ]);
      expect(decision).toMatchObject({
        offset: 40 * MiB,
        bytesInParts: 40 * MiB,
        openPartEnd: 40 * MiB,
      });
    });

    it("the whole file in one fragment: part 1 from partSize, the rest as the last part", () => {
      const twelve = fileOf(12 * MiB);
      const decision = accepted(plan(FRESH, twelve, 0, 12 * MiB, { ...LIMITS, partSize: 5 * MiB }));
      expect(decision.writes.map(outline)).toEqual([
        { kind: "part", partNumber: 1, partStart: 0, from: 0, end: 5 * MiB },
        { kind: "part", partNumber: 2, partStart: 5 * MiB, from: 5 * MiB, end: 12 * MiB },
      ]);
    });

    it("a part's bounds come from the record: differently cut fragments upload the same part", () => {
      const cuts: Array<[number, number]> = [
        [10 * MiB, 16 * MiB],
        [10 * MiB, 23 * MiB],
        [4 * MiB, 17 * MiB],
        [10 * MiB - 1, 16 * MiB + 5000],
        [10 * MiB, 26 * MiB],
      ];
      const parts = cuts.map(([first, end]) => {
        const write = accepted(plan(record, big, first, end)).writes[0];
        if (write?.kind !== "part") throw new Error("expected a part write first");
        return write;
      });
      const [one, ...others] = parts as [PartWrite, ...PartWrite[]];
      for (const write of others) {
        expect(outline(write)).toEqual(outline(one));
        expect(sameBytes(write.bytes, one.bytes)).toBe(true);
      }
    });
  });
});

interface PartLog {
  readonly partNumber: number;
  readonly partStart: number;
  readonly from: number;
  readonly end: number;
  /** The fragment [first, end) whose decision uploaded the part. */
  readonly fragment: readonly [number, number];
  readonly bytes: Uint8Array;
}

/**
 * One upload run through the planner the way the Fragment service runs it: each accepted
 * decision's writes are applied to a model store (stage writes kept by start, parts assembled
 * from their staged head and the write's bytes) and its bookkeeping becomes the new record.
 * Every step checks the planner's promises; `finish` checks the uploaded parts.
 */
class Upload {
  record: Model = { ...FRESH };
  /** Staged segments by start: they tile [bytesInParts, offset) exactly. */
  readonly staged = new Map<number, Uint8Array>();
  readonly parts = new Map<number, PartLog>();
  readonly stages: Array<{ start: number; end: number }> = [];
  stagedBytes = 0;

  constructor(
    readonly file: Uint8Array,
    readonly limits: FragmentLimits,
  ) {}

  get total(): number {
    return this.file.length;
  }

  /** The end of the part the record says comes next. */
  get recordedPartEnd(): number {
    return (
      this.record.openPartEnd ?? Math.min(this.total, partSizeFor(this.total, this.limits.partSize))
    );
  }

  plan(first: number, end: number): FragmentDecision {
    return plan(this.record, this.file, first, end, this.limits);
  }

  send(first: number, end: number): FragmentDecision {
    const before = this.record;
    const decision = this.plan(first, end);
    if (first > before.offset) {
      expect(decision).toEqual({ kind: "gap", offset: before.offset });
      return decision;
    }
    if (end <= before.offset && before.total !== undefined) {
      expect(decision).toEqual({ kind: "held", offset: before.offset });
      return decision;
    }
    const accept = accepted(decision);
    const partEnd = this.recordedPartEnd;
    let position = before.offset;
    let parts = before.parts;
    let bytesInParts = before.bytesInParts;
    for (const write of accept.writes) {
      if (write.kind === "stage") {
        expect(write.start).toBe(position);
        expect(write.end).toBeGreaterThan(write.start);
        expect(write.bytes.length).toBe(write.end - write.start);
        // A stage write never reaches a recorded part end: neither the one read...
        if (parts === before.parts) expect(write.end).toBeLessThan(partEnd);
        // ...nor the one recorded with it.
        expect(write.end).toBeLessThan(accept.openPartEnd);
        this.staged.set(write.start, write.bytes);
        this.stages.push({ start: write.start, end: write.end });
        this.stagedBytes += write.bytes.length;
        position = write.end;
        continue;
      }
      // These limits assemble every part whole: no pieces.
      if (write.kind !== "part") throw new Error(`unexpected ${write.kind} write`);
      expect(write.partNumber).toBe(parts + 1);
      expect(write.partStart).toBe(bytesInParts);
      expect(write.from).toBe(position);
      const writeEnd = write.from + write.bytes.length;
      // The first part write ends where the record said; a second one is the last part.
      expect(writeEnd).toBe(parts === before.parts ? partEnd : this.total);
      expect(this.parts.has(write.partNumber)).toBe(false);
      this.parts.set(write.partNumber, {
        partNumber: write.partNumber,
        partStart: write.partStart,
        from: write.from,
        end: writeEnd,
        fragment: [first, end],
        bytes: this.assemble(write),
      });
      parts += 1;
      bytesInParts = writeEnd;
      position = writeEnd;
    }
    expect(position).toBe(end);
    expect(accept.total).toBe(this.total);
    expect(accept.offset).toBe(end);
    expect(accept.bytesInParts).toBe(bytesInParts);
    expect(accept.openPartEnd).toBeLessThanOrEqual(this.total);
    if (end < this.total) expect(accept.openPartEnd).toBeGreaterThan(end);
    else expect(bytesInParts).toBe(this.total);
    if (parts === before.parts) expect(accept.openPartEnd).toBe(partEnd);
    this.record = recordAfter(before, accept);
    let held = 0;
    for (const segment of this.staged.values()) held += segment.length;
    expect(held).toBe(this.record.offset - this.record.bytesInParts);
    return decision;
  }

  /** A part's bytes: its staged head [partStart, from), which staged segments must cover. */
  private assemble(write: Extract<Write, { kind: "part" }>): Uint8Array {
    const bytes = new Uint8Array(write.from - write.partStart + write.bytes.length);
    let at = write.partStart;
    while (at < write.from) {
      const segment = this.staged.get(at);
      if (segment === undefined || at + segment.length > write.from) {
        throw new Error(`part ${write.partNumber}: no staged segment at ${at} within its head`);
      }
      bytes.set(segment, at - write.partStart);
      this.staged.delete(at);
      at += segment.length;
    }
    bytes.set(write.bytes, write.from - write.partStart);
    return bytes;
  }

  /** Sends [offset, offset + length) until the file is complete. */
  sendRest(length: number) {
    while (this.record.total === undefined || this.record.offset < this.total) {
      const first = this.record.offset;
      this.send(first, Math.min(this.total, first + length));
    }
  }

  /** The parts in number order, checked against the file and S3's multipart rules. */
  finish(): PartLog[] {
    expect(this.record.total).toBe(this.total);
    expect(this.record.offset).toBe(this.total);
    expect(this.record.bytesInParts).toBe(this.total);
    expect(this.staged.size).toBe(0);
    const parts = [...this.parts.values()].sort((a, b) => a.partNumber - b.partNumber);
    expect(parts.map((part) => part.partNumber)).toEqual(parts.map((_, i) => i + 1));
    expect(parts.length).toBe(this.record.parts);
    expect(parts.length).toBeLessThanOrEqual(S3_MAX_PARTS);
    const minimum = partSizeFor(this.total, S3_MIN_PART_SIZE);
    let at = 0;
    for (const [i, part] of parts.entries()) {
      const size = part.bytes.length;
      expect(part.partStart).toBe(at);
      expect(part.end - part.partStart).toBe(size);
      expect(size).toBeGreaterThan(0);
      expect(size).toBeLessThanOrEqual(S3_MAX_PART_SIZE);
      if (i < parts.length - 1) expect(size).toBeGreaterThanOrEqual(minimum);
      if (!sameBytes(part.bytes, this.file.subarray(at, at + size))) {
        throw new Error(`part ${part.partNumber} [${at}, ${at + size}) differs from the file`);
      }
      at += size;
    }
    expect(at).toBe(this.total);
    return parts;
  }
}

describe("planFragment property: any fragment schedule uploads the file as valid S3 parts", () => {
  const unit = fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true });
  // Windows sends 5 KB to its maximum; the service takes up to 16 MiB here.
  const length = fc.oneof(
    fc.integer({ min: 5_000, max: 200_000 }),
    fc.integer({ min: 200_000, max: 3_000_000 }),
    fc.integer({ min: 3_000_000, max: 13_000_000 }),
  );
  const step = fc.record({
    kind: fc.constantFrom("next", "next", "overlap", "duplicate", "gap"),
    length,
    repeat: fc.integer({ min: 1, max: 12 }),
    back: fc.integer({ min: 1, max: 13_000_000 }),
    altBack: unit,
    altEnd: unit,
  });
  const totals = fc.oneof(
    fc.integer({ min: 0, max: 6 * MiB }),
    fc.integer({ min: 6 * MiB, max: 40 * MiB }),
  );
  const partSizes = fc.oneof(
    fc.constantFrom(5 * MiB, 8 * MiB),
    fc.integer({ min: S3_MIN_PART_SIZE, max: 16 * MiB }),
  );

  type Step = typeof step extends fc.Arbitrary<infer T> ? T : never;

  /**
   * Before `upload` sends [first, end), plans another fragment on the same record that also
   * completes the next part, and checks both upload the same part(s).
   */
  function checkOtherCut(upload: Upload, first: number, end: number, s: Step) {
    const { offset } = upload.record;
    const partEnd = upload.recordedPartEnd;
    if (first > offset || end <= offset || end < partEnd) return 0;
    const room = upload.limits.maxFragmentBytes - (partEnd - offset);
    const otherFirst = offset - Math.floor(s.altBack * (Math.min(offset, room) + 1));
    const reach = Math.min(upload.total - partEnd, room - (offset - otherFirst));
    const otherEnd = partEnd + Math.floor(s.altEnd * (reach + 1));
    const mine = accepted(upload.plan(first, end)).writes.filter((w) => w.kind === "part");
    const other = accepted(upload.plan(otherFirst, otherEnd)).writes.filter(
      (w) => w.kind === "part",
    );
    expect(mine.length).toBeGreaterThan(0);
    expect(other.length).toBeGreaterThan(0);
    // Both upload part parts+1; the last part too when both reach the total.
    const shared = Math.min(mine.length, other.length);
    for (let i = 0; i < shared; i++) {
      const a = mine[i];
      const b = other[i];
      if (a?.kind !== "part" || b?.kind !== "part") throw new Error("expected part writes");
      expect(outline(b)).toEqual(outline(a));
      expect(sameBytes(a.bytes, b.bytes)).toBe(true);
    }
    return 1;
  }

  it("rebuilds the file; parts 1..n, >= partSizeFor(total, 5 MiB) but the last, <= 5 GiB; bounds from the record", () => {
    let otherCuts = 0;
    fc.assert(
      fc.property(
        totals,
        partSizes,
        fc.array(step, { maxLength: 24 }),
        fc.integer({ min: 100_000, max: 13_000_000 }),
        (total, partSize, steps, finishing) => {
          const file = fileOf(total);
          const upload = new Upload(file, { ...LIMITS, maxUploadBytes: total, partSize });
          const send = (first: number, end: number, s: Step) => {
            otherCuts += checkOtherCut(upload, first, end, s);
            upload.send(first, end);
          };
          for (const s of steps) {
            const offset = upload.record.offset;
            if (total === 0) {
              upload.send(0, 0);
              continue;
            }
            if (s.kind === "next") {
              for (let i = 0; i < s.repeat && upload.record.offset < total; i++) {
                const first = upload.record.offset;
                send(first, Math.min(total, first + s.length), s);
              }
            } else if (s.kind === "overlap") {
              const first = Math.max(0, offset - s.back);
              send(first, Math.min(total, first + s.length), s);
            } else if (s.kind === "duplicate") {
              if (offset === 0) continue;
              const first = Math.max(0, offset - s.back);
              send(first, Math.min(offset, first + s.length), s);
            } else {
              const first = offset + 1 + (s.back % 100_000);
              if (first < total) send(first, Math.min(total, first + s.length), s);
            }
          }
          upload.sendRest(finishing);
          upload.finish();
        },
      ),
      { numRuns: 200 },
    );
    // The other-cut check ran, not just vacuously.
    expect(otherCuts).toBeGreaterThan(100);
  });
});

/**
 * A client that starts with `start`-byte fragments (5 KB, Windows' smallest) and doubles them up
 * to `steady`, then keeps that length, as BITS grows its fragments on a good link.
 */
function growingClient(total: number, start: number, steady: number, partSize: number) {
  const upload = new Upload(fileOf(total), { ...LIMITS, maxUploadBytes: total, partSize });
  let length = start;
  while (upload.record.total === undefined || upload.record.offset < total) {
    const first = upload.record.offset;
    upload.send(first, Math.min(total, first + length));
    length = Math.min(steady, length * 2);
  }
  return { upload, parts: upload.finish() };
}

describe("alignment: a client keeping its fragment length completes each part at a fragment end", () => {
  const total = 256 * MiB;

  /** A part that is exactly the fragment that uploaded it: no staged head, no staged tail. */
  const isOneFragment = (part: PartLog) =>
    part.from === part.partStart &&
    part.fragment[0] === part.partStart &&
    part.fragment[1] === part.end;

  it.each([
    [8 * MiB, 5 * KiB],
    [8 * MiB, 5000],
    [5 * MiB, 5 * KiB],
    [5 * MiB, 5000],
  ])(
    "%i-byte fragments (grown from %i): after part 1 and at most two transitional parts, a part is one fragment; S3 writes < 1.1 per byte",
    (steady, start) => {
      const { upload, parts } = growingClient(total, start, steady, 8 * MiB);
      const firstSteady = parts.findIndex((_, i) => parts.slice(i).every(isOneFragment));
      // Part 1 follows partSize; parts 2 and 3 at most realign.
      expect(firstSteady).toBeGreaterThan(0);
      expect(firstSteady).toBeLessThanOrEqual(3);
      const steadyParts = parts.slice(firstSteady);
      for (const part of steadyParts.slice(0, -1)) expect(part.end - part.partStart).toBe(steady);
      // The last part is the final fragment, at most one fragment long.
      const last = steadyParts.at(-1) as PartLog;
      expect(last.end).toBe(total);
      expect(last.end - last.partStart).toBeLessThanOrEqual(steady);
      // Nothing is staged once the parts are single fragments.
      const steadyStart = steadyParts[0]?.partStart as number;
      for (const stage of upload.stages) expect(stage.end).toBeLessThanOrEqual(steadyStart);
      const written = 1 + upload.stagedBytes / total;
      expect(written).toBeLessThan(1.1);
    },
  );

  it.each([5 * KiB, 5000])(
    "1 MiB fragments (grown from %i) with 8 MiB preferred parts: parts of exactly 8 MiB ending at fragment ends; S3 writes <= 2 per byte",
    (start) => {
      const { upload, parts } = growingClient(total, start, MiB, 8 * MiB);
      // Part 1 follows partSize; part 2 realigns; from part 3 on, eight whole fragments each.
      for (const part of parts.slice(2, -1)) {
        expect(part.end - part.partStart).toBe(8 * MiB);
        expect(part.fragment[1]).toBe(part.end);
        expect(part.fragment[1] - part.fragment[0]).toBe(MiB);
        expect(part.from - part.partStart).toBe(7 * MiB);
      }
      const last = parts.at(-1) as PartLog;
      expect(last.end - last.partStart).toBeLessThanOrEqual(8 * MiB);
      const written = 1 + upload.stagedBytes / total;
      expect(written).toBeLessThanOrEqual(2);
    },
  );
});

describe("at S3 scale (bookkeeping only): big files fit in 10,000 parts of 5 MiB to 5 GiB", () => {
  const zeros = new Uint8Array(64 * MiB);

  /** Part sizes of an in-order upload of `total` bytes in `length`-byte fragments. */
  function partSizes(total: number, length: number, partSize: number): number[] {
    const limits = { maxFragmentBytes: zeros.length, maxUploadBytes: total, partSize };
    let record: Model = { ...FRESH };
    const sizes: number[] = [];
    while (record.total === undefined || record.offset < total) {
      const first = record.offset;
      const end = Math.min(total, first + length);
      const decision = planFragment(
        record,
        rangeOf(first, end - 1, total),
        zeros.subarray(0, end - first),
        limits,
      );
      for (const write of decision.kind === "accept" ? decision.writes : []) {
        if (write.kind === "part") sizes.push(write.from + write.bytes.length - write.partStart);
      }
      record = recordAfter(record, decision);
    }
    return sizes;
  }

  it.each([
    [S3_MAX_OBJECT_SIZE, 64 * MiB],
    [S3_MAX_OBJECT_SIZE, 13_000_000],
    [1024 * GiB, 5 * MiB],
  ])("a %i-byte file in %i-byte fragments", (total, length) => {
    const sizes = partSizes(total, length, 8 * MiB);
    const minimum = partSizeFor(total, S3_MIN_PART_SIZE);
    expect(sizes.length).toBeLessThanOrEqual(S3_MAX_PARTS);
    expect(sizes.reduce((sum, size) => sum + size, 0)).toBe(total);
    for (const size of sizes.slice(0, -1)) {
      expect(size).toBeGreaterThanOrEqual(minimum);
      expect(size).toBeLessThanOrEqual(S3_MAX_PART_SIZE);
    }
  });
});

describe("a 12 MiB file in 2 MiB fragments, 5 MiB preferred parts: the exact plan", () => {
  it("part 1 = [0, 5) MiB from partSize, then parts aligned with the fragments: [5, 10), [10, 12)", () => {
    const upload = new Upload(fileOf(12 * MiB), {
      ...LIMITS,
      maxUploadBytes: 12 * MiB,
      partSize: 5 * MiB,
    });
    const steps = [];
    for (let first = 0; first < 12 * MiB; first += 2 * MiB) {
      const decision = accepted(upload.send(first, first + 2 * MiB));
      steps.push({
        offset: decision.offset / MiB,
        bytesInParts: decision.bytesInParts / MiB,
        openPartEnd: decision.openPartEnd / MiB,
        writes: decision.writes.map((write) =>
          Object.fromEntries(
            Object.entries(outline(write)).map(([key, value]) => [
              key,
              typeof value === "number" && key !== "partNumber" ? value / MiB : value,
            ]),
          ),
        ),
      });
    }
    expect(steps).toEqual([
      { offset: 2, bytesInParts: 0, openPartEnd: 5, writes: [{ kind: "stage", start: 0, end: 2 }] },
      { offset: 4, bytesInParts: 0, openPartEnd: 5, writes: [{ kind: "stage", start: 2, end: 4 }] },
      {
        // Part 1 ends at 5 MiB; 1 MiB staged; 1 + 2 * 2 = 5 MiB: the next part ends at 6 + 4.
        offset: 6,
        bytesInParts: 5,
        openPartEnd: 10,
        writes: [
          { kind: "part", partNumber: 1, partStart: 0, from: 4, end: 5 },
          { kind: "stage", start: 5, end: 6 },
        ],
      },
      {
        offset: 8,
        bytesInParts: 5,
        openPartEnd: 10,
        writes: [{ kind: "stage", start: 6, end: 8 }],
      },
      {
        // Part 2 ends with the fragment; 3 more fragments would pass the total: capped at 12.
        offset: 10,
        bytesInParts: 10,
        openPartEnd: 12,
        writes: [{ kind: "part", partNumber: 2, partStart: 5, from: 8, end: 10 }],
      },
      {
        offset: 12,
        bytesInParts: 12,
        openPartEnd: 12,
        writes: [{ kind: "part", partNumber: 3, partStart: 10, from: 10, end: 12 }],
      },
    ]);
    const parts = upload.finish();
    expect(parts.map((part) => [part.partStart / MiB, part.end / MiB])).toEqual([
      [0, 5],
      [5, 10],
      [10, 12],
    ]);
    expect(upload.stagedBytes).toBe(7 * MiB);
  });
});

describe("planFragment: parts built from pieces (docs/large-files.md)", () => {
  // S3's limits scaled down: 20 parts of at least 1 KiB; no unit above 4 KiB is assembled.
  const scaled: FragmentLimits = {
    maxFragmentBytes: 64 * KiB,
    maxUploadBytes: GiB,
    partSize: KiB,
    maxParts: 20,
    minPartBytes: KiB,
    maxAssembledBytes: 4 * KiB,
  };

  /**
   * Uploads `file` in order with fragments of the given lengths (cycled), applying every
   * decision as the service does, and checks each write against the record it was planned on.
   * Answers the parts as uploaded or built, and the largest staged head read back.
   */
  function drive(file: Uint8Array, lengths: readonly number[]) {
    const staged = new Map<number, Uint8Array>();
    const read = (from: number, to: number) => {
      const bytes = new Uint8Array(to - from);
      for (let at = from; at < to; ) {
        const segment = staged.get(at);
        if (segment === undefined) throw new Error(`nothing staged at ${at}`);
        bytes.set(segment, at - from);
        at += segment.length;
      }
      return bytes;
    };
    const parts: Uint8Array[] = [];
    let pieces: Uint8Array[] = [];
    let state: Model & {
      pieces?: { count: number; bytesInPieces: number; openPieceEnd: number } | undefined;
    } = { ...FRESH };
    let largestHead = 0;
    for (let i = 0; state.offset < file.length || state.total === undefined; i++) {
      const length = Math.min(file.length - state.offset, lengths[i % lengths.length] ?? 1);
      const decision = accepted(plan(state, file, state.offset, state.offset + length, scaled));
      let position = state.offset;
      for (const write of decision.writes) {
        if (write.kind === "stage") {
          expect(write.start).toBe(position);
          staged.set(write.start, write.bytes);
          position = write.end;
        } else if (write.kind === "part") {
          expect(write.partNumber).toBe(parts.length + 1);
          largestHead = Math.max(largestHead, write.from - write.partStart);
          parts.push(Buffer.concat([read(write.partStart, write.from), write.bytes]));
          position = write.from + write.bytes.length;
        } else if (write.kind === "piece") {
          expect(write.partNumber).toBe(parts.length + 1);
          expect(write.pieceNumber).toBe(pieces.length + 1);
          largestHead = Math.max(largestHead, write.from - write.pieceStart);
          const piece = Buffer.concat([read(write.pieceStart, write.from), write.bytes]);
          expect(piece.length).toBeLessThanOrEqual(4 * KiB);
          pieces.push(piece);
          position = write.from + write.bytes.length;
        } else {
          expect(write.partNumber).toBe(parts.length + 1);
          expect(write.partEnd).toBe(position);
          // Every piece but the last is at least S3's (scaled) minimum part size.
          for (const piece of pieces.slice(0, -1)) expect(piece.length).toBeGreaterThanOrEqual(KiB);
          const part = Buffer.concat(pieces);
          expect(part.length).toBe(write.partEnd - write.partStart);
          parts.push(part);
          pieces = [];
        }
      }
      expect(position).toBe(decision.offset);
      state = {
        offset: decision.offset,
        total: decision.total,
        bytesInParts: decision.bytesInParts,
        openPartEnd: decision.openPartEnd,
        parts: parts.length,
        pieces: decision.pieces && { ...decision.pieces, count: pieces.length },
      };
      if (file.length === 0) break;
    }
    return { parts, largestHead };
  }

  it("a 200 KiB file: parts of 10 KiB or more, each built from pieces, no head above 4 KiB", () => {
    const file = fileOf(200 * KiB);
    const { parts, largestHead } = drive(file, [700, 1500, 333]);
    // Parts end at fragment ends, so some are longer than 10 KiB and there are fewer than 20.
    expect(parts.length).toBeGreaterThan(10);
    expect(parts.length).toBeLessThanOrEqual(20);
    for (const part of parts.slice(0, -1)) expect(part.length).toBeGreaterThanOrEqual(10 * KiB);
    expect(sameBytes(Buffer.concat(parts), file)).toBe(true);
    expect(largestHead).toBeLessThan(4 * KiB);
  });

  it("fragments longer than a piece: the pieces inside a fragment are uploaded from it", () => {
    const file = fileOf(150 * KiB);
    const { parts, largestHead } = drive(file, [9 * KiB, 64 * KiB, 5000]);
    expect(sameBytes(Buffer.concat(parts), file)).toBe(true);
    expect(largestHead).toBeLessThan(4 * KiB);
  });

  it("property: any file and fragment lengths: exact bytes, <= 20 parts, heads below 4 KiB", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 300 * KiB }),
        fc.array(fc.integer({ min: 1, max: 64 * KiB }), { minLength: 1, maxLength: 6 }),
        (length, lengths) => {
          const file = fileOf(length);
          const { parts, largestHead } = drive(file, lengths);
          expect(sameBytes(Buffer.concat(parts), file)).toBe(true);
          expect(parts.length).toBeLessThanOrEqual(20);
          for (const part of parts.slice(0, -1)) expect(part.length).toBeGreaterThanOrEqual(KiB);
          expect(largestHead).toBeLessThan(4 * KiB);
        },
      ),
      { numRuns: 200 },
    );
  });
});
