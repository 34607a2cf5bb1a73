import { MiB, S3_MAX_PARTS, S3_MIN_PART_SIZE } from "./constants.ts";
import { BitsError, invalidArg } from "./errors.ts";
import type { ContentRange } from "./range.ts";
import { recordedParts, type SessionRecord } from "./session.ts";

export interface FragmentLimits {
  /** Largest body one request may carry; above it the client is told to shrink (413). */
  readonly maxFragmentBytes: number;
  /** Largest file accepted; above it BG_E_TOO_LARGE. */
  readonly maxUploadBytes: number;
  /** Preferred part size for small fragments; raised for big files to fit 10,000 parts. */
  readonly partSize: number;
  /**
   * The largest part one request assembles from staged bytes. A larger part is built from
   * pieces of at most this size and copied into place (docs/large-files.md). Unset: every part
   * is assembled whole, however large.
   */
  readonly maxAssembledBytes?: number | undefined;
  /** S3's part count limit, 10,000; smaller only in tests, to reach big-file behaviour fast. */
  readonly maxParts?: number | undefined;
  /** S3's smallest part but the last, 5 MiB; smaller only in tests. */
  readonly minPartBytes?: number | undefined;
}

/** S3's multipart geometry, as the limits give it. */
interface Geometry {
  readonly maxParts: number;
  readonly minPartBytes: number;
}

const S3_GEOMETRY: Geometry = { maxParts: S3_MAX_PARTS, minPartBytes: S3_MIN_PART_SIZE };

function geometryOf(limits: FragmentLimits): Geometry {
  return {
    maxParts: limits.maxParts ?? S3_MAX_PARTS,
    minPartBytes: limits.minPartBytes ?? S3_MIN_PART_SIZE,
  };
}

/**
 * Smallest part size for a file of `total` bytes that is at least `preferred`: raised to whole
 * MiB until the file fits in S3's 10,000 parts (a 5 TiB object needs 525 MiB parts).
 */
export function partSizeFor(total: number, preferred: number, geometry = S3_GEOMETRY): number {
  const { maxParts, minPartBytes } = geometry;
  // Whole MiB on S3; scaled-down limits in tests keep whole bytes.
  const grain = minPartBytes >= MiB ? MiB : 1;
  const needed = Math.ceil(Math.ceil(total / maxParts) / grain) * grain;
  return Math.max(preferred, needed, minPartBytes);
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
  /** S3's part limits; scaled down only in tests. */
  readonly geometry?: Geometry | undefined;
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
  const geometry = part.geometry ?? S3_GEOMETRY;
  const minimum = partSizeFor(total, geometry.minPartBytes, geometry);
  const target = Math.max(
    minimum,
    fragmentLength >= geometry.minPartBytes
      ? fragmentLength
      : partSizeFor(total, preferredPartSize, geometry),
  );
  return alignedEnd(partStart, fragmentEnd, fragmentLength, target, total);
}

/**
 * The first end at least `target` past `start` that a client keeping its fragment length
 * reaches at a fragment's end (at least one fragment past `fragmentEnd`), capped at `limit`.
 */
function alignedEnd(
  start: number,
  fragmentEnd: number,
  fragmentLength: number,
  target: number,
  limit: number,
): number {
  const staged = fragmentEnd - start;
  const fragments = Math.max(1, Math.ceil((target - staged) / fragmentLength));
  return Math.min(limit, fragmentEnd + fragments * fragmentLength);
}

/** What decides where the piece after a just-completed one ends, inside a built part. */
export interface FollowingPiece {
  /** Where it starts: the end of the piece (or part) just completed. */
  readonly pieceStart: number;
  /** The end of the part it belongs to. */
  readonly partEnd: number;
  /** Where the completing fragment ended, and its length; undefined when no fragment decides. */
  readonly fragmentEnd?: number | undefined;
  readonly fragmentLength?: number | undefined;
  readonly preferredPartSize: number;
  readonly maxAssembledBytes: number;
  readonly geometry: Geometry;
}

/**
 * Where the piece starting at `pieceStart` ends: like a part (followingPartEnd), aligned with
 * the fragments of a client keeping its length and at least S3's minimum part size, but never
 * more than `maxAssembledBytes` long, so that no request reads back more than one piece, and
 * never past its part's end. The last piece of a part may be short: it is the last part of the
 * builder's multipart upload.
 */
export function followingPieceEnd(piece: FollowingPiece): number {
  const { pieceStart, partEnd, fragmentEnd, fragmentLength, maxAssembledBytes } = piece;
  const { minPartBytes } = piece.geometry;
  const cap = Math.min(partEnd, pieceStart + maxAssembledBytes);
  const preferred = Math.min(maxAssembledBytes, Math.max(minPartBytes, piece.preferredPartSize));
  if (fragmentEnd === undefined || fragmentLength === undefined || fragmentLength <= 0) {
    return Math.min(cap, pieceStart + preferred);
  }
  const target = fragmentLength >= minPartBytes ? fragmentLength : preferred;
  return Math.min(cap, alignedEnd(pieceStart, fragmentEnd, fragmentLength, target, partEnd));
}

/**
 * One storage write that accepting a fragment needs. A part's (and a piece's) bounds come from
 * the session record as read, never from the fragment, so the bytes of a part never depend on
 * how a particular request was cut: two writers racing on the same part write the same bytes.
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
    }
  /**
   * Piece `pieceNumber` of part `partNumber`, a part too large to assemble in one request:
   * staged bytes [pieceStart, from) followed by `bytes`, uploaded as a part of the part's
   * builder upload (docs/large-files.md).
   */
  | {
      readonly kind: "piece";
      readonly partNumber: number;
      readonly pieceNumber: number;
      readonly pieceStart: number;
      readonly from: number;
      readonly bytes: Uint8Array;
    }
  /**
   * Every piece of part `partNumber`, [partStart, partEnd), is uploaded: complete the builder
   * and copy its object into the part, inside the store.
   */
  | {
      readonly kind: "seal";
      readonly partNumber: number;
      readonly partStart: number;
      readonly partEnd: number;
    };

/** Where the pieces of the open part stand, when it is built from pieces. */
export interface PieceBounds {
  /** Where the recorded pieces end: the open piece starts here. */
  readonly bytesInPieces: number;
  /** Where the open piece ends. */
  readonly openPieceEnd: number;
}

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
      /** The open part's pieces after the writes; undefined when it is assembled whole. */
      readonly pieces?: PieceBounds | undefined;
      readonly writes: readonly Write[];
    };

export type PlanState = Pick<SessionRecord, "offset" | "total" | "bytesInParts" | "openPartEnd"> & {
  /** Parts recorded so far: the next part's number is one more. */
  readonly parts: number;
  /** The open part's recorded pieces, when it is built from pieces. */
  readonly pieces?: (PieceBounds & { readonly count: number }) | undefined;
};

/** What the planner reads of a session record: the one translation from record to plan. */
export function planStateOf(record: SessionRecord): PlanState {
  const { offset, total, bytesInParts, openPartEnd, builder } = record;
  return {
    offset,
    total,
    bytesInParts,
    openPartEnd,
    parts: recordedParts(record),
    pieces: builder && {
      bytesInPieces: builder.bytesInPieces,
      openPieceEnd: builder.openPieceEnd,
      count: builder.pieces.length,
    },
  };
}

/**
 * The limits one session's fragments are planned with: a signed URL may allow less than the
 * server does; records older than that field (`maxBytes` 0), the server's maximum.
 */
export function limitsFor(record: SessionRecord, limits: FragmentLimits): FragmentLimits {
  // A signed URL may allow less than the server does (0 is 0); records older than that field
  // have none and take the server's limit.
  return { ...limits, maxUploadBytes: record.maxBytes ?? limits.maxUploadBytes };
}

/**
 * The Fragment acceptance of docs/protocol.md, "Fragments and offsets" ([MC-BUP] 3.2.5.2.6, read
 * as the Windows docs describe it): in order is written; the new tail of an overlap is written;
 * a fragment wholly below the offset writes nothing; a gap is 416. Throws `BitsError` for a
 * changed total (400), a total above the maximum (BG_E_TOO_LARGE) and a body above the
 * per-request maximum (413).
 *
 * New bytes that complete the open unit (the open part, or the open piece of a part too large
 * to assemble) are uploaded with the unit's staged head; the rest is staged. The fragment that
 * reaches the total uploads every unit left, so that every byte is in a part before
 * Close-Session. Only the first unit a fragment completes has a staged head: the units after it
 * lie inside the fragment, so no request reads back more than one unit.
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
  const geometry = geometryOf(limits);
  const cursor = new Cursor(session, total, limits, geometry);
  if (range.first > offset) return { kind: "gap", offset };
  const end = range.last + 1;
  if (end <= offset) {
    // Already held. A first fragment of an empty file still fixes the total.
    if (session.total !== undefined) return { kind: "held", offset };
    return { kind: "accept", total, offset, ...cursor.bounds(), writes: [] };
  }
  const slice = (from: number, to: number) => body.subarray(from - range.first, to - range.first);
  const fragment = { end, length: end - range.first };
  const writes: Write[] = [];
  let from = offset;
  while (from < end) {
    const unitEnd = cursor.unitEnd();
    if (end < unitEnd) {
      writes.push({ kind: "stage", start: from, end, bytes: slice(from, end) });
      break;
    }
    writes.push(...cursor.complete(from, slice(from, unitEnd), fragment));
    from = unitEnd;
  }
  return { kind: "accept", total, offset: end, ...cursor.bounds(), writes };
}

/** The open part (and piece) as a fragment's writes move them on. */
class Cursor {
  private bytesInParts: number;
  private openPartEnd: number;
  private parts: number;
  private pieces: (PieceBounds & { count: number }) | undefined;

  constructor(
    session: PlanState,
    private readonly total: number,
    private readonly limits: FragmentLimits,
    private readonly geometry: Geometry,
  ) {
    this.bytesInParts = session.bytesInParts;
    this.parts = session.parts;
    // Before any part is decided, the first one follows the preferred size: it cannot depend
    // on a fragment, which racing writers may have cut differently.
    this.openPartEnd =
      session.openPartEnd ?? Math.min(total, partSizeFor(total, limits.partSize, geometry));
    this.pieces = session.pieces ? { ...session.pieces } : this.piecesOfOpenPart();
  }

  bounds() {
    const { bytesInParts, openPartEnd, pieces } = this;
    return {
      bytesInParts,
      openPartEnd,
      pieces: pieces && { bytesInPieces: pieces.bytesInPieces, openPieceEnd: pieces.openPieceEnd },
    };
  }

  /** Where the unit being gathered ends: the open piece, or the open part. */
  unitEnd(): number {
    return this.pieces?.openPieceEnd ?? this.openPartEnd;
  }

  /** The writes that complete the open unit with `bytes`, which run from `from` to its end. */
  complete(from: number, bytes: Uint8Array, fragment: { end: number; length: number }): Write[] {
    const partNumber = this.parts + 1;
    const pieces = this.pieces;
    if (pieces === undefined) {
      const part: Write = { kind: "part", partNumber, partStart: this.bytesInParts, from, bytes };
      this.nextPart(fragment);
      return [part];
    }
    const piece: Write = {
      kind: "piece",
      partNumber,
      pieceNumber: pieces.count + 1,
      pieceStart: pieces.bytesInPieces,
      from,
      bytes,
    };
    if (pieces.openPieceEnd < this.openPartEnd) {
      const bytesInPieces = pieces.openPieceEnd;
      this.pieces = {
        count: pieces.count + 1,
        bytesInPieces,
        openPieceEnd: this.followingPiece(bytesInPieces, fragment),
      };
      return [piece];
    }
    const seal: Write = {
      kind: "seal",
      partNumber,
      partStart: this.bytesInParts,
      partEnd: this.openPartEnd,
    };
    this.nextPart(fragment);
    return [piece, seal];
  }

  /** The part just completed is recorded; the next one opens. */
  private nextPart(fragment: { end: number; length: number }) {
    const partStart = this.openPartEnd;
    this.bytesInParts = partStart;
    this.parts += 1;
    this.openPartEnd = followingPartEnd({
      partStart,
      fragmentEnd: fragment.end,
      fragmentLength: fragment.length,
      total: this.total,
      preferredPartSize: this.limits.partSize,
      geometry: this.geometry,
    });
    this.pieces = this.piecesOfOpenPart(fragment);
  }

  /** Whether the open part is too large to assemble in one request. */
  private built(): boolean {
    const max = this.limits.maxAssembledBytes;
    return max !== undefined && this.openPartEnd - this.bytesInParts > max;
  }

  /**
   * No pieces yet of the open part, when it is built from them: the first piece's end, set by
   * the fragment that opened the part (or by the limits alone, when none did).
   */
  private piecesOfOpenPart(fragment?: { end: number; length: number }) {
    if (!this.built()) return undefined;
    const start = this.bytesInParts;
    return { count: 0, bytesInPieces: start, openPieceEnd: this.followingPiece(start, fragment) };
  }

  private followingPiece(pieceStart: number, fragment?: { end: number; length: number }) {
    return followingPieceEnd({
      pieceStart,
      partEnd: this.openPartEnd,
      fragmentEnd: fragment?.end,
      fragmentLength: fragment?.length,
      preferredPartSize: this.limits.partSize,
      // A piece but the last is at least S3's minimum part size, whatever the bound says.
      maxAssembledBytes: Math.max(
        this.limits.maxAssembledBytes ?? Number.POSITIVE_INFINITY,
        this.geometry.minPartBytes,
      ),
      geometry: this.geometry,
    });
  }
}
