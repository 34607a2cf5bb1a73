import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  type HeadObjectCommandOutput,
  ListObjectsV2Command,
  PutObjectCommand,
  type S3Client,
  UploadPartCommand,
  UploadPartCopyCommand,
} from "@aws-sdk/client-s3";
import { getSignedUrl } from "@aws-sdk/s3-request-presigner";
import { crc32c, crc32cBase64, crc32cFromBase64 } from "../../bits/crc32c.ts";
import {
  ChecksumMismatchError,
  type CompleteOptions,
  type Completion,
  type CopiedPart,
  type Head,
  MAX_PRESIGN_SECONDS,
  type ObjectBytes,
  type ObjectInfo,
  ObjectMissingError,
  type ObjectPage,
  type ObjectStat,
  type ObjectStore,
  type UploadedPart,
  UploadGoneError,
  type WriteOptions,
} from "../../ports/object-store.ts";
import { StorageError } from "../../ports/storage-error.ts";
import { translated, translatedStream } from "../storage-failure.ts";
import { md5, sameEtag } from "./etag.ts";
import { type CopyTuning, copyObject, copySource, S3_COPY_LIMITS } from "./s3-copy.ts";

/** User metadata naming the session that wrote an object (`x-amz-meta-bits-session`). */
const OWNER = "bits-session";

/**
 * The object's full-object CRC32C where the store keeps none (`x-amz-meta-bits-crc32c`, base64
 * like S3's own): recorded by the server from the bytes it received (docs/checksums.md).
 */
const CRC32C = "bits-crc32c";

/** Completion failures that repeating cannot fix: the part list does not match S3's parts. */
const INVALID_PARTS = new Set(["InvalidPart", "InvalidPartOrder", "EntityTooSmall"]);

/**
 * S3's answer codes, translated here and never seen past this file. A StorageError from a call
 * made inside this adapter is read as the S3 error it wraps.
 */
function s3Error(error: unknown): { name: string; status: number | undefined; message: string } {
  const e = (error instanceof StorageError ? error.cause : error) as {
    name?: string;
    Code?: string;
    message?: string;
    $metadata?: { httpStatusCode?: number };
  };
  return {
    name: e.Code ?? e.name ?? "",
    status: e.$metadata?.httpStatusCode,
    message: e.message ?? "",
  };
}

/**
 * S3 refusing bytes or a completion because a checksum does not match: BadDigest (a body
 * against its Content-MD5 or x-amz-checksum-*), or InvalidRequest naming the checksum.
 */
function isChecksumRefusal(error: unknown): boolean {
  const { name, message } = s3Error(error);
  return name === "BadDigest" || (name === "InvalidRequest" && /checksum/i.test(message));
}

/** S3 refusing a completion whose parts do not add up to the MpuObjectSize sent. */
function isSizeRefusal(error: unknown): boolean {
  const { name, message } = s3Error(error);
  return name === "InvalidRequest" && /size/i.test(message);
}

/**
 * A full-object CRC32C as S3 reports it; a composite one (`…-3`, a checksum of part checksums)
 * is no checksum of the object's bytes and counts as none.
 */
function fullObjectCrc(value: string | undefined): string | undefined {
  return value !== undefined && crc32cFromBase64(value) !== undefined ? value : undefined;
}

/**
 * Errors that already speak the port (ObjectStore): they leave the adapter as they are; any
 * other becomes a StorageError.
 */
function isPortError(error: unknown): boolean {
  return (
    error instanceof UploadGoneError ||
    error instanceof ChecksumMismatchError ||
    error instanceof ObjectMissingError ||
    error instanceof RangeError
  );
}

function isNotFound(error: unknown): boolean {
  const { name, status } = s3Error(error);
  return name === "NotFound" || name === "NoSuchKey" || status === 404;
}

/**
 * ObjectStore on S3. Give it a client built with `requestChecksumCalculation: "WHEN_REQUIRED"`:
 * every body is sent with the CRC32C the caller computed (or this adapter, for whole objects)
 * instead of the SDK's CRC trailers, and S3 verifies it; only parts of sessions older than
 * checksums carry a Content-MD5 instead. Objects carry a full-object CRC32C (docs/checksums.md).
 */
export class S3ObjectStore implements ObjectStore {
  private readonly tuning: CopyTuning;
  private readonly fauxqsChecksums: boolean;

  /**
   * The copy tuning is for tests: a small `singleCopyLimit` and `copyPartBytes` force multipart
   * copies. `fauxqsChecksums` is the workaround for fauxqs, which keeps no checksums: the
   * CRC32C is recorded in the object's metadata instead (docs/checksums.md). Only the local
   * server running on fauxqs turns it on (functions/wiring.ts); against S3 it is never taken.
   */
  constructor(
    private readonly client: S3Client,
    private readonly bucket: string,
    {
      fauxqsChecksums = false,
      ...tuning
    }: Partial<CopyTuning> & { fauxqsChecksums?: boolean } = {},
  ) {
    this.tuning = { ...S3_COPY_LIMITS, ...tuning };
    this.fauxqsChecksums = fauxqsChecksums;
  }

  /** Every public method runs through this: S3's errors do not cross the port. */
  private translated<T>(operation: string, run: () => Promise<T>): Promise<T> {
    return translated(operation, isPortError, run);
  }

  head(key: string): Promise<Head | undefined> {
    return this.translated("S3 HeadObject", async () => {
      const out = await this.headObject(key);
      return out && headOf(key, out);
    });
  }

  /** HeadObject with the object's checksum; undefined when the object is missing. */
  private async headObject(key: string): Promise<HeadObjectCommandOutput | undefined> {
    try {
      return await this.client.send(
        new HeadObjectCommand({ Bucket: this.bucket, Key: key, ChecksumMode: "ENABLED" }),
      );
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
  }

  createUpload(key: string, owner: string): Promise<string> {
    return this.translated("S3 CreateMultipartUpload", async () => {
      const out = await this.client.send(
        new CreateMultipartUploadCommand({
          Bucket: this.bucket,
          Key: key,
          Metadata: { [OWNER]: owner },
          // A CRC32C of the whole object's bytes, not one of the parts' checksums: anyone can
          // check it against the file with standard tools (docs/checksums.md).
          ChecksumAlgorithm: "CRC32C",
          ChecksumType: "FULL_OBJECT",
        }),
      );
      if (!out.UploadId) throw new Error("CreateMultipartUpload returned no UploadId");
      return out.UploadId;
    });
  }

  uploadPart(key: string, uploadId: string, partNumber: number, body: Uint8Array, crc?: number) {
    return this.translated("S3 UploadPart", async () => {
      const out = await this.client
        .send(
          new UploadPartCommand({
            Bucket: this.bucket,
            Key: key,
            UploadId: uploadId,
            PartNumber: partNumber,
            Body: body,
            ContentLength: body.length,
            // One integrity check per body, which S3 verifies: the part's CRC32C, or for a part of
            // a session older than checksums its MD5 (docs/checksums.md).
            ...(crc === undefined
              ? { ContentMD5: md5(body).toString("base64") }
              : { ChecksumCRC32C: crc32cBase64(crc) }),
          }),
        )
        .catch((error: unknown) => {
          if (s3Error(error).name === "NoSuchUpload") throw new UploadGoneError(uploadId);
          if (isChecksumRefusal(error)) throw new ChecksumMismatchError(`part ${partNumber}`);
          throw error;
        });
      if (!out.ETag) throw new Error("UploadPart returned no ETag");
      return out.ETag;
    });
  }

  completeUpload(
    key: string,
    uploadId: string,
    parts: readonly UploadedPart[],
    { overwrite, owner, crc32c: expected, size }: CompleteOptions,
  ): Promise<Completion> {
    return this.translated("S3 CompleteMultipartUpload", async () => {
      if (!overwrite) {
        // S3 refuses with If-None-Match below; asking first also covers stores that ignore it.
        const existing = await this.headObject(key);
        if (existing !== undefined) {
          if (existing.Metadata?.[OWNER] !== owner) return { result: "exists" };
          return this.completedEarlier(key, existing, owner, expected, size);
        }
      }
      try {
        const out = await this.client.send(
          new CompleteMultipartUploadCommand({
            Bucket: this.bucket,
            Key: key,
            UploadId: uploadId,
            MultipartUpload: {
              Parts: parts.map(({ etag, crc32c }, i) => ({
                ETag: etag,
                PartNumber: i + 1,
                ...(crc32c === undefined ? {} : { ChecksumCRC32C: crc32cBase64(crc32c) }),
              })),
            },
            // S3 computes the object's CRC32C from the parts and refuses the completion when it
            // is not this one (docs/checksums.md).
            ...(expected === undefined
              ? {}
              : { ChecksumCRC32C: crc32cBase64(expected), ChecksumType: "FULL_OBJECT" }),
            ...(size === undefined ? {} : { MpuObjectSize: size }),
            ...(overwrite ? {} : { IfNoneMatch: "*" }),
          }),
        );
        const reported = fullObjectCrc(out.ChecksumCRC32C);
        if (reported !== undefined || expected === undefined || !this.fauxqsChecksums) {
          return { result: "completed", versionId: out.VersionId, crc32c: reported };
        }
        const recorded = await this.recordChecksum(key, out.ETag, owner, expected, size);
        return recorded ?? { result: "completed", versionId: out.VersionId };
      } catch (error) {
        const { name, status } = s3Error(error);
        // InvalidRequest also answers a wrong MpuObjectSize.
        if (INVALID_PARTS.has(name) || isChecksumRefusal(error) || isSizeRefusal(error)) {
          return { result: "invalid" };
        }
        // A lost answer to an earlier, successful completion looks like one of these; so does a
        // conditional write that lost to another (412) or raced one (409).
        if (name === "NoSuchUpload" || status === 412 || status === 409) {
          const head = await this.headObject(key);
          if (head !== undefined && head.Metadata?.[OWNER] === owner) {
            return this.completedEarlier(key, head, owner, expected, size);
          }
          if (name === "NoSuchUpload") return { result: "missing" };
          if (head !== undefined) return { result: "exists" };
        }
        throw error;
      }
    });
  }

  /**
   * A completion found already done (its answer was lost): what the object reports, with the
   * checksum recorded if the earlier call stopped before it could.
   */
  private async completedEarlier(
    key: string,
    head: HeadObjectCommandOutput,
    owner: string,
    expected: number | undefined,
    size: number | undefined,
  ): Promise<Completion> {
    const reported = fullObjectCrc(head.ChecksumCRC32C);
    if (reported !== undefined) {
      return { result: "completed", versionId: head.VersionId, crc32c: reported };
    }
    if (this.fauxqsChecksums && expected !== undefined && head.Metadata?.[CRC32C] === undefined) {
      const recorded = await this.recordChecksum(key, head.ETag, owner, expected, size);
      if (recorded !== undefined) return recorded;
    }
    return { result: "completed", versionId: head.VersionId };
  }

  /**
   * fauxqs only (`fauxqsChecksums`): where the store keeps no checksum, records the expected
   * CRC32C in the completed object's metadata. Metadata is only written with the
   * object, so this is an in-place copy (MetadataDirective REPLACE, owner kept), conditional on
   * the completed object's ETag: an object that has meanwhile replaced ours is left alone.
   * Real S3 reports the checksum and never gets here (docs/checksums.md).
   *
   * Such a store checked nothing, so the size at least is checked here: an object of another
   * size than expected is not the file, and is removed ("invalid"). Answers undefined when the
   * object is no longer the one completed here (nothing to record).
   */
  private async recordChecksum(
    key: string,
    etag: string | undefined,
    owner: string,
    crc: number,
    size: number | undefined,
  ): Promise<Completion | undefined> {
    const head = await this.headObject(key);
    if (head === undefined || head.Metadata?.[OWNER] !== owner || !head.ETag) return undefined;
    if (etag !== undefined && !sameEtag(etag, head.ETag)) return undefined;
    if (size !== undefined && head.ContentLength !== size) {
      await this.delete([key]);
      return { result: "invalid" };
    }
    const request = {
      from: key,
      to: key,
      size: head.ContentLength ?? 0,
      etag: head.ETag,
      metadata: { ...head.Metadata, [OWNER]: owner, [CRC32C]: crc32cBase64(crc) },
      ifNoneMatch: false,
    };
    try {
      const versionId = await copyObject(this.client, this.bucket, request, this.tuning);
      return { result: "completed", versionId: versionId ?? head.VersionId };
    } catch (error) {
      // The object changed under the copy: it is no longer the one completed here.
      if (s3Error(error).status === 412) return undefined;
      throw error;
    }
  }

  copyToPart(from: string, key: string, uploadId: string, partNumber: number): Promise<CopiedPart> {
    return this.translated("S3 UploadPartCopy", async () => {
      const out = await this.client
        .send(
          new UploadPartCopyCommand({
            Bucket: this.bucket,
            Key: key,
            UploadId: uploadId,
            PartNumber: partNumber,
            CopySource: copySource(this.bucket, from),
          }),
        )
        .catch((error: unknown) => {
          const { name } = s3Error(error);
          if (name === "NoSuchUpload") throw new UploadGoneError(uploadId);
          if (name === "NoSuchKey" || isNotFound(error)) throw new ObjectMissingError(from);
          throw error;
        });
      const etag = out.CopyPartResult?.ETag;
      if (!etag) throw new Error("UploadPartCopy returned no ETag");
      // S3 computes the copied part's checksum for an upload that has one (docs/checksums.md).
      return { etag, crc32c: crc32cFromBase64(out.CopyPartResult?.ChecksumCRC32C ?? "") };
    });
  }

  abortUpload(key: string, uploadId: string): Promise<void> {
    return this.translated("S3 AbortMultipartUpload", async () => {
      try {
        await this.client.send(
          new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: key, UploadId: uploadId }),
        );
      } catch (error) {
        if (s3Error(error).name === "NoSuchUpload" || isNotFound(error)) return;
        throw error;
      }
    });
  }

  putObject(
    key: string,
    body: Uint8Array,
    { overwrite, owner }: WriteOptions,
  ): Promise<"stored" | "exists"> {
    return this.translated("S3 PutObject", async () => {
      if (!overwrite) {
        const existing = await this.head(key);
        if (existing !== undefined) return existing.owner === owner ? "stored" : "exists";
      }
      try {
        await this.send(key, body, {
          // Recorded for fauxqs, which keeps no checksum; S3 keeps its own (docs/checksums.md).
          Metadata: {
            [OWNER]: owner,
            ...(this.fauxqsChecksums ? { [CRC32C]: crc32cBase64(crc32c(body)) } : {}),
          },
          ...(overwrite ? {} : { IfNoneMatch: "*" }),
        });
        return "stored";
      } catch (error) {
        if (s3Error(error).status !== 412) throw error;
        return (await this.head(key))?.owner === owner ? "stored" : "exists";
      }
    });
  }

  putStaged(key: string, body: Uint8Array, crc?: number): Promise<void> {
    return this.translated("S3 PutObject", async () => {
      await this.send(key, body, {}, crc);
    });
  }

  private async send(
    key: string,
    body: Uint8Array,
    extra: { Metadata?: Record<string, string>; IfNoneMatch?: string },
    crc = crc32c(body),
  ) {
    await this.client
      .send(
        new PutObjectCommand({
          Bucket: this.bucket,
          Key: key,
          Body: body,
          ContentLength: body.length,
          // S3 checks the body against it and keeps it as the object's checksum (it replaces
          // the Content-MD5 once sent: one pass over the bytes, not two).
          ChecksumCRC32C: crc32cBase64(crc),
          ...extra,
        }),
      )
      .catch((error: unknown) => {
        if (isChecksumRefusal(error)) throw new ChecksumMismatchError(key);
        throw error;
      });
  }

  get(key: string): Promise<Uint8Array | undefined> {
    return this.translated("S3 GetObject", async () => {
      try {
        const out = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }));
        return out.Body ? await out.Body.transformToByteArray() : new Uint8Array(0);
      } catch (error) {
        if (isNotFound(error)) return undefined;
        throw error;
      }
    });
  }

  readStream(key: string) {
    return this.translated("S3 GetObject", async () => {
      try {
        const out = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }));
        if (!out.Body) return undefined;
        const stream = out.Body.transformToWebStream() as ReadableStream<Uint8Array>;
        return { size: out.ContentLength ?? 0, stream: translatedStream("S3 GetObject", stream) };
      } catch (error) {
        if (isNotFound(error)) return undefined;
        throw error;
      }
    });
  }

  list(prefix: string): Promise<ObjectInfo[]> {
    return this.translated("S3 ListObjectsV2", async () => {
      const found: ObjectInfo[] = [];
      let token: string | undefined;
      do {
        const out = await this.client.send(
          new ListObjectsV2Command({
            Bucket: this.bucket,
            Prefix: prefix,
            ...(token ? { ContinuationToken: token } : {}),
          }),
        );
        for (const item of out.Contents ?? []) {
          if (item.Key !== undefined) found.push({ key: item.Key, size: item.Size ?? 0 });
        }
        token = out.IsTruncated ? out.NextContinuationToken : undefined;
      } while (token);
      return found;
    });
  }

  listPage(
    prefix: string,
    { after, max = 1000 }: { after?: string | undefined; max?: number | undefined } = {},
  ): Promise<ObjectPage> {
    return this.translated("S3 ListObjectsV2", async () => {
      // A key to start after, not a continuation token: it stays valid in a later run.
      const out = await this.client.send(
        new ListObjectsV2Command({
          Bucket: this.bucket,
          Prefix: prefix,
          MaxKeys: Math.max(1, Math.min(max, 1000)),
          ...(after === undefined ? {} : { StartAfter: after }),
        }),
      );
      const objects = (out.Contents ?? []).flatMap((item) =>
        item.Key === undefined ? [] : [{ key: item.Key, size: item.Size ?? 0 }],
      );
      const last = objects.at(-1)?.key;
      return { objects, next: out.IsTruncated && last !== undefined ? last : undefined };
    });
  }

  delete(keys: readonly string[]): Promise<void> {
    return this.translated("S3 DeleteObjects", async () => {
      for (let i = 0; i < keys.length; i += 1000) {
        const batch = keys.slice(i, i + 1000);
        const out = await this.client.send(
          new DeleteObjectsCommand({
            Bucket: this.bucket,
            Delete: { Objects: batch.map((Key) => ({ Key })), Quiet: true },
          }),
        );
        const failed = (out.Errors ?? []).filter((e) => e.Code !== "NoSuchKey");
        if (failed.length > 0) throw new Error(`DeleteObjects failed for ${failed.length} keys`);
      }
    });
  }

  stat(key: string): Promise<ObjectStat | undefined> {
    return this.translated("S3 HeadObject", async () => {
      try {
        const out = await this.client.send(
          new HeadObjectCommand({ Bucket: this.bucket, Key: key }),
        );
        if (!out.ETag || !out.LastModified) throw new Error("HeadObject returned no ETag or date");
        return {
          key,
          size: out.ContentLength ?? 0,
          etag: out.ETag,
          lastModified: out.LastModified,
        };
      } catch (error) {
        if (isNotFound(error)) return undefined;
        throw error;
      }
    });
  }

  readRange(key: string, start: number, end: number): Promise<ObjectBytes | undefined> {
    return this.translated("S3 GetObject", async () => {
      checkRange(start, end);
      try {
        const out = await this.client.send(
          new GetObjectCommand({ Bucket: this.bucket, Key: key, Range: `bytes=${start}-${end}` }),
        );
        const size = Number(/\/(\d+)$/.exec(out.ContentRange ?? "")?.[1] ?? Number.NaN);
        if (!out.Body || !Number.isSafeInteger(size)) {
          throw new Error(`GetObject answered a range without its size: ${out.ContentRange}`);
        }
        const stream = out.Body.transformToWebStream() as ReadableStream<Uint8Array>;
        return { size, stream: translatedStream("S3 GetObject", stream) };
      } catch (error) {
        if (isNotFound(error)) return undefined;
        const { name, status } = s3Error(error);
        if (name === "InvalidRange" || status === 416) {
          throw new RangeError(`bytes ${start}-${end} are not inside ${key}`);
        }
        throw error;
      }
    });
  }

  copy(from: string, to: string, { overwrite, owner }: WriteOptions): Promise<"stored" | "exists"> {
    return this.translated("S3 CopyObject", async () => {
      if (!overwrite) {
        const existing = await this.head(to);
        if (existing !== undefined) return existing.owner === owner ? "stored" : "exists";
      }
      const source = await this.headObject(from);
      if (source === undefined) throw new ObjectMissingError(from);
      if (!source.ETag) throw new Error("HeadObject returned no ETag");
      try {
        const size = source.ContentLength ?? 0;
        const request = { from, to, size, etag: source.ETag, ifNoneMatch: !overwrite };
        // A checksum recorded in the source's metadata goes with the bytes.
        const crc = source.Metadata?.[CRC32C];
        const metadata = { [OWNER]: owner, ...(crc === undefined ? {} : { [CRC32C]: crc }) };
        await copyObject(this.client, this.bucket, { ...request, metadata }, this.tuning);
        return "stored";
      } catch (error) {
        const { name, status } = s3Error(error);
        if (name !== "NoSuchUpload" && isNotFound(error)) throw new ObjectMissingError(from);
        // With overwrite off, a 412 or 409 is most likely another write that won the key (a 412
        // can also be the source changing under a multipart copy: then nothing is at the key).
        if (!overwrite && (status === 412 || status === 409)) {
          const head = await this.head(to);
          if (head?.owner === owner) return "stored";
          if (head !== undefined) return "exists";
        }
        throw error;
      }
    });
  }

  presign(key: string, method: "GET" | "PUT", seconds: number): Promise<string> {
    return this.translated("S3 presign", async () => {
      if (!Number.isInteger(seconds) || seconds < 1 || seconds > MAX_PRESIGN_SECONDS) {
        throw new RangeError(`presign: ${seconds} s is not between 1 and ${MAX_PRESIGN_SECONDS}`);
      }
      const input = { Bucket: this.bucket, Key: key };
      const command = method === "GET" ? new GetObjectCommand(input) : new PutObjectCommand(input);
      return getSignedUrl(this.client, command, { expiresIn: seconds });
    });
  }
}

function headOf(key: string, out: HeadObjectCommandOutput): Head {
  const reported = fullObjectCrc(out.ChecksumCRC32C);
  const recorded = out.Metadata?.[CRC32C];
  const checksum =
    reported !== undefined
      ? { crc32c: reported, reportedBy: "store" as const }
      : recorded !== undefined && crc32cFromBase64(recorded) !== undefined
        ? { crc32c: recorded, reportedBy: "metadata" as const }
        : undefined;
  return {
    key,
    size: out.ContentLength ?? 0,
    owner: out.Metadata?.[OWNER],
    ...(out.VersionId === undefined ? {} : { versionId: out.VersionId }),
    ...(checksum === undefined ? {} : { checksum }),
  };
}

/** The port's rule for a byte range: whole numbers with `0 <= start <= end`. */
function checkRange(start: number, end: number) {
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end < start) {
    throw new RangeError(`not a byte range: ${start}-${end}`);
  }
}
