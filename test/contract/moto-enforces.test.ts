import { randomBytes, randomUUID } from "node:crypto";
import { crc32 } from "node:zlib";
import {
  HeadObjectCommand,
  PutObjectCommand,
  S3Client,
  type S3Client as S3ClientType,
} from "@aws-sdk/client-s3";
import { describe, expect, inject, it } from "vitest";
import { S3ObjectStore } from "../../functions/adapters/s3/s3-object-store.ts";
import { MiB } from "../../functions/bits/constants.ts";
import { crc32c, crc32cBase64, crc32cCombine } from "../../functions/bits/crc32c.ts";
import { STAND_IN_CREDENTIALS, STAND_IN_REGION } from "../../infra/stand-ins.ts";
import { sha256 } from "../support/checks.ts";
import { freshStorage, STAND_INS, type StandInKind, standInClients } from "../support/storage.ts";

/**
 * What fauxqs cannot show and moto can, because moto does it as S3 does (docs/platform.md,
 * "Two emulations"): the commit guard (`If-None-Match: *`), UploadPartCopy, and the checksum
 * S3 records in an assembled object. The adapter is built as the server builds it for each
 * stand-in (functions/wiring.ts).
 */

const owner = () => `{${randomUUID().toUpperCase()}}`;

/**
 * The stand-in's client, recording the commands sent; `before` runs ahead of the first command
 * of that name, as if another writer got in just then.
 */
function recording(kind: StandInKind, before?: { command: string; run: () => Promise<unknown> }) {
  const real = standInClients(kind).s3;
  const sent: string[] = [];
  let pending = before;
  const client = {
    config: real.config,
    async send(command: { constructor: { name: string } }) {
      const name = command.constructor.name;
      if (pending?.command === name) {
        const { run } = pending;
        pending = undefined;
        await run();
      }
      sent.push(name);
      return real.send(command as Parameters<S3ClientType["send"]>[0]);
    },
  };
  return { client: client as unknown as S3ClientType, sent };
}

async function storeOn(
  kind: StandInKind,
  before?: Parameters<typeof recording>[1],
  tuning: { singleCopyLimit?: number; copyPartBytes?: number } = {},
) {
  const { bucket } = await freshStorage(kind);
  const { client, sent } = recording(kind, before);
  const store = new S3ObjectStore(client, bucket, {
    ...tuning,
    fauxqsChecksums: kind === "fauxqs",
  });
  return { bucket, store, sent };
}

/**
 * A store whose `command` at `key` is preceded by another writer's object, put straight into
 * the bucket: after the store's own check, before its conditional write.
 */
async function racedStore(kind: StandInKind, command: string, key: string) {
  const theirs = randomBytes(1000);
  const other = owner();
  let bucket = "";
  const run = () =>
    standInClients(kind).s3.send(
      new PutObjectCommand({
        Bucket: bucket,
        Key: key,
        Body: theirs,
        Metadata: { "bits-session": other },
      }),
    );
  const env = await storeOn(kind, { command, run });
  bucket = env.bucket;
  return { ...env, theirs, other };
}

describe.each(STAND_INS)("the commit guard on %s (If-None-Match: *)", (kind) => {
  // fauxqs 1.9 ignores If-None-Match: the session table's key claim is the guard there
  // (functions/service/completion.ts, claimKey).
  const guarded = kind === "fauxqs" ? it.fails : it;

  guarded(
    "an object written after the store's own check is kept: the completion answers exists",
    async () => {
      const key = "guarded/file.bin";
      const mine = owner();
      const env = await racedStore(kind, "CompleteMultipartUploadCommand", key);
      const { theirs, other } = env;
      const body = randomBytes(2000);
      const uploadId = await env.store.createUpload(key, mine);
      const etag = await env.store.uploadPart(key, uploadId, 1, body, crc32c(body));
      const done = await env.store.completeUpload(key, uploadId, [{ etag, crc32c: crc32c(body) }], {
        overwrite: false,
        owner: mine,
        crc32c: crc32c(body),
        size: body.length,
      });
      expect(env.sent).toContain("CompleteMultipartUploadCommand");
      expect(done.result).toBe("exists");
      expect(sha256((await env.store.get(key)) ?? new Uint8Array())).toBe(sha256(theirs));
      expect((await env.store.head(key))?.owner).toBe(other);
    },
  );

  guarded(
    "a PutObject after the store's own check is refused: the first object stays",
    async () => {
      const key = "guarded/empty.bin";
      const env = await racedStore(kind, "PutObjectCommand", key);
      const { theirs } = env;
      expect(
        await env.store.putObject(key, new Uint8Array(0), { overwrite: false, owner: owner() }),
      ).toBe("exists");
      expect(sha256((await env.store.get(key)) ?? new Uint8Array())).toBe(sha256(theirs));
    },
  );
});

describe("UploadPartCopy on moto (no emulation in its client)", () => {
  it("a 12 MiB object is copied in three parts by S3's own UploadPartCopy, exactly", async () => {
    const { store: tuned, sent } = await storeOn("moto", undefined, {
      singleCopyLimit: 10 * MiB,
      copyPartBytes: 5 * MiB,
    });
    const bodies = [randomBytes(6 * MiB), randomBytes(6 * MiB)];
    const source = owner();
    const uploadId = await tuned.createUpload("src.bin", source);
    const parts = [];
    for (const [i, body] of bodies.entries()) {
      const etag = await tuned.uploadPart("src.bin", uploadId, i + 1, body, crc32c(body));
      parts.push({ etag, crc32c: crc32c(body) });
    }
    await tuned.completeUpload("src.bin", uploadId, parts, { overwrite: false, owner: source });
    sent.length = 0;
    const copier = owner();
    expect(await tuned.copy("src.bin", "dst.bin", { overwrite: false, owner: copier })).toBe(
      "stored",
    );
    expect(sent.filter((name) => name === "UploadPartCopyCommand")).toHaveLength(3);
    expect(sent).not.toContain("GetObjectCommand");
    expect(sha256((await tuned.get("dst.bin")) ?? new Uint8Array())).toBe(
      sha256(Buffer.concat(bodies)),
    );
    expect((await tuned.head("dst.bin"))?.owner).toBe(copier);
  });
});

describe("the checksum moto records in an assembled object", () => {
  /**
   * moto's own answer, without the client that drops its CRC32C (infra/stand-ins.ts): the
   * upload the adapter creates asks for a full-object CRC32C, and moto records one of all the
   * bytes, computed (without the `crc32c` module) as CRC32. Should moto compute CRC32C, this
   * fails, and the "assembled-crc32c" gap can go.
   */
  it("is a FULL_OBJECT checksum of the whole file, in moto's CRC32 stand-in for CRC32C", async () => {
    const { bucket, store } = await storeOn("moto");
    const bodies = [randomBytes(5 * MiB), randomBytes(4321)];
    const mine = owner();
    const uploadId = await store.createUpload("whole.bin", mine);
    const parts = [];
    let whole = 0;
    for (const [i, body] of bodies.entries()) {
      const crc = crc32c(body);
      parts.push({
        etag: await store.uploadPart("whole.bin", uploadId, i + 1, body, crc),
        crc32c: crc,
      });
      whole = crc32cCombine(whole, crc, body.length);
    }
    const done = await store.completeUpload("whole.bin", uploadId, parts, {
      overwrite: false,
      owner: mine,
      crc32c: whole,
    });
    // Dropped by moto's client: the server sees no store checksum, and vouches itself.
    expect(done).toMatchObject({ result: "completed", crc32c: undefined });
    const raw = new S3Client({
      endpoint: inject("motoEndpoint"),
      region: STAND_IN_REGION,
      forcePathStyle: true,
      credentials: STAND_IN_CREDENTIALS,
    });
    const head = await raw.send(
      new HeadObjectCommand({ Bucket: bucket, Key: "whole.bin", ChecksumMode: "ENABLED" }),
    );
    raw.destroy();
    const bytes = Buffer.concat(bodies);
    expect(head.ChecksumType).toBe("FULL_OBJECT");
    expect(head.ChecksumCRC32C).toBe(crc32cBase64(crc32(bytes)));
    expect(head.ChecksumCRC32C).not.toBe(crc32cBase64(crc32c(bytes)));
  });
});
