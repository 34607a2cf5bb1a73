import { createHash } from "node:crypto";
import { Crc32cJs } from "@aws-sdk/checksums/crc";
import { expect } from "vitest";
import { bucketKeys, tableItems, uploadIsGone } from "./storage.ts";

export const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");

/**
 * CRC32C of `bytes` as S3 writes it (base64 of the big-endian value), computed by the AWS
 * SDK's own implementation: an oracle independent of the server's.
 */
export async function crc32cOf(bytes: Uint8Array): Promise<string> {
  const crc = new Crc32cJs();
  crc.update(bytes);
  return Buffer.from(await crc.digest()).toString("base64");
}

/**
 * After every session has ended: the bucket holds exactly the completed objects, the table
 * nothing but tombstones (no key claim left behind), no session's multipart upload is still
 * open, and no session counts as open any more.
 */
export async function expectOnlyResults(bucket: string, table: string, objectKeys: string[]) {
  expect(await bucketKeys(bucket)).toEqual([...objectKeys].sort());
  const { records, others, counters } = await tableItems(table);
  expect(others).toEqual([]);
  for (const [slot, open] of counters) expect({ slot, open }).toEqual({ slot, open: 0 });
  for (const record of records) {
    expect(record.status).not.toBe("open");
    expect(record.etags).toEqual([]);
    expect(await uploadIsGone(bucket, record.key, record.uploadId)).toBe(true);
  }
}
