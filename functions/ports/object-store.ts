export interface ObjectInfo {
  readonly key: string;
  readonly size: number;
}

export type CompleteResult =
  | "completed"
  /** Overwrite is off and another object already sits at the key. */
  | "exists"
  /** The multipart upload is gone and its object is not at the key. */
  | "missing";

/**
 * The object storage the server needs: S3 multipart uploads for the file, plain objects for
 * staged bytes. Vendor errors never cross this interface.
 */
export interface ObjectStore {
  head(key: string): Promise<ObjectInfo | undefined>;
  createUpload(key: string): Promise<string>;
  /** Uploads one part; returns its ETag. Re-uploading a part number replaces it. */
  uploadPart(key: string, uploadId: string, partNumber: number, body: Uint8Array): Promise<string>;
  /**
   * Completes the upload with parts 1..n. Retry-safe: when an earlier call already completed it
   * (the answer was lost), this recognises its own object and answers "completed".
   */
  completeUpload(
    key: string,
    uploadId: string,
    etags: readonly string[],
    overwrite: boolean,
  ): Promise<CompleteResult>;
  /** Aborts the upload; an upload already gone is fine. */
  abortUpload(key: string, uploadId: string): Promise<void>;
  /** Writes a whole object; with overwrite off, answers "exists" instead of replacing one. */
  put(key: string, body: Uint8Array, overwrite: boolean): Promise<"stored" | "exists">;
  get(key: string): Promise<Uint8Array | undefined>;
  /** Streams an object (the dev server's GET). */
  read(key: string): Promise<{ size: number; stream: ReadableStream<Uint8Array> } | undefined>;
  /** Every object under `prefix`, in key order. */
  list(prefix: string): Promise<ObjectInfo[]>;
  /** Deletes objects; missing ones are fine. */
  delete(keys: readonly string[]): Promise<void>;
}
