import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildBundles } from "../../scripts/build.ts";

/** Imports a bundle in a fresh Node process and hands it one event; prints its answer. */
const PROBE = `
const started = performance.now();
const { handler } = await import(process.argv[2]);
const result = await handler(JSON.parse(process.argv[3]));
console.log(JSON.stringify({ result, ms: performance.now() - started }));
`;

const PING_ALB_EVENT = {
  requestContext: { elb: { targetGroupArn: "arn:aws:elasticloadbalancing:tg" } },
  httpMethod: "BITS_POST",
  path: "/reports/2026-11.zip",
  headers: { "bits-packet-type": "Ping", "content-length": "0", host: "uploads.example.com" },
  body: "",
  isBase64Encoded: false,
};

describe("the Lambda bundles esbuild writes (what serverless.yml packages)", () => {
  let dir: string;
  let sizes: Record<string, number>;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "bits-bundle-"));
    sizes = await buildBundles(dir);
    writeFileSync(join(dir, "probe.mjs"), PROBE);
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const run = (bundle: string, event: unknown) => {
    const out = execFileSync(
      process.execPath,
      [join(dir, "probe.mjs"), join(dir, bundle), JSON.stringify(event)],
      {
        // Only what the function's configuration gives it: no endpoints, no credentials.
        env: {
          PATH: process.env.PATH ?? "",
          AWS_REGION: "eu-west-1",
          BITS_BUCKET: "bucket",
          BITS_TABLE: "table",
          BITS_LOG_LEVEL: "silent",
          NODE_NO_WARNINGS: "1",
        },
        encoding: "utf8",
        timeout: 30_000,
      },
    );
    return JSON.parse(out.trim().split("\n").at(-1) ?? "{}") as { result: unknown; ms: number };
  };

  it("the upload bundle imports in a fresh Node process and answers a Ping event with an Ack", () => {
    const { result, ms } = run("upload/handler.mjs", PING_ALB_EVENT);
    expect(result).toEqual({
      statusCode: 200,
      statusDescription: "200 OK",
      headers: { "BITS-Packet-Type": "Ack", "Content-Length": "0" },
      body: "",
      isBase64Encoded: false,
    });
    console.log(
      `upload bundle: ${sizes.upload} bytes; fresh import + first Ping: ${ms.toFixed(0)} ms`,
    );
    console.log(`cleanup bundle: ${sizes.cleanup} bytes`);
  });

  it("a bad configuration stops the cold start with a message naming the variable", () => {
    expect(() =>
      execFileSync(process.execPath, [join(dir, "upload/handler.mjs")], {
        env: { PATH: process.env.PATH ?? "", BITS_TABLE: "t", NODE_NO_WARNINGS: "1" },
        encoding: "utf8",
        stdio: "pipe",
      }),
    ).toThrow(/BITS_BUCKET is required/);
  });
});
