export interface ObjectInfo {
  readonly key: string;
  readonly size: number;
}

export interface Head extends ObjectInfo {
  /** The session that wrote the object, from its metadata; undefined for other objects. */
  readonly owner: string | undefined;
  /** The object's version, where the bucket keeps versions. */
  readonly versionId?: string | undefined;
  /** The object's full-object CRC32C (docs/checksums.md); undefined when none is known. */
  readonly checksum?: ObjectChecksum | undefined;
}

/** A whole object's CRC32C, and who vouches for it (docs/checksums.md). */
export interface ObjectChecksum {
  /** Four bytes big-endian, base64: S3's `x-amz-checksum-crc32c`. */
  readonly crc32c: string;
  /**
   * "store": the store computed it from the stored bytes (S3 with checksums). "metadata": the
   * value the server recorded in the object's metadata, where the store keeps no checksum.
   */
  readonly reportedBy: "store" | "metadata";
}

/** A part to complete a multipart upload with. */
export interface UploadedPart {
  readonly etag: string;
  /** The CRC32C the part was uploaded with; undefined for parts uploaded without one. */
  readonly crc32c?: number | undefined;
}

/** A part copied from an object (`copyToPart`). */
export interface CopiedPart {
  readonly etag: string;
  /** The part's CRC32C as the store computed it; undefined where the store reports none. */
  readonly crc32c?: number | undefined;
}

/** How completing a multipart upload turned out. */
export interface Completion {
  readonly result: CompleteResult;
  /** The object's version, where the bucket keeps versions. */
  readonly versionId?: string | undefined;
  /**
   * The full-object CRC32C of the completed object as the store itself reports it, computed
   * from the bytes it holds; undefined where the store reports none (then the expected value
   * was recorded in the object's metadata instead).
   */
  readonly crc32c?: string | undefined;
}

/** What a reply download needs to answer GET and HEAD: a stable validator pair. */
export interface ObjectStat extends ObjectInfo {
  /** The object's ETag as S3 quotes it (`"…"`); it changes whenever the object is rewritten. */
  readonly etag: string;
  /** When the object was written, in whole seconds (S3's Last-Modified resolution). */
  readonly lastModified: Date;
}

/** One page of a listing (`listPage`). */
export interface ObjectPage {
  /** In key order, at most the page size asked for. */
  readonly objects: ObjectInfo[];
  /** The key to list after for the next page; undefined when this page is the last. */
  readonly next?: string | undefined;
}

/** Bytes of an object and its total size. */
export interface ObjectBytes {
  /** The whole object's size, not the length of the stream. */
  readonly size: number;
  readonly stream: ReadableStream<Uint8Array>;
}

/** How a destination object is written. */
export interface WriteOptions {
  /** Replace an existing object; when false, an existing object is left and "exists" answered. */
  readonly overwrite: boolean;
  /** Recorded in the object's metadata, so a repeated write recognises its own object. */
  readonly owner: string;
}

export type CompleteResult =
  | "completed"
  /** Overwrite is off and another object already sits at the key. */
  | "exists"
  /** The multipart upload is gone and its object is not at the key. */
  | "missing"
  /**
   * The parts listed do not match the parts S3 holds, or the object's bytes do not match the
   * expected checksum; completing again cannot help.
   */
  | "invalid";

/** How a multipart upload is completed. */
export interface CompleteOptions extends WriteOptions {
  /**
   * The full-object CRC32C the object must have (docs/checksums.md). A store that checks
   * refuses another ("invalid"); one that does not gets it recorded in the object's metadata.
   */
  readonly crc32c?: number | undefined;
  /** The object's expected size in bytes; another is "invalid", and leaves no object. */
  readonly size?: number | undefined;
}

/** The object to copy from does not exist. */
export class ObjectMissingError extends Error {
  override name = "ObjectMissingError";
}

/**
 * The store received bytes that do not match the checksum sent with them (damaged on the way):
 * nothing was stored, and sending the same bytes again may succeed.
 */
export class ChecksumMismatchError extends Error {
  override name = "ChecksumMismatchError";
}

/** The multipart upload no longer exists (aborted by a lifecycle rule or an operator). */
export class UploadGoneError extends Error {
  override name = "UploadGoneError";
}

/**
 * The object storage the server needs: S3 multipart uploads for the file, plain objects for
 * staged bytes. Vendor errors never cross this interface: besides the errors named here (and a
 * RangeError for arguments out of range), a failing store throws StorageError
 * (storage-error.ts), also from the streams it returns.
 */
export interface ObjectStore {
  head(key: string): Promise<Head | undefined>;
  /**
   * Opens a multipart upload whose object will carry `owner` in its metadata and a full-object
   * CRC32C (docs/checksums.md).
   */
  createUpload(key: string, owner: string): Promise<string>;
  /**
   * Uploads one part; returns its ETag. Re-uploading a part number replaces it. Throws
   * UploadGoneError when the upload no longer exists. With `crc32c`, the part's CRC32C as the
   * caller computed it: a store that checks throws ChecksumMismatchError for other bytes.
   */
  uploadPart(
    key: string,
    uploadId: string,
    partNumber: number,
    body: Uint8Array,
    crc32c?: number,
  ): Promise<string>;
  /**
   * Completes the upload with parts 1..n. Retry-safe: when an earlier call already completed it
   * (the answer was lost), this recognises its own object by its owner and answers "completed".
   */
  completeUpload(
    key: string,
    uploadId: string,
    parts: readonly UploadedPart[],
    options: CompleteOptions,
  ): Promise<Completion>;
  /**
   * Copies the whole object `from` into part `partNumber` of the upload at `key`, inside the
   * store (S3's UploadPartCopy): no byte passes through the caller, whatever the size (up to
   * 5 GiB). Re-copying a part number replaces it. Returns the part's ETag, and its CRC32C where
   * the store reports one. Throws UploadGoneError when the upload no longer exists and
   * ObjectMissingError when `from` does not.
   */
  copyToPart(from: string, key: string, uploadId: string, partNumber: number): Promise<CopiedPart>;
  /** Aborts the upload; an upload already gone is fine. */
  abortUpload(key: string, uploadId: string): Promise<void>;
  /**
   * Writes a destination object whole, with its CRC32C (checked by a store that checks, and
   * recorded in its metadata); retry-safe like completeUpload.
   */
  putObject(key: string, body: Uint8Array, options: WriteOptions): Promise<"stored" | "exists">;
  /**
   * Writes a temporary object (a staged fragment, a reply), replacing any object at the key,
   * with no owner: unlike `putObject`, never a destination. `crc`, when the caller already has
   * the body's CRC32C, spares computing it again; a store that checks refuses a body that does
   * not match it (ChecksumMismatchError).
   */
  putStaged(key: string, body: Uint8Array, crc?: number): Promise<void>;
  /** Every byte of an object, in memory (staged fragments); undefined when it is missing. */
  get(key: string): Promise<Uint8Array | undefined>;
  /** Streams an object (the dev server's GET). */
  readStream(
    key: string,
  ): Promise<{ size: number; stream: ReadableStream<Uint8Array> } | undefined>;
  /** Every object under `prefix`, in key order. */
  list(prefix: string): Promise<ObjectInfo[]>;
  /**
   * One page of the objects under `prefix`, in key order (S3's: by UTF-8 bytes): at most `max`
   * (default and upper bound 1000, S3's), all after the key `after` when given. The page's
   * `next` resumes the listing, in this process or a later one (docs/cleanup.md).
   */
  listPage(
    prefix: string,
    options?: { after?: string | undefined; max?: number | undefined },
  ): Promise<ObjectPage>;
  /** Deletes objects; missing ones are fine. */
  delete(keys: readonly string[]): Promise<void>;
  /** Size, ETag and Last-Modified of an object; undefined when it is missing. */
  stat(key: string): Promise<ObjectStat | undefined>;
  /**
   * Streams bytes `start..end` inclusive (one HTTP byte range). Needs `0 <= start <= end`; an
   * `end` past the last byte is clamped to it. Undefined when the object is missing; throws a
   * RangeError when `start` is not inside the object (a zero-byte object has no range).
   */
  readRange(key: string, start: number, end: number): Promise<ObjectBytes | undefined>;
  /**
   * Copies a whole object to `to` inside the store (no bytes pass through the caller), writing
   * it like putObject: `owner` recorded, and with overwrite off an existing object left alone
   * ("exists"), unless it is our own ("stored", retry-safe). Throws ObjectMissingError when
   * `from` does not exist.
   */
  copy(from: string, to: string, options: WriteOptions): Promise<"stored" | "exists">;
  /**
   * A URL that lets its holder GET or PUT the object at `key` without credentials, for
   * `seconds` (1 to 604800, S3's limit for SigV4; RangeError outside). A PUT through it writes
   * like `put`: no owner, replacing any object. The in-memory store's `memory://` URLs only
   * name what was signed; no HTTP client can fetch them.
   */
  presign(key: string, method: "GET" | "PUT", seconds: number): Promise<string>;
}

/** S3's limit for a presigned SigV4 URL: seven days. */
export const MAX_PRESIGN_SECONDS = 604_800;
