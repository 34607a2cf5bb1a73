import { randomBytes } from "node:crypto";
import type { S3Client } from "@aws-sdk/client-s3";
import { describe, expect, it } from "vitest";
import { MiB } from "../../functions/bits/constants.ts";
import { loadConfig } from "../../functions/config.ts";
import { buildContext, jsonRuntime } from "../../functions/wiring.ts";
import { createSession, endSession, fragment } from "../support/calls.ts";
import { sdkCrc32c, sha256 } from "../support/checks.ts";
import { freshStorage, type StandInKind, standInClients } from "../support/storage.ts";

/**
 * fauxqs's workaround (the CRC32C recorded in metadata by a HEAD and an in-place copy) is
 * decided by configuration: the local server names the stand-in it runs on
 * (functions/local.ts, BITS_STAND_INS), and the service built without one (as the Lambda
 * handlers build it, for AWS) never takes it, even on a store that reports no checksum
 * (docs/platform.md, "Two emulations").
 */

/** The server's own wiring over a stand-in, with the S3 commands it sends recorded. */
async function serverOn(kind: StandInKind, standIn: "fauxqs" | "moto" | undefined) {
  const storage = await freshStorage(kind);
  const real = standInClients(kind);
  const sent: string[] = [];
  const s3 = {
    send(command: { constructor: { name: string } }) {
      sent.push(command.constructor.name);
      return real.s3.send(command as Parameters<S3Client["send"]>[0]);
    },
  } as unknown as S3Client;
  const config = loadConfig({ BITS_BUCKET: storage.bucket, BITS_TABLE: storage.table });
  const { service, context } = buildContext(
    config,
    jsonRuntime("silent"),
    { s3, dynamodb: real.dynamodb },
    undefined,
    { standIn },
  );
  return { service, objects: context.objects, sent };
}

/** A 6 MiB + 7 file through Create-Session, 1 MiB fragments and Close-Session. */
async function upload(service: Awaited<ReturnType<typeof serverOn>>["service"]) {
  const path = "/workaround/file.bin";
  const data = randomBytes(6 * MiB + 7);
  const id = await createSession(service, path);
  for (let first = 0; first < data.length; first += MiB) {
    const last = Math.min(data.length, first + MiB) - 1;
    expect((await fragment(service, id, data, first, last, path)).status).toBe(200);
  }
  const closed = await endSession(service, "Close-Session", id, path);
  expect(closed.status).toBe(200);
  return { key: "workaround/file.bin", data, closed };
}

describe("fauxqs's checksum workaround is configuration, not a guess from answers", () => {
  it.each([
    ["fauxqs", undefined],
    ["moto", undefined],
    ["moto", "moto"],
  ] as const)(
    "on %s with no fauxqs configured (stand-in %s): never taken",
    async (kind, standIn) => {
      const { service, objects, sent } = await serverOn(kind, standIn);
      const { key, data, closed } = await upload(service);
      expect(sha256((await objects.get(key)) ?? new Uint8Array())).toBe(sha256(data));
      // Neither store reports the assembled object's CRC32C here (docs/platform.md), yet no
      // in-place copy is made and nothing is recorded in metadata: on S3 that is not needed.
      expect(sent).not.toContain("CopyObjectCommand");
      expect((await objects.head(key))?.checksum).toBeUndefined();
      // The Close Ack still carries the CRC32C of the bytes received, vouched for by the server.
      expect(closed.headers["X-Object-CRC32C"]).toBe(await sdkCrc32c(data));
    },
  );

  it("on fauxqs, configured as fauxqs: the CRC32C is recorded in the object's metadata", async () => {
    const { service, objects, sent } = await serverOn("fauxqs", "fauxqs");
    const { key, data } = await upload(service);
    expect(sent).toContain("CopyObjectCommand");
    expect((await objects.head(key))?.checksum).toEqual({
      crc32c: await sdkCrc32c(data),
      reportedBy: "metadata",
    });
    expect(sha256((await objects.get(key)) ?? new Uint8Array())).toBe(sha256(data));
  });
});
