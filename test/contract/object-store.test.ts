import { randomBytes } from "node:crypto";
import { type S3Client, UploadPartCopyCommand } from "@aws-sdk/client-s3";
import { describe, expect, it } from "vitest";
import { MemoryObjectStore } from "../../functions/adapters/memory/memory-object-store.ts";
import { copyPartSize, copySource } from "../../functions/adapters/s3/s3-copy.ts";
import { S3ObjectStore } from "../../functions/adapters/s3/s3-object-store.ts";
import { MiB } from "../../functions/bits/constants.ts";
import { sha256 } from "../support/checks.ts";
import { checksummingS3 } from "../support/checksum-s3.ts";
import { freshBucket, type StandInKind, standInClients } from "../support/storage.ts";
import { objectStoreContract } from "./object-store.contract.ts";

// The fake's presigned URLs are `memory://` names, which no HTTP client fetches.
objectStoreContract("MemoryObjectStore", async () => new MemoryObjectStore(), ["unfetchable-urls"]);

// Gaps of the stand-in, not of the adapter:
// - fauxqs 1.9 sorts listings with localeCompare (dist/s3/s3Store.js), where S3 itself sorts by
//   UTF-8 bytes.
// - fauxqs 1.9 has no UploadPartCopy; the stand-in's client (infra/stand-ins.ts) answers it with
//   the source's bytes uploaded as the part, so the adapter's copies are tested end to end.
/**
 * One bucket per contract, made when its first test asks: every test of the contract works
 * under a random prefix of its own, so none sees another's objects, and the stand-in is spared
 * a bucket per test.
 */
function sharedBucket(standIn: StandInKind = "fauxqs") {
  let bucket: Promise<string> | undefined;
  return () => {
    bucket ??= freshBucket(standIn);
    return bucket;
  };
}

const fauxqsBucket = sharedBucket();
objectStoreContract(
  "S3ObjectStore over fauxqs",
  async (tuning) =>
    new S3ObjectStore(standInClients().s3, await fauxqsBucket(), {
      ...tuning,
      fauxqsChecksums: true,
    }),
  ["ascii-byte-order", "checksum-verification"],
);

// moto: S3's If-None-Match, UploadPartCopy and stored checksums of its own. It verifies no
// checksum, and the CRC32C it computes for an assembled object is a CRC32 (docs/platform.md).
const motoBucket = sharedBucket("moto");
objectStoreContract(
  "S3ObjectStore over moto",
  async (tuning) => new S3ObjectStore(standInClients("moto").s3, await motoBucket(), tuning),
  [
    "checksum-verification",
    "assembled-crc32c",
    "object-size-verification",
    "put-checksum",
    "gone-upload",
  ],
);

// fauxqs ignores checksums; in front of it, a client that checks them as S3 does shows that
// the adapter sends the right ones and understands S3's refusals (docs/checksums.md).
const checkedBucket = sharedBucket();
objectStoreContract(
  "S3ObjectStore over fauxqs, checksums checked as S3 does",
  async (tuning) =>
    new S3ObjectStore(checksummingS3().client, await checkedBucket(), {
      ...tuning,
      fauxqsChecksums: true,
    }),
  ["ascii-byte-order"],
);

/**
 * The stand-in's S3 client (which answers UploadPartCopy as S3 does, infra/stand-ins.ts),
 * recording what was sent and failing the copy of one part when asked.
 */
function emulatingUploadPartCopy(failOnPart?: number) {
  const real = standInClients().s3;
  const sent: string[] = [];
  const client = {
    async send(command: { constructor: { name: string }; input: unknown }) {
      sent.push(command.constructor.name);
      if (command instanceof UploadPartCopyCommand && command.input.PartNumber === failOnPart) {
        throw new Error("injected UploadPartCopy failure");
      }
      return real.send(command as Parameters<S3Client["send"]>[0]);
    },
  };
  return { client: client as unknown as S3Client, sent };
}

describe("S3ObjectStore copies over fauxqs, with UploadPartCopy emulated", () => {
  const tuning = { singleCopyLimit: 10 * MiB, copyPartBytes: 5 * MiB, copyConcurrency: 2 };
  const owner = "{B1A5E55E-0000-4000-8000-000000000001}";

  async function twelveMiB(store: S3ObjectStore, key: string) {
    const bodies = [randomBytes(6 * MiB), randomBytes(6 * MiB)];
    const uploadId = await store.createUpload(key, "{SOURCE}");
    const parts: { etag: string }[] = [];
    for (const [i, body] of bodies.entries()) {
      parts.push({ etag: await store.uploadPart(key, uploadId, i + 1, body) });
    }
    await store.completeUpload(key, uploadId, parts, { overwrite: false, owner: "{SOURCE}" });
    return Buffer.concat(bodies);
  }

  it("copies 12 MiB in three parts (5 + 5 + 2 MiB) and sets the owner", async () => {
    const bucket = await freshBucket();
    const { client, sent } = emulatingUploadPartCopy();
    const store = new S3ObjectStore(client, bucket, tuning);
    const body = await twelveMiB(store, "src key ü.bin");
    sent.length = 0;
    expect(await store.copy("src key ü.bin", "dst/ü.bin", { overwrite: false, owner })).toBe(
      "stored",
    );
    expect(sent.filter((name) => name === "UploadPartCopyCommand")).toHaveLength(3);
    expect(sent).toContain("CompleteMultipartUploadCommand");
    expect(sent).not.toContain("CopyObjectCommand");
    expect(await store.head("dst/ü.bin")).toMatchObject({
      key: "dst/ü.bin",
      size: 12 * MiB,
      owner,
    });
    expect(sha256((await store.get("dst/ü.bin")) ?? new Uint8Array())).toBe(sha256(body));
    expect((await store.stat("dst/ü.bin"))?.etag).toMatch(/-3"$/);
  });

  it("a failed part aborts the multipart copy and writes nothing", async () => {
    const bucket = await freshBucket();
    const { client, sent } = emulatingUploadPartCopy(2);
    const store = new S3ObjectStore(client, bucket, tuning);
    await twelveMiB(store, "src");
    await expect(store.copy("src", "dst", { overwrite: false, owner })).rejects.toThrow(
      "injected UploadPartCopy failure",
    );
    expect(sent.at(-1)).toBe("AbortMultipartUploadCommand");
    expect(await store.head("dst")).toBeUndefined();
  });

  it("an object up to the single-copy limit takes one CopyObject", async () => {
    const bucket = await freshBucket();
    const { client, sent } = emulatingUploadPartCopy();
    const store = new S3ObjectStore(client, bucket, tuning);
    await store.putStaged("src", new Uint8Array(10 * MiB));
    sent.length = 0;
    expect(await store.copy("src", "dst", { overwrite: true, owner })).toBe("stored");
    expect(sent).toEqual(["HeadObjectCommand", "CopyObjectCommand"]);
  });
});

describe("S3 copy part sizes", () => {
  it("keeps the wanted size, grows it past 10,000 parts, and never exceeds 5 GiB", () => {
    const GiB = 1024 ** 3;
    expect(copyPartSize(6 * GiB, GiB)).toBe(GiB);
    expect(copyPartSize(20_000 * GiB, GiB)).toBe(2 * GiB);
    expect(copyPartSize(60_000 * GiB, GiB)).toBe(5 * GiB);
  });

  it("encodes the copy source key but keeps its slashes", () => {
    expect(copySource("b", "a b/ü+%.bin")).toBe("b/a%20b/%C3%BC%2B%25.bin");
  });
});

describe("S3ObjectStore presign", () => {
  it("signs a SigV4 URL for the bucket and key, valid for the seconds asked", async () => {
    const bucket = await freshBucket();
    const objects = new S3ObjectStore(standInClients().s3, bucket, { fauxqsChecksums: true });
    const url = new URL(await objects.presign("dir/a b.bin", "PUT", 900));
    expect(url.pathname).toBe(`/${bucket}/dir/a%20b.bin`);
    expect(url.searchParams.get("X-Amz-Expires")).toBe("900");
    expect(url.searchParams.get("X-Amz-Algorithm")).toBe("AWS4-HMAC-SHA256");
    expect(url.searchParams.get("X-Amz-Signature")).toMatch(/^[0-9a-f]{64}$/);
  });
});
