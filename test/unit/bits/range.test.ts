import { describe, expect, it } from "vitest";
import { parseContentRange } from "../../../functions/bits/range.ts";
import { bitsErrorFrom, thrownKind } from "./throws.ts";

describe("parseContentRange ([MC-BUP] 3.2.5.2.6; RFC 2616 14.16)", () => {
  it("reads `bytes <first>-<last>/<total>` as zero-based inclusive bounds (trace A3: bytes 0-4891/4892)", () => {
    expect(parseContentRange("bytes 0-4891/4892", 4892)).toEqual({
      first: 0,
      last: 4891,
      total: 4892,
    });
    expect(parseContentRange("bytes 100-199/1000", 100)).toEqual({
      first: 100,
      last: 199,
      total: 1000,
    });
  });

  it("accepts a one-byte range at the very end of the file", () => {
    expect(parseContentRange("bytes 9-9/10", 1)).toEqual({ first: 9, last: 9, total: 10 });
  });

  it.each(["Bytes 0-9/10", "BYTES 0-9/10", "bYtEs 0-9/10"])(
    "parses the unit name case-insensitively (docs/protocol.md, Fragments and offsets): %s",
    (value) => {
      expect(parseContentRange(value, 10)).toEqual({ first: 0, last: 9, total: 10 });
    },
  );

  it("tolerates surrounding whitespace and several spaces after the unit", () => {
    expect(parseContentRange("  bytes   0-9/10  ", 10)).toEqual({ first: 0, last: 9, total: 10 });
  });

  it.each(["bytes */0", "bytes 0--1/0", "BYTES */0", " Bytes 0--1/0 "])(
    "a zero-byte file is `%s` with an empty body (docs/protocol.md, Fragments and offsets)",
    (value) => {
      expect(parseContentRange(value, 0)).toEqual({ first: 0, last: -1, total: 0 });
    },
  );

  it.each(["bytes */0", "bytes 0--1/0"])("an empty-file range %s with a body is 400", (value) => {
    expect(thrownKind(() => parseContentRange(value, 1))).toBe("invalidArg");
  });

  it.each(["bytes */10", "bytes 0--1/10", "bytes */"])(
    "the empty-file forms are only valid with total 0: %s is 400",
    (value) => {
      expect(thrownKind(() => parseContentRange(value, 0))).toBe("invalidArg");
    },
  );

  it("first > last (`bytes 5-3/10`) is 400 E_INVALIDARG", () => {
    const error = bitsErrorFrom(() => parseContentRange("bytes 5-3/10", 0));
    expect(error.kind).toBe("invalidArg");
    expect(error.status).toBe(400);
    expect(error.code).toBe(0x80070057);
  });

  it.each([
    ["bytes 0-9/5", 10],
    ["bytes 0-10/10", 11],
    ["bytes 0-0/0", 1],
  ])("last >= total (`%s`) is 400: F <= L < N must hold", (value, body) => {
    expect(thrownKind(() => parseContentRange(value, body))).toBe("invalidArg");
  });

  it.each([
    ["bytes 0-9/10", 9],
    ["bytes 0-9/10", 11],
    ["bytes 0-9/10", 0],
    ["bytes 5-5/10", 2],
  ])("the body length must equal last-first+1 (%s with %i bytes is 400)", (value, body) => {
    expect(thrownKind(() => parseContentRange(value, body))).toBe("invalidArg");
  });

  it("accepts a total of exactly Number.MAX_SAFE_INTEGER", () => {
    const max = Number.MAX_SAFE_INTEGER;
    expect(parseContentRange(`bytes ${max - 1}-${max - 1}/${max}`, 1)).toEqual({
      first: max - 1,
      last: max - 1,
      total: max,
    });
  });

  it.each([
    // 2^53: past the safe integers, so byte arithmetic would be wrong.
    `bytes 0-0/${2 ** 53}`,
    // 16 nines: matches the digit limit but is not a safe integer.
    "bytes 0-0/9999999999999999",
    // 17 digits: longer than any number the parser reads.
    "bytes 0-0/10000000000000000",
    "bytes 00000000000000000-0/1",
  ])("huge numbers are refused, never rounded: %s", (value) => {
    expect(thrownKind(() => parseContentRange(value, 1))).toBe("invalidArg");
  });

  it.each([
    "",
    "bytes",
    "bytes 0-9",
    "bytes 0-9/",
    "bytes=0-9/10",
    "bytes0-9/10",
    "items 0-9/10",
    "bytes -1-9/10",
    "bytes 0-9/*",
    "bytes 0 - 9 / 10",
    "bytes 0x0-0x9/10",
    "bytes 0.0-9/10",
    "bytes 0-9/10, 10-19/20",
    "bytes 0-9/10 trailing",
    "bytes ０-９/１０",
  ])("garbage is 400 E_INVALIDARG: %j", (value) => {
    expect(thrownKind(() => parseContentRange(value, 10))).toBe("invalidArg");
  });

  it("a missing Content-Range is 400", () => {
    expect(thrownKind(() => parseContentRange(undefined, 0))).toBe("invalidArg");
  });
});
