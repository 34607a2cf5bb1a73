import type { S3Client } from "@aws-sdk/client-s3";
import { inject } from "vitest";
import { sameEtag } from "../../functions/adapters/s3/etag.ts";
import { standInS3 } from "../../infra/stand-ins.ts";
import { sdkCrc32c } from "./checks.ts";

/**
 * An S3 client over fauxqs that checks checksums as S3 does, which fauxqs 1.9 does not (it
 * ignores them): middleware on the client's stack, looking at the request as it goes on the
 * wire (docs/checksums.md).
 *
 * - UploadPart and PutObject: a body that does not match its `x-amz-checksum-crc32c` is
 *   refused with BadDigest and not stored.
 * - CompleteMultipartUpload of an upload created with CRC32C: every listed part must carry the
 *   CRC32C it was uploaded with (InvalidRequest when missing, InvalidPart when another), and
 *   the full-object `x-amz-checksum-crc32c` must be the CRC32C of the parts' bytes together
 *   (BadDigest otherwise), and their size the `x-amz-mp-object-size` sent (InvalidRequest);
 *   the answer then reports the CRC32C, as S3 does for FULL_OBJECT.
 * - HeadObject with ChecksumMode ENABLED reports the checksum of objects it saw written.
 *
 * `corruptParts` damages that many UploadPart bodies in transit: one byte flipped after the
 * checksum header was set, as a faulty network path would.
 */
export function checksummingS3(options: { corruptParts?: number } = {}) {
  const client = standInS3(inject("s3Endpoint"));
  const stats = { corrupted: 0, refusedParts: 0, refusedCompletions: 0 };
  let corrupt = options.corruptParts ?? 0;
  /** Uploads created with CRC32C, and the parts each holds: bytes and CRC32C. */
  const uploads = new Map<string, Map<number, { body: Uint8Array; crc: string }>>();
  /** Objects seen written, by bucket/key: their ETag and CRC32C. */
  const objects = new Map<string, { etag: string | undefined; crc: string }>();

  client.middlewareStack.add(
    (next, context) => async (args) => {
      const request = args.request as { body?: unknown };
      if (context.commandName === "UploadPartCommand" && corrupt > 0) {
        corrupt -= 1;
        stats.corrupted += 1;
        const damaged = new Uint8Array(request.body as Uint8Array);
        damaged[damaged.length >> 1] = (damaged[damaged.length >> 1] as number) ^ 0x10;
        request.body = damaged;
      }
      return next(args);
    },
    { step: "build", priority: "high", name: "corruptInTransit" },
  );

  client.middlewareStack.add(
    (next, context) => async (args) => {
      const input = args.input as Record<string, unknown>;
      const request = args.request as { body?: unknown; headers: Record<string, string> };
      const sent = request.headers["x-amz-checksum-crc32c"];
      const where = `${input.Bucket}/${input.Key}`;
      switch (context.commandName) {
        case "CreateMultipartUploadCommand": {
          const result = await next(args);
          const output = result.output as { UploadId?: string };
          if (request.headers["x-amz-checksum-algorithm"] === "CRC32C" && output.UploadId) {
            uploads.set(output.UploadId, new Map());
          }
          return result;
        }
        case "UploadPartCommand":
        case "PutObjectCommand": {
          const body = bytesOf(request.body);
          const crc = await sdkCrc32c(body);
          if (sent !== undefined && sent !== crc) {
            stats.refusedParts += 1;
            throw s3Error(
              "BadDigest",
              "The CRC32C you specified did not match the calculated checksum.",
            );
          }
          const result = await next(args);
          const etag = (result.output as { ETag?: string }).ETag;
          const parts = uploads.get(String(input.UploadId));
          if (context.commandName === "UploadPartCommand") {
            parts?.set(Number(input.PartNumber), { body: new Uint8Array(body), crc });
          } else {
            objects.set(where, { etag, crc });
          }
          return result;
        }
        case "CompleteMultipartUploadCommand": {
          const parts = uploads.get(String(input.UploadId));
          if (parts === undefined) return next(args);
          const listed = [...String(request.body).matchAll(/<Part>([\s\S]*?)<\/Part>/g)].map(
            ([, part]) => ({
              number: Number(/<PartNumber>(\d+)<\/PartNumber>/.exec(part ?? "")?.[1]),
              crc: /<ChecksumCRC32C>([^<]*)<\/ChecksumCRC32C>/.exec(part ?? "")?.[1],
            }),
          );
          const bodies: Uint8Array[] = [];
          for (const { number, crc } of listed) {
            if (crc === undefined) {
              stats.refusedCompletions += 1;
              throw s3Error(
                "InvalidRequest",
                `The upload was created using a crc32c checksum. The complete request must include the checksum for each part. It was missing for part ${number} in the request.`,
              );
            }
            const held = parts.get(number);
            if (held === undefined || held.crc !== crc) {
              stats.refusedCompletions += 1;
              throw s3Error(
                "InvalidPart",
                "One or more of the specified parts could not be found.",
              );
            }
            bodies.push(held.body);
          }
          const size = request.headers["x-amz-mp-object-size"];
          const object = Buffer.concat(bodies);
          if (size !== undefined && Number(size) !== object.length) {
            stats.refusedCompletions += 1;
            throw s3Error(
              "InvalidRequest",
              "The provided MpuObjectSize does not match the size of the object's parts.",
            );
          }
          const whole = await sdkCrc32c(object);
          if (sent !== undefined && sent !== whole) {
            stats.refusedCompletions += 1;
            throw s3Error(
              "BadDigest",
              "The crc32c you specified did not match the calculated checksum.",
            );
          }
          const result = await next(args);
          const output = result.output as {
            ETag?: string;
            ChecksumCRC32C?: string;
            ChecksumType?: string;
          };
          output.ChecksumCRC32C = whole;
          output.ChecksumType = "FULL_OBJECT";
          objects.set(where, { etag: output.ETag, crc: whole });
          uploads.delete(String(input.UploadId));
          return result;
        }
        case "CopyObjectCommand": {
          const result = await next(args);
          const source = decodeURIComponent(String(input.CopySource));
          const from = objects.get(source);
          const etag = (result.output as { CopyObjectResult?: { ETag?: string } }).CopyObjectResult
            ?.ETag;
          if (from !== undefined) objects.set(where, { etag, crc: from.crc });
          return result;
        }
        case "HeadObjectCommand": {
          const result = await next(args);
          const output = result.output as {
            ETag?: string;
            ChecksumCRC32C?: string;
            ChecksumType?: string;
          };
          const known = objects.get(where);
          if (input.ChecksumMode === "ENABLED" && known && sameEtag(known.etag, output.ETag)) {
            output.ChecksumCRC32C = known.crc;
            output.ChecksumType = "FULL_OBJECT";
          }
          return result;
        }
        default:
          return next(args);
      }
    },
    { step: "build", priority: "low", name: "checksumsAsS3" },
  );
  return { client: client as S3Client, stats };
}

function bytesOf(body: unknown): Uint8Array {
  if (body instanceof Uint8Array) return body;
  if (typeof body === "string") return Buffer.from(body);
  if (body === undefined) return new Uint8Array(0);
  throw new Error("checksummingS3: a streamed body; the server sends bytes");
}

/** An error shaped as the SDK gives S3's refusals. */
function s3Error(code: string, message: string) {
  return Object.assign(new Error(message), {
    name: code,
    Code: code,
    $fault: "client",
    $metadata: { httpStatusCode: 400 },
  });
}
