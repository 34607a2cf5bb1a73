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
  partBounds,
  partSizeFor,
  planFragment,
  type Write,
} from "../../../functions/bits/fragment-plan.ts";
import type { ContentRange } from "../../../functions/bits/range.ts";
import { bitsErrorFrom, thrownKind } from "./throws.ts";

type Session = { offset: number; total: number | undefined; partSize: number | undefined };

const LIMITS: FragmentLimits = { maxFragmentBytes: MiB, maxUploadBytes: 1024 * MiB, partSize: 0 };
const FRESH: Session = { offset: 0, total: undefined, partSize: undefined };

/** Deterministic file bytes: byte i is (i * 31 + 7) mod 256. */
function fileOf(length: number): Uint8Array {
  const bytes = new Uint8Array(length);
  for (let i = 0; i < length; i++) bytes[i] = (i * 31 + 7) % 256;
  return bytes;
}

const rangeOf = (first: number, last: number, total: number): ContentRange => ({
  first,
  last,
  total,
});

/** Plans the fragment `first..last` of `file`, the body cut from the file itself. */
function plan(session: Session, file: Uint8Array, first: number, last: number, limits = LIMITS) {
  return planFragment(
    session,
    rangeOf(first, last, file.length),
    file.subarray(first, last + 1),
    limits,
  );
}

function accepted(decision: FragmentDecision) {
  if (decision.kind !== "accept") throw new Error(`expected accept, got ${decision.kind}`);
  return decision;
}

/** A write with its bytes as a plain array, for readable equality checks. */
function shape(write: Write) {
  return { ...write, bytes: [...write.bytes] };
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

describe("partBounds", () => {
  it("part n covers [(n-1)P, nP), the last part ending at the total", () => {
    expect(partBounds(1, 10, 25)).toEqual({ start: 0, end: 10 });
    expect(partBounds(2, 10, 25)).toEqual({ start: 10, end: 20 });
    expect(partBounds(3, 10, 25)).toEqual({ start: 20, end: 25 });
  });
});

describe("planFragment: bits-protocol.md 5.2 (docs reading, Project decisions)", () => {
  const P = 10;
  const file = fileOf(25);
  const onGrid = (offset: number): Session => ({ offset, total: 25, partSize: P });

  it("the first fragment fixes the total and the part size from the limits", () => {
    const decision = accepted(plan(FRESH, file, 0, 3, { ...LIMITS, partSize: 6 * MiB }));
    expect(decision.total).toBe(25);
    expect(decision.partSize).toBe(6 * MiB);
    expect(decision.offset).toBe(4);
  });

  it("a session's part size is kept, whatever the limits now say", () => {
    const decision = accepted(plan(onGrid(0), file, 0, 3, { ...LIMITS, partSize: 6 * MiB }));
    expect(decision.partSize).toBe(P);
  });

  it("T8: F == E (in order) is written and E becomes L+1", () => {
    const decision = accepted(plan(onGrid(0), file, 0, 3));
    expect(decision.offset).toBe(4);
    expect(decision.writes.map(shape)).toEqual([
      { kind: "stage", start: 0, end: 4, bytes: [...file.subarray(0, 4)] },
    ]);
    const next = accepted(plan(onGrid(4), file, 4, 6));
    expect(next.offset).toBe(7);
    expect(next.writes.map(shape)).toEqual([
      { kind: "stage", start: 4, end: 7, bytes: [...file.subarray(4, 7)] },
    ]);
  });

  it("T10: an overlap (F < E <= L) writes only the new tail", () => {
    const decision = accepted(plan(onGrid(5), file, 2, 8));
    expect(decision.offset).toBe(9);
    expect(decision.writes.map(shape)).toEqual([
      { kind: "stage", start: 5, end: 9, bytes: [...file.subarray(5, 9)] },
    ]);
  });

  it("T10: an overlap whose last byte is E writes that one new byte", () => {
    const decision = accepted(plan(onGrid(5), file, 0, 5));
    expect(decision.writes.map(shape)).toEqual([
      { kind: "stage", start: 5, end: 6, bytes: [file[5]] },
    ]);
  });

  it.each([
    [0, 4],
    [3, 7],
    [0, 7],
    [7, 7],
  ])(
    "T11: a fragment wholly below E (%i-%i, E=8) is held: 200 with E, nothing written",
    (first, last) => {
      expect(plan(onGrid(8), file, first, last)).toEqual({ kind: "held", offset: 8 });
    },
  );

  it("T19: resending the final fragment of a complete file is held at the total", () => {
    expect(plan(onGrid(25), file, 20, 24)).toEqual({ kind: "held", offset: 25 });
  });

  it("T9: F > E (gap) is 416 with E, nothing written ([MC-BUP] 3.2.5.2.6)", () => {
    expect(plan(onGrid(8), file, 9, 12)).toEqual({ kind: "gap", offset: 8 });
    expect(plan(FRESH, file, 1, 4)).toEqual({ kind: "gap", offset: 0 });
  });

  it("T12: a total different from the first fragment's is 400 E_INVALIDARG ([MC-BUP] 2.2.1.2)", () => {
    const error = bitsErrorFrom(() =>
      planFragment(onGrid(8), rangeOf(8, 9, 26), file.subarray(8, 10), LIMITS),
    );
    expect(error.kind).toBe("invalidArg");
    expect(error.status).toBe(400);
  });

  it("T12: a changed total is refused even for a fragment that would be held", () => {
    expect(
      thrownKind(() => planFragment(onGrid(8), rangeOf(0, 1, 30), file.subarray(0, 2), LIMITS)),
    ).toBe("invalidArg");
  });

  it("T15: a total above the maximum upload size is 500 BG_E_TOO_LARGE", () => {
    const limits = { ...LIMITS, maxUploadBytes: 24 };
    const error = bitsErrorFrom(() => plan(FRESH, file, 0, 3, limits));
    expect(error.kind).toBe("tooLarge");
    expect(error.status).toBe(500);
    expect(error.code).toBe(0x80200020);
  });

  it("T15: a total of exactly the maximum upload size is accepted", () => {
    expect(plan(FRESH, file, 0, 3, { ...LIMITS, maxUploadBytes: 25 }).kind).toBe("accept");
  });

  it("T14: a body above the per-request maximum is 413 with no BITS error ([MC-BUP] 3.1.5.2.4)", () => {
    const limits = { ...LIMITS, maxFragmentBytes: 4 };
    const error = bitsErrorFrom(() => plan(onGrid(0), file, 0, 4, limits));
    expect(error.kind).toBe("fragmentTooLarge");
    expect(error.status).toBe(413);
    expect(error.code).toBeUndefined();
    expect(plan(onGrid(0), file, 0, 3, limits).kind).toBe("accept");
  });

  it("a fragment that finishes a part writes the part: staged bytes before `from`, then the body", () => {
    const decision = accepted(plan(onGrid(4), file, 4, 9));
    expect(decision.offset).toBe(10);
    expect(decision.writes.map(shape)).toEqual([
      { kind: "part", partNumber: 1, partStart: 0, from: 4, bytes: [...file.subarray(4, 10)] },
    ]);
  });

  it("a fragment that starts a part and fills it writes the part alone", () => {
    const decision = accepted(plan(onGrid(10), file, 10, 19));
    expect(decision.writes.map(shape)).toEqual([
      { kind: "part", partNumber: 2, partStart: 10, from: 10, bytes: [...file.subarray(10, 20)] },
    ]);
  });

  it("a fragment spanning several parts writes each whole part and stages the remainder", () => {
    const big = fileOf(45);
    const session: Session = { offset: 3, total: 45, partSize: P };
    const decision = accepted(plan(session, big, 0, 36));
    expect(decision.offset).toBe(37);
    expect(decision.writes.map(shape)).toEqual([
      { kind: "part", partNumber: 1, partStart: 0, from: 3, bytes: [...big.subarray(3, 10)] },
      { kind: "part", partNumber: 2, partStart: 10, from: 10, bytes: [...big.subarray(10, 20)] },
      { kind: "part", partNumber: 3, partStart: 20, from: 20, bytes: [...big.subarray(20, 30)] },
      { kind: "stage", start: 30, end: 37, bytes: [...big.subarray(30, 37)] },
    ]);
  });

  it("the last part may be short: it is written when the fragment reaches the total", () => {
    const decision = accepted(plan(onGrid(20), file, 20, 24));
    expect(decision.offset).toBe(25);
    expect(decision.writes.map(shape)).toEqual([
      { kind: "part", partNumber: 3, partStart: 20, from: 20, bytes: [...file.subarray(20, 25)] },
    ]);
  });

  it("the whole file in one fragment writes every part, the last one short", () => {
    const decision = accepted(plan({ ...FRESH, partSize: P }, file, 0, 24));
    expect(decision.writes.map((w) => (w.kind === "part" ? w.partNumber : -1))).toEqual([1, 2, 3]);
    expect(decision.writes.map((w) => w.bytes.length)).toEqual([10, 10, 5]);
  });

  it("a file smaller than one part is written as part 1 when its last byte arrives", () => {
    const small = fileOf(3);
    const decision = accepted(plan({ ...FRESH, partSize: P }, small, 0, 2));
    expect(decision.writes.map(shape)).toEqual([
      { kind: "part", partNumber: 1, partStart: 0, from: 0, bytes: [...small] },
    ]);
  });

  it("Project decisions: a zero-byte file is accepted, fixing total 0 and writing nothing", () => {
    const empty = new Uint8Array(0);
    const decision = planFragment(FRESH, rangeOf(0, -1, 0), empty, LIMITS);
    expect(decision).toEqual({
      kind: "accept",
      total: 0,
      partSize: S3_MIN_PART_SIZE,
      offset: 0,
      writes: [],
    });
    const again = planFragment(
      { offset: 0, total: 0, partSize: S3_MIN_PART_SIZE },
      rangeOf(0, -1, 0),
      empty,
      LIMITS,
    );
    expect(again).toEqual({ kind: "held", offset: 0 });
  });

  it("on the real grid: a 12 MiB file sent as 1 MiB fragments fills 5 MiB parts 1 and 2", () => {
    const big = fileOf(12 * MiB);
    const limits = { ...LIMITS, partSize: 5 * MiB };
    let session: Session = FRESH;
    const parts: number[] = [];
    for (let first = 0; first < big.length; first += MiB) {
      const decision = accepted(plan(session, big, first, first + MiB - 1, limits));
      for (const write of decision.writes) {
        if (write.kind === "part") parts.push(write.partNumber);
      }
      session = { offset: decision.offset, total: decision.total, partSize: decision.partSize };
      if (first === 4 * MiB) expect(decision.writes.map((w) => w.kind)).toEqual(["part"]);
      if (first === 5 * MiB) expect(decision.writes.map((w) => w.kind)).toEqual(["stage"]);
    }
    expect(session.partSize).toBe(5 * MiB);
    expect(parts).toEqual([1, 2, 3]);
  });
});

/**
 * Replays one fragment schedule against planFragment as the storage layer would: stage writes
 * are appended to the part's staged bytes, a part write prepends them. Checks the grid
 * invariants on every write and returns the parts in order.
 */
function replay(file: Uint8Array, partSize: number, steps: readonly Step[]) {
  const total = file.length;
  let session: Session = { offset: 0, total: undefined, partSize };
  const staged = new Map<number, Uint8Array>();
  const parts = new Map<number, Uint8Array>();

  const apply = (first: number, last: number) => {
    const before = session.offset;
    const decision = plan(session, file, first, last, { ...LIMITS, maxUploadBytes: total });
    if (first > before) {
      expect(decision).toEqual({ kind: "gap", offset: before });
      return;
    }
    if (last + 1 <= before && session.total !== undefined) {
      expect(decision).toEqual({ kind: "held", offset: before });
      return;
    }
    const accept = accepted(decision);
    expect(accept.partSize).toBe(partSize);
    expect(accept.offset).toBe(last + 1);
    let position = before;
    for (const write of accept.writes) {
      if (write.kind === "stage") {
        const partNumber = Math.floor(write.start / partSize) + 1;
        const part = partBounds(partNumber, partSize, total);
        // Stage writes never cross a part boundary and never finish a part.
        expect(write.end).toBeLessThan(part.end);
        expect(write.start).toBe(position);
        const held = staged.get(partNumber) ?? new Uint8Array(0);
        expect(write.start).toBe(part.start + held.length);
        expect([...write.bytes]).toEqual([...file.subarray(write.start, write.end)]);
        staged.set(partNumber, concat(held, write.bytes));
        position = write.end;
      } else {
        const part = partBounds(write.partNumber, partSize, total);
        expect(write.partStart).toBe(part.start);
        expect(write.from).toBe(position);
        const held = staged.get(write.partNumber) ?? new Uint8Array(0);
        expect(write.from).toBe(part.start + held.length);
        const bytes = concat(held, write.bytes);
        // Every part is exactly partSize, except the last one.
        const expected = write.partNumber * partSize < total ? partSize : total - part.start;
        expect(bytes.length).toBe(expected);
        expect(parts.has(write.partNumber)).toBe(false);
        parts.set(write.partNumber, bytes);
        staged.delete(write.partNumber);
        position = part.end;
      }
    }
    expect(position).toBe(last + 1);
    session = { offset: accept.offset, total: accept.total, partSize: accept.partSize };
  };

  for (const step of steps) {
    const offset = session.offset;
    let first = step.gap ? offset + 1 + step.shift : Math.max(0, offset - step.shift);
    if (first >= total) first = Math.max(0, Math.min(offset, total - 1) - step.shift);
    apply(first, Math.min(total - 1, first + step.length - 1));
  }
  // Finish the upload in order, as a client would after its schedule.
  while (session.offset < total) {
    apply(session.offset, Math.min(total - 1, session.offset + 2 * partSize));
  }
  expect(staged.size).toBe(0);
  const numbers = [...parts.keys()].sort((a, b) => a - b);
  expect(numbers).toEqual(numbers.map((_, i) => i + 1));
  return numbers.map((n) => parts.get(n) as Uint8Array);
}

interface Step {
  readonly gap: boolean;
  readonly shift: number;
  readonly length: number;
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

describe("planFragment property: any fragment schedule rebuilds the file on the part grid", () => {
  it("the concatenated part writes equal the file, parts are partSize except the last", () => {
    const step = fc.record({
      // One step in five jumps past the offset.
      gap: fc.integer({ min: 0, max: 4 }).map((n) => n === 0),
      shift: fc.nat(12),
      length: fc.integer({ min: 1, max: 40 }),
    });
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 200 }),
        fc.integer({ min: 1, max: 32 }),
        fc.array(step, { maxLength: 60 }),
        (total, partSize, steps) => {
          const file = fileOf(total);
          const parts = replay(file, partSize, steps);
          expect(parts.length).toBe(Math.ceil(total / partSize));
          for (const part of parts.slice(0, -1)) expect(part.length).toBe(partSize);
          expect([...parts.reduce(concat, new Uint8Array(0))]).toEqual([...file]);
        },
      ),
      { numRuns: 300 },
    );
  });
});
