/**
 * The session record: everything the server keeps between requests ([MC-BUP] 3.2.1.4, 3.2.5.1).
 *
 * - `open`: receiving fragments (RECEIVE_FRAGMENTS / WAIT_FOR_CLOSE).
 * - `committing`: a Close-Session found every byte and decided to complete the upload; any
 *   handler that finds this state finishes the completion (it is retry-safe).
 * - `discarding`: a Close-Session before the last byte, or a Cancel-Session, decided to throw the
 *   upload away; any handler that finds this state finishes the discard.
 * - `closed` / `cancelled`: tombstones, so repeats answer 200 (docs/protocol.md, "Repeated
 *   Close/Cancel and tombstones").
 *
 * The decision is written before any S3 work, so a fragment racing the end of its session reads
 * the decision and cannot change what the session ends with.
 */
export type SessionStatus = "open" | "committing" | "discarding" | "closed" | "cancelled";

export type EndingStatus = "committing" | "discarding";

export interface Notify {
  readonly type: "reference" | "value";
  /** Where: an absolute http(s) URL or `lambda:<name>`. */
  readonly target: string;
  /** The job's remote URL, absolute (`BITS-Original-Request-URL`). */
  readonly originalUrl: string;
  /** An unguessable part of the reply URL: the reply's bearer secret where no login is asked. */
  readonly token: string;
}

export interface SessionRecord {
  readonly id: string;
  readonly status: SessionStatus;
  /** Destination object key. Packets on another URL do not reach the session. */
  readonly key: string;
  /**
   * Who created the session: packets from anyone else are answered as for an unknown session,
   * so a session ID is worth nothing to another client (docs/security.md, Authorization).
   */
  readonly principal: string;
  /** The counter this open session occupies (docs/security.md, "Caps"). */
  readonly slot: string;
  /** Whether completing may replace an existing object; decided at Create-Session. */
  readonly overwrite: boolean;
  /**
   * Largest total this session accepts (the server's limit, or a signed URL's lower one);
   * undefined only in records written before the field, which take the server's limit.
   */
  readonly maxBytes?: number | undefined;
  /** Fragments that wrote something; bounded relative to the file's size. */
  readonly fragments: number;
  /** How the principal authenticated: a reply is fetched with the same proof (docs/upload-reply.md). */
  readonly auth?: string | undefined;
  /**
   * Upload-reply sessions only ([MC-BUP] 1.3.3): the application to notify once the last byte
   * has arrived, decided at Create-Session. The file is then uploaded to `requestKey`, not to
   * `key`, which it reaches only if the application asks for it.
   */
  readonly notify?: Notify | undefined;
  /** The multipart upload's key when it is not `key` (upload-reply: the request object). */
  readonly requestKey?: string | undefined;
  /** Set once the application has answered: the Ack of every later final fragment repeats it. */
  readonly reply?: { readonly url: string; readonly copied: boolean } | undefined;
  /** Epoch ms until which one handler is notifying: concurrent copies wait for its answer. */
  readonly notifyingUntil?: number | undefined;
  /** The S3 multipart upload that receives the file. */
  readonly uploadId: string;
  /** Total length from the first Fragment's Content-Range; undefined before it. */
  readonly total?: number | undefined;
  /** Bytes held in recorded parts: the open part starts here (DynamoDB attribute `pe`). */
  readonly bytesInParts: number;
  /**
   * Where the open part (the one being gathered) ends; decided when the previous part was
   * recorded (undefined before the first fragment), so every writer that reads this version
   * uploads the same part (DynamoDB attribute `npe`).
   */
  readonly openPartEnd?: number | undefined;
  /**
   * The open part's builder, while that part is too large to assemble in one request
   * (docs/large-files.md): undefined for a part assembled whole (DynamoDB attribute `bld`).
   */
  readonly builder?: PartBuilder | undefined;
  /** Contiguous bytes durably held from byte 0: `E` in docs/protocol.md, "Fragments and offsets" */
  readonly offset: number;
  /**
   * Part entries (`partEntry` in crc32c.ts: an ETag and the part's CRC32C) of recorded parts not
   * yet sealed into part chunks, in part order.
   */
  readonly etags: readonly string[];
  /**
   * CRC32C of bytes [0, offset) as the client sent them in request bodies (docs/checksums.md).
   * Undefined in records written before checksums were kept: then nothing is verified.
   */
  readonly receivedCrc32c?: number | undefined;
  /**
   * CRC32C of bytes [0, bytesInParts) as uploaded in the recorded parts. At completion it must equal
   * `receivedCrc32c`: every byte received went into a part unchanged (docs/checksums.md).
   */
  readonly partsCrc32c?: number | undefined;
  /** Number of sealed chunks of `PART_CHUNK` ETags kept beside the record. */
  readonly chunks: number;
  /** Incremented by every change; the condition of every write. */
  readonly version: number;
  /** Epoch seconds after which the record counts as gone ([MC-BUP] 3.2.6.1). */
  readonly expiresAt: number;
  /** When Create-Session stored the record, epoch ms (undefined in older records). */
  readonly createdAt?: number | undefined;
  /** The client's address at Create-Session, as the audit line names it. */
  readonly client?: string | undefined;
  /** Body bytes of the fragments that were recorded, overlapping resends included. */
  readonly bytesReceived?: number | undefined;
  /** How the session ended: set in the write that makes it a tombstone (docs/events.md). */
  readonly outcome?: SessionOutcome | undefined;
  /**
   * Why a `discarding` session is thrown away (a client's Cancel, an operator's, a Close before
   * the last byte): set with the decision, so a fragment that lands before the tombstone is
   * told the same reason as one that lands after it (DynamoDB attribute `er`).
   */
  readonly endingReason?: string | undefined;
}

/**
 * A part too large to assemble in one request is built as pieces: the parts of a multipart
 * upload of its own (the builder), under the session's staging prefix. When its last piece is
 * uploaded the builder is completed and its object copied into the part, inside S3
 * (docs/large-files.md).
 */
export interface PartBuilder {
  /** The builder's multipart upload; undefined until its first piece is written. */
  readonly uploadId?: string | undefined;
  /** Where the recorded pieces end: the open piece starts here. */
  readonly bytesInPieces: number;
  /** Where the open piece ends; decided when the piece before it was recorded. */
  readonly openPieceEnd: number;
  /** Entries (crc32c.ts `partEntry`) of the recorded pieces, in order. */
  readonly pieces: readonly string[];
  /** CRC32C of [bytesInParts, bytesInPieces) as uploaded in the pieces; undefined without checksums. */
  readonly piecesCrc32c?: number | undefined;
}

/**
 * The four endings a completion event announces (docs/events.md): the object was stored; the
 * client cancelled, or closed before the last byte; nobody ended the session before its
 * timeout ([MC-BUP] 3.2.6.1); or the server had to abandon it.
 */
export type OutcomeKind = "completed" | "cancelled" | "expired" | "failed";

export interface SessionOutcome {
  readonly kind: OutcomeKind;
  /** Epoch ms when the ending was decided. */
  readonly at: number;
  /** Why, in a few words, for cancelled, expired and failed sessions. */
  readonly reason?: string | undefined;
  /** The stored object's version, where the bucket keeps versions. */
  readonly versionId?: string | undefined;
  /** The stored object's full-object CRC32C, base64 as S3 writes it (docs/checksums.md). */
  readonly crc32c?: string | undefined;
  /** Who checked that checksum against the bytes received: S3 itself, or only the server. */
  readonly verifiedBy?: "s3" | "server" | undefined;
}

/**
 * ETags per sealed chunk. Keeping only the unsealed tail in the session record bounds its size
 * (about 1 KB) whatever the number of parts, far from DynamoDB's 400 KB item limit, and keeps
 * every per-fragment write small.
 */
export const PART_CHUNK = 32;

/** An expired record counts as unknown even before DynamoDB's TTL removes it. */
export function isLive(record: SessionRecord | undefined, nowSeconds: number) {
  return record !== undefined && record.expiresAt > nowSeconds;
}

export function isComplete(record: SessionRecord): boolean {
  return record.total !== undefined && record.offset === record.total;
}

export function recordedParts(record: SessionRecord): number {
  return record.chunks * PART_CHUNK + record.etags.length;
}

export function isEnded(record: SessionRecord): boolean {
  return record.status === "closed" || record.status === "cancelled";
}

/**
 * What Close-Session or Cancel-Session decides for an open session: Close commits a complete
 * file ([MC-BUP] 3.2.5.2.7) and discards a partial one, which is never committed
 * (docs/protocol.md, "Ending a session: Close and Cancel"); Cancel discards ([MC-BUP] 3.2.5.2.8).
 * A session already ending keeps its decision: a Cancel after the last byte and a Close has no
 * effect.
 */
export function endingFor(record: SessionRecord, packet: "close" | "cancel"): EndingStatus {
  if (record.status === "committing" || record.status === "discarding") return record.status;
  // Upload-reply: the file was handed over when the application answered; Close keeps that.
  const done = record.notify ? record.reply !== undefined : isComplete(record);
  return packet === "close" && done ? "committing" : "discarding";
}

/** The key of the session's multipart upload. */
export function uploadKey(record: SessionRecord): string {
  return record.requestKey ?? record.key;
}

/** Fragments any file may take, however small: Windows starts at 5 KB and resends on errors. */
export const FRAGMENT_ALLOWANCE_BASE = 64;

/**
 * How many writing fragments a session of `total` bytes may take: a fixed allowance plus
 * `perMiB` per MiB. Windows never sends fragments below 5 KB except the last ([MC-BUP] note
 * <10>), so 512 per MiB (2 KiB each on average) leaves room for resends and shrinking after
 * 413, while one small file can no longer buy a million S3 PUTs (docs/security.md, Caps).
 */
export function fragmentAllowance(total: number, perMiB: number): number {
  return FRAGMENT_ALLOWANCE_BASE + Math.ceil((total * perMiB) / (1024 * 1024));
}

/**
 * May a session that has written `fragments` fragments write one more, which brings the bytes
 * it holds from byte 0 to `heldAfter`? The allowance follows the bytes received, never the total
 * the client declares: the fixed allowance free, then one fragment per 1 MiB / `perMiB` bytes
 * (2 KiB at the default 512). A client writing slivers is stopped within 66 requests whatever
 * total it declares; a Windows client, whose fragments start at 5 KB and grow, never comes near
 * (docs/security.md, Caps). As `heldAfter` never exceeds the total, this is never more than
 * `fragmentAllowance` of the total.
 */
export function mayWriteFragment(fragments: number, heldAfter: number, perMiB: number): boolean {
  return fragments < fragmentAllowance(heldAfter, perMiB);
}
