import { MiB, S3_MAX_PARTS, S3_MIN_PART_SIZE } from "./constants.ts";
import { BitsError, invalidArg } from "./errors.ts";
import type { ContentRange } from "./range.ts";
import type { SessionRecord } from "./session.ts";

export interface FragmentLimits {
  /** Largest body one request may carry; above it the client is told to shrink (413). */
  readonly maxFragmentBytes: number;
  /** Largest file accepted; above it BG_E_TOO_LARGE. */
  readonly maxUploadBytes: number;
  /** Preferred part size; raised for big files so that every file fits in 10,000 parts. */
  readonly partSize: number;
}

/**
 * Part size for a file of `total` bytes: the preferred size, raised to whole MiB until the file
 * fits in S3's 10,000 parts (a 5 TiB object gets 525 MiB parts).
 */
export function partSizeFor(total: number, preferred: number): number {
  const needed = Math.ceil(Math.ceil(total / S3_MAX_PARTS) / MiB) * MiB;
  return Math.max(preferred, needed, S3_MIN_PART_SIZE);
}

/** Part `n` (1-based) covers bytes [(n-1)·P, n·P) of the file, the last one up to the total. */
export function partBounds(partNumber: number, partSize: number, total: number) {
  const start = (partNumber - 1) * partSize;
  return { start, end: Math.min(start + partSize, total) };
}

/**
 * One storage write that accepting a fragment needs. Parts sit on a fixed grid of `partSize`
 * bytes, so the bytes of a part never depend on how the client cut its fragments: two writers
 * racing on the same part write the same bytes.
 */
export type Write =
  /** Bytes [start, end) that do not finish a part, kept as a staged object until they do. */
  | {
      readonly kind: "stage";
      readonly start: number;
      readonly end: number;
      readonly bytes: Uint8Array;
    }
  /**
   * Part `partNumber`: staged bytes [partStart, from) followed by `bytes`, which run from
   * `from` to the part's end.
   */
  | {
      readonly kind: "part";
      readonly partNumber: number;
      readonly partStart: number;
      readonly from: number;
      readonly bytes: Uint8Array;
    };

export type FragmentDecision =
  /** Nothing new (a duplicate, or everything already held): 200 with the current offset. */
  | { readonly kind: "held"; readonly offset: number }
  /** The fragment starts past the offset: 416 with the offset ([MC-BUP] 3.2.5.2.6). */
  | { readonly kind: "gap"; readonly offset: number }
  /** New bytes: write them, then record `offset`. */
  | {
      readonly kind: "accept";
      readonly total: number;
      readonly partSize: number;
      readonly offset: number;
      readonly writes: readonly Write[];
    };

/**
 * The Fragment acceptance algorithm of bits-protocol.md 5.2 (docs reading, Project decisions):
 * in order is written; the new tail of an overlap is written; a fragment wholly below the
 * offset writes nothing; a gap is 416. Throws `BitsError` for a changed total (400), a total
 * above the maximum (BG_E_TOO_LARGE) and a body above the per-request maximum (413).
 */
export function planFragment(
  session: Pick<SessionRecord, "offset" | "total" | "partSize">,
  range: ContentRange,
  body: Uint8Array,
  limits: FragmentLimits,
): FragmentDecision {
  if (session.total !== undefined && range.total !== session.total) {
    throw invalidArg("total length changed ([MC-BUP] 2.2.1.2)");
  }
  if (range.total > limits.maxUploadBytes) {
    throw new BitsError("tooLarge", "file above the maximum upload size");
  }
  if (body.length > limits.maxFragmentBytes) {
    throw new BitsError("fragmentTooLarge", "fragment above the per-request maximum");
  }
  const total = range.total;
  const partSize = session.partSize ?? partSizeFor(total, limits.partSize);
  const offset = session.offset;
  if (range.first > offset) return { kind: "gap", offset };
  const end = range.last + 1;
  if (end <= offset) {
    // Already held. A first fragment of an empty file still fixes the total.
    if (session.total === undefined) return { kind: "accept", total, partSize, offset, writes: [] };
    return { kind: "held", offset };
  }
  const writes: Write[] = [];
  let position = offset;
  while (position < end) {
    const partNumber = Math.floor(position / partSize) + 1;
    const part = partBounds(partNumber, partSize, total);
    const slice = body.subarray(position - range.first, Math.min(end, part.end) - range.first);
    if (end >= part.end) {
      writes.push({
        kind: "part",
        partNumber,
        partStart: part.start,
        from: position,
        bytes: slice,
      });
      position = part.end;
    } else {
      writes.push({ kind: "stage", start: position, end, bytes: slice });
      position = end;
    }
  }
  return { kind: "accept", total, partSize, offset: end, writes };
}
