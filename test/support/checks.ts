import { createHash } from "node:crypto";
import { Crc32cJs } from "@aws-sdk/checksums/crc";
import { expect } from "vitest";
import { bucketKeys, type StandInKind, tableItems, uploadIsGone } from "./storage.ts";

export const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");

/**
 * The CRC32C of `bytes` in S3's format (base64 of 4 big-endian bytes), computed with the AWS
 * SDK's own implementation: independent of the server's (docs/checksums.md).
 */
export async function sdkCrc32c(bytes: Uint8Array): Promise<string> {
  const hash = new Crc32cJs();
  hash.update(bytes);
  return Buffer.from(await hash.digest()).toString("base64");
}

/**
 * After every session has ended: the bucket holds exactly the completed objects, the table
 * nothing but tombstones (no key claim left behind), no session's multipart upload is still
 * open, and no session counts as open any more.
 */
export async function expectOnlyResults(
  bucket: string,
  table: string,
  objectKeys: string[],
  standIn?: StandInKind,
) {
  expect(await bucketKeys(bucket, standIn)).toEqual([...objectKeys].sort());
  const { records, others, counters } = await tableItems(table, standIn);
  expect(others).toEqual([]);
  for (const [slot, open] of counters) expect({ slot, open }).toEqual({ slot, open: 0 });
  for (const record of records) {
    expect(record.status).not.toBe("open");
    expect(record.etags).toEqual([]);
    expect(await uploadIsGone(bucket, record.key, record.uploadId, standIn)).toBe(true);
  }
}
