import { MiB, S3_MAX_PARTS, S3_MIN_PART_SIZE } from "./constants.ts";
import { BitsError, invalidArg } from "./errors.ts";
import type { ContentRange } from "./range.ts";
import type { SessionRecord } from "./session.ts";

export interface FragmentLimits {
  /** Largest body one request may carry; above it the client is told to shrink (413). */
  readonly maxFragmentBytes: number;
  /** Largest file accepted; above it BG_E_TOO_LARGE. */
  readonly maxUploadBytes: number;
  /** Preferred part size for small fragments; raised for big files to fit 10,000 parts. */
  readonly partSize: number;
}

/**
 * Smallest part size for a file of `total` bytes that is at least `preferred`: raised to whole
 * MiB until the file fits in S3's 10,000 parts (a 5 TiB object needs 525 MiB parts).
 */
export function partSizeFor(total: number, preferred: number): number {
  const needed = Math.ceil(Math.ceil(total / S3_MAX_PARTS) / MiB) * MiB;
  return Math.max(preferred, needed, S3_MIN_PART_SIZE);
}

/** What decides where the part after a just-completed one ends. */
export interface FollowingPart {
  /** Where it starts: the end of the part the fragment completed. */
  readonly partStart: number;
  /** Where the completing fragment ended (bytes past `partStart` are already staged). */
  readonly fragmentEnd: number;
  /** That fragment's length: a client keeping its fragment size sends more of the same. */
  readonly fragmentLength: number;
  /** The file's length. */
  readonly total: number;
  /** The server's preferred part size for small fragments. */
  readonly preferredPartSize: number;
}

/**
 * Where the part starting at `partStart` ends, decided by the fragment that completed the part
 * before it: aligned with that fragment's end and length, so that a client keeping its fragment
 * size completes each following part exactly at a fragment's end. With fragments of 5 MiB or
 * more a part is one fragment, uploaded straight from the request; smaller fragments are
 * gathered into parts of about the preferred size. Every part but the last is at least
 * `partSizeFor(total)`, so the file fits in 10,000 parts.
 */
export function followingPartEnd(part: FollowingPart): number {
  const { partStart, fragmentEnd, fragmentLength, total, preferredPartSize } = part;
  const minimum = partSizeFor(total, S3_MIN_PART_SIZE);
  const target = Math.max(
    minimum,
    fragmentLength >= S3_MIN_PART_SIZE ? fragmentLength : partSizeFor(total, preferredPartSize),
  );
  const staged = fragmentEnd - partStart;
  const fragments = Math.max(1, Math.ceil((target - staged) / fragmentLength));
  return Math.min(total, fragmentEnd + fragments * fragmentLength);
}

/**
 * One storage write that accepting a fragment needs. A part's bounds come from the session
 * record as read, never from the fragment, so the bytes of a part never depend on how a
 * particular request was cut: two writers racing on the same part write the same bytes.
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
  /** New bytes: write them, then record the new offset and part bounds. */
  | {
      readonly kind: "accept";
      readonly total: number;
      readonly offset: number;
      /** The record's `bytesInParts` after the writes: where the recorded parts end. */
      readonly bytesInParts: number;
      /** The record's `openPartEnd` after the writes: where the open part will end. */
      readonly openPartEnd: number;
      readonly writes: readonly Write[];
    };

type PlanState = Pick<SessionRecord, "offset" | "total" | "bytesInParts" | "openPartEnd"> & {
  /** Parts recorded so far: the next part's number is one more. */
  readonly parts: number;
};

/**
 * The Fragment acceptance of docs/protocol.md, "Fragments and offsets" ([MC-BUP] 3.2.5.2.6, read
 * as the Windows docs describe it): in order is written; the new tail of an overlap is written;
 * a fragment wholly below the offset writes nothing; a gap is 416. Throws `BitsError` for a
 * changed total (400), a total above the maximum (BG_E_TOO_LARGE) and a body above the
 * per-request maximum (413).
 *
 * New bytes that complete the next part (whose end the record holds) are uploaded with the
 * part's staged head; the rest is staged. The fragment that reaches the total also uploads the
 * last part, so that every byte is in a part before Close-Session.
 */
export function planFragment(
  session: PlanState,
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
  const offset = session.offset;
  // The open part: the one being gathered now, from the end of the recorded parts to the end
  // the record holds. Before any part is decided, the first one follows the preferred size: it
  // cannot depend on a fragment, which racing writers may have cut differently.
  const openPartStart = session.bytesInParts;
  const openPartEnd = session.openPartEnd ?? Math.min(total, partSizeFor(total, limits.partSize));
  const unchanged = { bytesInParts: openPartStart, openPartEnd: openPartEnd };
  if (range.first > offset) return { kind: "gap", offset };
  const end = range.last + 1;
  if (end <= offset) {
    // Already held. A first fragment of an empty file still fixes the total.
    if (session.total !== undefined) return { kind: "held", offset };
    return { kind: "accept", total, offset, ...unchanged, writes: [] };
  }
  const slice = (from: number, to: number) => body.subarray(from - range.first, to - range.first);
  if (end < openPartEnd) {
    const writes: Write[] = [{ kind: "stage", start: offset, end, bytes: slice(offset, end) }];
    return { kind: "accept", total, offset: end, ...unchanged, writes };
  }
  // The fragment completes the open part: it is uploaded, and the next one opens.
  const writes: Write[] = [
    {
      kind: "part",
      partNumber: session.parts + 1,
      partStart: openPartStart,
      from: offset,
      bytes: slice(offset, openPartEnd),
    },
  ];
  if (end === total && openPartEnd < total) {
    // The last part, [openPartEnd, total): its bounds are the record's too.
    writes.push({
      kind: "part",
      partNumber: session.parts + 2,
      partStart: openPartEnd,
      from: openPartEnd,
      bytes: slice(openPartEnd, total),
    });
    return { kind: "accept", total, offset: end, bytesInParts: total, openPartEnd: total, writes };
  }
  if (end > openPartEnd) {
    writes.push({ kind: "stage", start: openPartEnd, end, bytes: slice(openPartEnd, end) });
  }
  const followingEnd = followingPartEnd({
    partStart: openPartEnd,
    fragmentEnd: end,
    fragmentLength: end - range.first,
    total,
    preferredPartSize: limits.partSize,
  });
  return {
    kind: "accept",
    total,
    offset: end,
    bytesInParts: openPartEnd,
    openPartEnd: followingEnd,
    writes,
  };
}
