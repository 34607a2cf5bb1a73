import { invalidArg } from "./errors.ts";

/** A parsed `Content-Range`: first and last byte (inclusive) and the total length. */
export interface ContentRange {
  readonly first: number;
  readonly last: number;
  readonly total: number;
}

const RANGE = /^\s*bytes\s+(\d{1,16})-(\d{1,16})\/(\d{1,16})\s*$/i;
// A zero-byte file: "bytes */0", or the "bytes 0--1/0" some clients write (docs/protocol.md,
// "Fragments and offsets").
const EMPTY = /^\s*bytes\s+(\*|0--1)\/0\s*$/i;

/**
 * Parses `Content-Range: bytes <first>-<last>/<total>` (RFC 2616 14.16, zero-based, inclusive;
 * unit name case-insensitive) and checks it against the body ([MC-BUP] 3.2.5.2.6).
 */
export function parseContentRange(value: string | undefined, bodyLength: number): ContentRange {
  if (value === undefined) throw invalidArg("Fragment without Content-Range");
  if (EMPTY.test(value)) {
    if (bodyLength !== 0) throw invalidArg("empty range with a body");
    return { first: 0, last: -1, total: 0 };
  }
  const match = RANGE.exec(value);
  if (!match) throw invalidArg(`malformed Content-Range: ${value.slice(0, 80)}`);
  const first = Number(match[1]);
  const last = Number(match[2]);
  const total = Number(match[3]);
  if (!Number.isSafeInteger(total) || first > last || last >= total) {
    throw invalidArg(`impossible Content-Range: ${value.slice(0, 80)}`);
  }
  if (last - first + 1 !== bodyLength) {
    throw invalidArg("body length differs from Content-Range");
  }
  return { first, last, total };
}
