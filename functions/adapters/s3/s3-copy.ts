import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateMultipartUploadCommand,
  type S3Client,
  UploadPartCopyCommand,
} from "@aws-sdk/client-s3";

const GiB = 1024 ** 3;

/** S3's limits for copies (CopyObject, UploadPartCopy, multipart uploads). */
export const S3_COPY_LIMITS = {
  /** The largest object CopyObject copies in one request. */
  singleCopyLimit: 5 * GiB,
  /** The part size of a multipart copy: at most 5 GiB, at least 5 MiB (except the last). */
  copyPartBytes: GiB,
  /** Parts copied at once. */
  copyConcurrency: 8,
} as const;

const MAX_PART_BYTES = 5 * GiB;
const MAX_PARTS = 10_000;

export type CopyTuning = { -readonly [K in keyof typeof S3_COPY_LIMITS]: number };

export interface CopyRequest {
  readonly from: string;
  readonly to: string;
  /**
   * The source's size and ETag, from a HEAD just before; every part of a multipart copy insists
   * on that ETag, so the parts cannot mix two versions of the source.
   */
  readonly size: number;
  readonly etag: string;
  readonly metadata: Record<string, string>;
  /** Sends `If-None-Match: *`, so S3 refuses (412) when an object appears at `to`. */
  readonly ifNoneMatch: boolean;
}

/**
 * `CopySource` for S3: the bucket and the URL-encoded key. Slashes stay, as the SDK's own
 * examples write them.
 */
export function copySource(bucket: string, key: string): string {
  return `${bucket}/${key.split("/").map(encodeURIComponent).join("/")}`;
}

/**
 * The part size for a multipart copy of `size` bytes: the wanted size, grown when 10,000 parts
 * would not hold the object, and never over S3's 5 GiB.
 */
export function copyPartSize(size: number, wanted: number): number {
  return Math.min(MAX_PART_BYTES, Math.max(wanted, Math.ceil(size / MAX_PARTS)));
}

/**
 * Copies a whole object server-side: CopyObject up to `singleCopyLimit`, a multipart copy
 * (UploadPartCopy with CopySourceRange) beyond; either insists on the source's ETag. Answers
 * the new object's version, where the bucket keeps versions. S3's errors pass through: the
 * adapter's methods that call this translate them (S3ObjectStore), so none leaves the adapter.
 */
export async function copyObject(
  client: S3Client,
  bucket: string,
  request: CopyRequest,
  tuning: CopyTuning,
): Promise<string | undefined> {
  if (request.size <= tuning.singleCopyLimit) {
    const out = await client.send(
      new CopyObjectCommand({
        Bucket: bucket,
        Key: request.to,
        CopySource: copySource(bucket, request.from),
        CopySourceIfMatch: request.etag,
        MetadataDirective: "REPLACE",
        Metadata: request.metadata,
        ...(request.ifNoneMatch ? { IfNoneMatch: "*" } : {}),
      }),
    );
    return out.VersionId;
  }
  return multipartCopy(client, bucket, request, tuning);
}

async function multipartCopy(
  client: S3Client,
  bucket: string,
  request: CopyRequest,
  tuning: CopyTuning,
): Promise<string | undefined> {
  const created = await client.send(
    new CreateMultipartUploadCommand({
      Bucket: bucket,
      Key: request.to,
      Metadata: request.metadata,
    }),
  );
  const uploadId = created.UploadId;
  if (!uploadId) throw new Error("CreateMultipartUpload returned no UploadId");
  try {
    const partBytes = copyPartSize(request.size, tuning.copyPartBytes);
    const count = Math.ceil(request.size / partBytes);
    const etags: string[] = new Array(count);
    let next = 0;
    let failed = false;
    const worker = async () => {
      while (next < count && !failed) {
        const index = next++;
        const first = index * partBytes;
        const last = Math.min(request.size, first + partBytes) - 1;
        const out = await client.send(
          new UploadPartCopyCommand({
            Bucket: bucket,
            Key: request.to,
            UploadId: uploadId,
            PartNumber: index + 1,
            CopySource: copySource(bucket, request.from),
            CopySourceIfMatch: request.etag,
            CopySourceRange: `bytes=${first}-${last}`,
          }),
        );
        const etag = out.CopyPartResult?.ETag;
        if (!etag) throw new Error("UploadPartCopy returned no ETag");
        etags[index] = etag;
      }
    };
    const workers = Math.max(1, Math.min(tuning.copyConcurrency, count));
    // Every worker settles before an abort, so no part lands after it.
    const settled = await Promise.allSettled(
      Array.from({ length: workers }, () =>
        worker().catch((error: unknown) => {
          failed = true;
          throw error;
        }),
      ),
    );
    const rejected = settled.find((result) => result.status === "rejected");
    if (rejected) throw rejected.reason;
    const out = await client.send(
      new CompleteMultipartUploadCommand({
        Bucket: bucket,
        Key: request.to,
        UploadId: uploadId,
        MultipartUpload: { Parts: etags.map((ETag, i) => ({ ETag, PartNumber: i + 1 })) },
        ...(request.ifNoneMatch ? { IfNoneMatch: "*" } : {}),
      }),
    );
    return out.VersionId;
  } catch (error) {
    // Parts of an abandoned copy cost storage until a lifecycle rule ends them: end them now.
    await client
      .send(
        new AbortMultipartUploadCommand({ Bucket: bucket, Key: request.to, UploadId: uploadId }),
      )
      .catch(() => {});
    throw error;
  }
}
