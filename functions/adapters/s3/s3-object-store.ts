import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  type S3Client,
  UploadPartCommand,
} from "@aws-sdk/client-s3";
import { getSignedUrl } from "@aws-sdk/s3-request-presigner";
import {
  type CompleteResult,
  type Head,
  MAX_PRESIGN_SECONDS,
  type ObjectBytes,
  type ObjectInfo,
  ObjectMissingError,
  type ObjectStat,
  type ObjectStore,
  UploadGoneError,
  type WriteOptions,
} from "../../ports/object-store.ts";
import { md5 } from "./etag.ts";
import { type CopyTuning, copyObject, S3_COPY_LIMITS } from "./s3-copy.ts";

/** User metadata naming the session that wrote an object (`x-amz-meta-bits-session`). */
const OWNER = "bits-session";

/** Completion failures that repeating cannot fix: the part list does not match S3's parts. */
const INVALID_PARTS = new Set(["InvalidPart", "InvalidPartOrder", "EntityTooSmall"]);

/** S3's answer codes, translated here and never seen past this file. */
function s3Error(error: unknown): { name: string; status: number | undefined } {
  const e = error as { name?: string; Code?: string; $metadata?: { httpStatusCode?: number } };
  return { name: e.Code ?? e.name ?? "", status: e.$metadata?.httpStatusCode };
}

function isNotFound(error: unknown): boolean {
  const { name, status } = s3Error(error);
  return name === "NotFound" || name === "NoSuchKey" || status === 404;
}

/**
 * ObjectStore on S3. Give it a client built with `requestChecksumCalculation: "WHEN_REQUIRED"`:
 * every body is sent with its Content-MD5 instead, which S3 verifies, and part ETags stay MD5s.
 */
export class S3ObjectStore implements ObjectStore {
  private readonly tuning: CopyTuning;

  /** `tuning` is for tests: a small `singleCopyLimit` and `copyPartBytes` force multipart copies. */
  constructor(
    private readonly client: S3Client,
    private readonly bucket: string,
    tuning: Partial<CopyTuning> = {},
  ) {
    this.tuning = { ...S3_COPY_LIMITS, ...tuning };
  }

  async head(key: string): Promise<Head | undefined> {
    try {
      const out = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }));
      return { key, size: out.ContentLength ?? 0, owner: out.Metadata?.[OWNER] };
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
  }

  async createUpload(key: string, owner: string): Promise<string> {
    const out = await this.client.send(
      new CreateMultipartUploadCommand({
        Bucket: this.bucket,
        Key: key,
        Metadata: { [OWNER]: owner },
      }),
    );
    if (!out.UploadId) throw new Error("CreateMultipartUpload returned no UploadId");
    return out.UploadId;
  }

  async uploadPart(key: string, uploadId: string, partNumber: number, body: Uint8Array) {
    const out = await this.client
      .send(
        new UploadPartCommand({
          Bucket: this.bucket,
          Key: key,
          UploadId: uploadId,
          PartNumber: partNumber,
          Body: body,
          ContentLength: body.length,
          ContentMD5: md5(body).toString("base64"),
        }),
      )
      .catch((error: unknown) => {
        if (s3Error(error).name === "NoSuchUpload") throw new UploadGoneError(uploadId);
        throw error;
      });
    if (!out.ETag) throw new Error("UploadPart returned no ETag");
    return out.ETag;
  }

  async completeUpload(
    key: string,
    uploadId: string,
    etags: readonly string[],
    { overwrite, owner }: WriteOptions,
  ): Promise<CompleteResult> {
    if (!overwrite) {
      // S3 refuses with If-None-Match below; asking first also covers stores that ignore it.
      const existing = await this.head(key);
      if (existing !== undefined) return existing.owner === owner ? "completed" : "exists";
    }
    try {
      await this.client.send(
        new CompleteMultipartUploadCommand({
          Bucket: this.bucket,
          Key: key,
          UploadId: uploadId,
          MultipartUpload: { Parts: etags.map((ETag, i) => ({ ETag, PartNumber: i + 1 })) },
          ...(overwrite ? {} : { IfNoneMatch: "*" }),
        }),
      );
      return "completed";
    } catch (error) {
      const { name, status } = s3Error(error);
      if (INVALID_PARTS.has(name)) return "invalid";
      // A lost answer to an earlier, successful completion looks like one of these; so does a
      // conditional write that lost to another (412) or raced one (409).
      if (name === "NoSuchUpload" || status === 412 || status === 409) {
        const head = await this.head(key);
        if (head?.owner === owner) return "completed";
        if (name === "NoSuchUpload") return "missing";
        if (head !== undefined) return "exists";
      }
      throw error;
    }
  }

  async abortUpload(key: string, uploadId: string): Promise<void> {
    try {
      await this.client.send(
        new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: key, UploadId: uploadId }),
      );
    } catch (error) {
      if (s3Error(error).name === "NoSuchUpload" || isNotFound(error)) return;
      throw error;
    }
  }

  async putObject(
    key: string,
    body: Uint8Array,
    { overwrite, owner }: WriteOptions,
  ): Promise<"stored" | "exists"> {
    if (!overwrite) {
      const existing = await this.head(key);
      if (existing !== undefined) return existing.owner === owner ? "stored" : "exists";
    }
    try {
      await this.send(key, body, {
        Metadata: { [OWNER]: owner },
        ...(overwrite ? {} : { IfNoneMatch: "*" }),
      });
      return "stored";
    } catch (error) {
      if (s3Error(error).status !== 412) throw error;
      return (await this.head(key))?.owner === owner ? "stored" : "exists";
    }
  }

  async put(key: string, body: Uint8Array): Promise<void> {
    await this.send(key, body, {});
  }

  private async send(
    key: string,
    body: Uint8Array,
    extra: { Metadata?: Record<string, string>; IfNoneMatch?: string },
  ) {
    await this.client.send(
      new PutObjectCommand({
        Bucket: this.bucket,
        Key: key,
        Body: body,
        ContentLength: body.length,
        ContentMD5: md5(body).toString("base64"),
        ...extra,
      }),
    );
  }

  async get(key: string): Promise<Uint8Array | undefined> {
    try {
      const out = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }));
      return out.Body ? await out.Body.transformToByteArray() : new Uint8Array(0);
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
  }

  async read(key: string) {
    try {
      const out = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }));
      if (!out.Body) return undefined;
      const stream = out.Body.transformToWebStream() as ReadableStream<Uint8Array>;
      return { size: out.ContentLength ?? 0, stream };
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
  }

  async list(prefix: string): Promise<ObjectInfo[]> {
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
  }

  async delete(keys: readonly string[]): Promise<void> {
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
  }

  async stat(key: string): Promise<ObjectStat | undefined> {
    try {
      const out = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }));
      if (!out.ETag || !out.LastModified) throw new Error("HeadObject returned no ETag or date");
      return { key, size: out.ContentLength ?? 0, etag: out.ETag, lastModified: out.LastModified };
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
  }

  async readRange(key: string, start: number, end: number): Promise<ObjectBytes | undefined> {
    checkRange(start, end);
    try {
      const out = await this.client.send(
        new GetObjectCommand({ Bucket: this.bucket, Key: key, Range: `bytes=${start}-${end}` }),
      );
      const size = Number(/\/(\d+)$/.exec(out.ContentRange ?? "")?.[1] ?? Number.NaN);
      if (!out.Body || !Number.isSafeInteger(size)) {
        throw new Error(`GetObject answered a range without its size: ${out.ContentRange}`);
      }
      return { size, stream: out.Body.transformToWebStream() as ReadableStream<Uint8Array> };
    } catch (error) {
      if (isNotFound(error)) return undefined;
      const { name, status } = s3Error(error);
      if (name === "InvalidRange" || status === 416) {
        throw new RangeError(`bytes ${start}-${end} are not inside ${key}`);
      }
      throw error;
    }
  }

  async copy(
    from: string,
    to: string,
    { overwrite, owner }: WriteOptions,
  ): Promise<"stored" | "exists"> {
    if (!overwrite) {
      const existing = await this.head(to);
      if (existing !== undefined) return existing.owner === owner ? "stored" : "exists";
    }
    const source = await this.stat(from);
    if (source === undefined) throw new ObjectMissingError(from);
    try {
      const request = { from, to, size: source.size, etag: source.etag, ifNoneMatch: !overwrite };
      const metadata = { [OWNER]: owner };
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
  }

  async presign(key: string, method: "GET" | "PUT", seconds: number): Promise<string> {
    if (!Number.isInteger(seconds) || seconds < 1 || seconds > MAX_PRESIGN_SECONDS) {
      throw new RangeError(`presign: ${seconds} s is not between 1 and ${MAX_PRESIGN_SECONDS}`);
    }
    const input = { Bucket: this.bucket, Key: key };
    const command = method === "GET" ? new GetObjectCommand(input) : new PutObjectCommand(input);
    return getSignedUrl(this.client, command, { expiresIn: seconds });
  }
}

/** The port's rule for a byte range: whole numbers with `0 <= start <= end`. */
function checkRange(start: number, end: number) {
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end < start) {
    throw new RangeError(`not a byte range: ${start}-${end}`);
  }
}
