export interface ObjectInfo {
  readonly key: string;
  readonly size: number;
}

export interface Head extends ObjectInfo {
  /** The session that wrote the object, from its metadata; undefined for other objects. */
  readonly owner: string | undefined;
}

/** What a reply download needs to answer GET and HEAD: a stable validator pair. */
export interface ObjectStat extends ObjectInfo {
  /** The object's ETag as S3 quotes it (`"…"`); it changes whenever the object is rewritten. */
  readonly etag: string;
  /** When the object was written, in whole seconds (S3's Last-Modified resolution). */
  readonly lastModified: Date;
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
  /** The parts listed do not match the parts S3 holds; completing again cannot help. */
  | "invalid";

/** The object to copy from does not exist. */
export class ObjectMissingError extends Error {
  override name = "ObjectMissingError";
}

/** The multipart upload no longer exists (aborted by a lifecycle rule or an operator). */
export class UploadGoneError extends Error {
  override name = "UploadGoneError";
}

/**
 * The object storage the server needs: S3 multipart uploads for the file, plain objects for
 * staged bytes. Vendor errors never cross this interface.
 */
export interface ObjectStore {
  head(key: string): Promise<Head | undefined>;
  /** Opens a multipart upload whose object will carry `owner` in its metadata. */
  createUpload(key: string, owner: string): Promise<string>;
  /**
   * Uploads one part; returns its ETag. Re-uploading a part number replaces it. Throws
   * UploadGoneError when the upload no longer exists.
   */
  uploadPart(key: string, uploadId: string, partNumber: number, body: Uint8Array): Promise<string>;
  /**
   * Completes the upload with parts 1..n. Retry-safe: when an earlier call already completed it
   * (the answer was lost), this recognises its own object by its owner and answers "completed".
   */
  completeUpload(
    key: string,
    uploadId: string,
    etags: readonly string[],
    options: WriteOptions,
  ): Promise<CompleteResult>;
  /** Aborts the upload; an upload already gone is fine. */
  abortUpload(key: string, uploadId: string): Promise<void>;
  /** Writes a destination object whole; retry-safe like completeUpload. */
  putObject(key: string, body: Uint8Array, options: WriteOptions): Promise<"stored" | "exists">;
  /** Writes a staged object, replacing any object at the key. */
  put(key: string, body: Uint8Array): Promise<void>;
  get(key: string): Promise<Uint8Array | undefined>;
  /** Streams an object (the dev server's GET). */
  read(key: string): Promise<{ size: number; stream: ReadableStream<Uint8Array> } | undefined>;
  /** Every object under `prefix`, in key order. */
  list(prefix: string): Promise<ObjectInfo[]>;
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
