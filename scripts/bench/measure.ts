import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  type S3Client,
  UploadPartCommand,
} from "@aws-sdk/client-s3";
import bcrypt from "bcryptjs";
import { createAuthenticator } from "../../functions/auth/authenticator.ts";
import { MiB } from "../../functions/bits/constants.ts";
import type { UploadService } from "../../functions/service/upload-service.ts";
import { buildBundles } from "../build.ts";

export const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");

export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil(p * sorted.length) - 1)] ?? 0;
}

/** Wraps the service to time every request, by packet type. */
export function timed(service: UploadService) {
  const times: { fragment: number[]; [type: string]: number[] } = { fragment: [] };
  return {
    times,
    async handle(request: Parameters<UploadService["handle"]>[0]) {
      const started = performance.now();
      try {
        return await service.handle(request);
      } finally {
        const type = request.headers.get("bits-packet-type")?.toLowerCase() ?? "other";
        times[type] = [...(times[type] ?? []), performance.now() - started];
      }
    },
  };
}

/**
 * The baseline: a plain multipart upload of the same bytes with the SDK, 8 MiB parts one at a
 * time (a BITS session is sequential). Returns milliseconds.
 */
export async function directUpload(s3: S3Client, bucket: string, key: string, data: Uint8Array) {
  const started = performance.now();
  const { UploadId } = await s3.send(
    new CreateMultipartUploadCommand({ Bucket: bucket, Key: key }),
  );
  const parts = [];
  for (let start = 0, n = 1; start < data.length; start += 8 * MiB, n++) {
    const body = data.subarray(start, Math.min(data.length, start + 8 * MiB));
    const out = await s3.send(
      new UploadPartCommand({ Bucket: bucket, Key: key, UploadId, PartNumber: n, Body: body }),
    );
    parts.push({ ETag: out.ETag, PartNumber: n });
  }
  await s3.send(
    new CompleteMultipartUploadCommand({
      Bucket: bucket,
      Key: key,
      UploadId,
      MultipartUpload: { Parts: parts },
    }),
  );
  return performance.now() - started;
}

const PROBE = `
const started = performance.now();
const { handler } = await import(process.argv[2]);
await handler({ requestContext: { elb: { targetGroupArn: "tg" } }, httpMethod: "BITS_POST",
  path: "/a.bin", headers: { "bits-packet-type": "Ping", "content-length": "0" }, body: "",
  isBase64Encoded: false });
console.log(performance.now() - started);
`;

/**
 * The Lambda bundle's size, and the time a fresh Node process takes to import it and answer its
 * first Ping event (median of 5 processes).
 */
export async function coldStart() {
  const dir = mkdtempSync(join(tmpdir(), "bits-bench-"));
  try {
    const sizes = await buildBundles(dir);
    writeFileSync(join(dir, "probe.mjs"), PROBE);
    const runs = Array.from({ length: 5 }, () =>
      Number(
        execFileSync(process.execPath, [join(dir, "probe.mjs"), join(dir, "upload/handler.mjs")], {
          env: {
            PATH: process.env.PATH ?? "",
            AWS_REGION: "us-east-1",
            BITS_BUCKET: "b",
            BITS_TABLE: "t",
            BITS_AUTH: "anonymous",
            BITS_LOG_LEVEL: "silent",
            NODE_NO_WARNINGS: "1",
          },
          encoding: "utf8",
        }).trim(),
      ),
    );
    return {
      bundleBytes: sizes.upload ?? 0,
      firstPingMs: Number(percentile(runs, 0.5).toFixed(1)),
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * What authentication costs per request on a warm instance: Basic's first verification (one
 * bcrypt at cost 10), then the same credential again (the verified-credential cache), next to
 * anonymous, measured side by side. Also counts the bcrypt comparisons made.
 */
export async function authCost(rounds = 10_000) {
  const password = "correct horse battery staple";
  const hash = await bcrypt.hash(password, 10);
  let compares = 0;
  const basic = createAuthenticator(["basic"], {
    realm: "bench",
    htpasswd: { source: "bench", current: async () => `alice:${hash}\n` },
    compare: (plain, stored) => {
      compares += 1;
      return bcrypt.compare(plain, stored);
    },
  });
  const request = {
    destination: "/a.bin",
    query: new Map<string, string>(),
    headers: new Map([
      ["authorization", `Basic ${Buffer.from(`alice:${password}`).toString("base64")}`],
    ]),
    secure: true,
  };
  const anonymous = createAuthenticator(["anonymous"], { realm: "bench" });
  let started = performance.now();
  const first = await basic.authenticate(request, Date.now());
  const firstMs = performance.now() - started;
  if (first.kind !== "ok") throw new Error("the bench credential was refused");
  const perCall = async (authenticator: typeof basic) => {
    started = performance.now();
    for (let i = 0; i < rounds; i++) await authenticator.authenticate(request, Date.now());
    return ((performance.now() - started) * 1000) / rounds;
  };
  const cachedUs = await perCall(basic);
  const anonymousUs = await perCall(anonymous);
  return {
    basicFirstMs: Math.round(firstMs),
    basicCachedUs: Math.round(cachedUs * 10) / 10,
    anonymousUs: Math.round(anonymousUs * 10) / 10,
    bcryptCompares: compares,
    requests: rounds + 1,
  };
}
