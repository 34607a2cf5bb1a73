import { execFile, execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import bcrypt from "bcryptjs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const execFileAsync = promisify(execFile);

import { toItem } from "../../functions/adapters/dynamodb/session-item.ts";
import type { SessionRecord } from "../../functions/bits/session.ts";
import { buildBundles } from "../../scripts/build.ts";
import { startEventBridgeStandIn } from "../support/eventbridge-stand-in.ts";
import { startSsmStandIn } from "../support/ssm-stand-in.ts";

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

  /** Asynchronous, so that a stand-in served by this process can answer the bundle. */
  const run = async (bundle: string, event: unknown, env: Record<string, string> = {}) => {
    const { stdout: out } = await execFileAsync(
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
          BITS_AUTH: "anonymous",
          NODE_NO_WARNINGS: "1",
          ...env,
        },
        encoding: "utf8",
        timeout: 30_000,
      },
    );
    return JSON.parse(out.trim().split("\n").at(-1) ?? "{}") as { result: unknown; ms: number };
  };

  it("the upload bundle imports in a fresh Node process and answers a Ping event with an Ack", async () => {
    const { result, ms } = await run("upload/handler.mjs", PING_ALB_EVENT);
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

  it("a deployed function never defaults to anonymous: without BITS_AUTH the cold start stops", () => {
    expect(() =>
      execFileSync(process.execPath, [join(dir, "upload/handler.mjs")], {
        env: {
          PATH: process.env.PATH ?? "",
          BITS_BUCKET: "b",
          BITS_TABLE: "t",
          NODE_NO_WARNINGS: "1",
        },
        encoding: "utf8",
        stdio: "pipe",
      }),
    ).toThrow(/BITS_AUTH is required/);
  });

  it("with Basic auth whose htpasswd lives in SSM, the bundle loads its SSM chunk, challenges and admits", async () => {
    const ssm = await startSsmStandIn();
    try {
      ssm.put("/bits/htpasswd", `alice:${bcrypt.hashSync("s3cret", 4)}\n`);
      const env = {
        BITS_AUTH: "basic",
        BITS_HTPASSWD_PARAMETER: "/bits/htpasswd",
        // The SDK's service-specific endpoint variable points the bundled client at the stand-in.
        AWS_ENDPOINT_URL_SSM: ssm.endpoint,
        AWS_ACCESS_KEY_ID: "local",
        AWS_SECRET_ACCESS_KEY: "local",
      };
      const https = { ...PING_ALB_EVENT.headers, "x-forwarded-proto": "https" };
      const challenged = await run(
        "upload/handler.mjs",
        { ...PING_ALB_EVENT, headers: https },
        env,
      );
      expect(challenged.result).toMatchObject({
        statusCode: 401,
        headers: { "WWW-Authenticate": 'Basic realm="BITS uploads", charset="UTF-8"' },
      });
      expect(JSON.stringify(challenged.result)).not.toContain("BITS-Packet-Type");
      const authorization = `Basic ${Buffer.from("alice:s3cret").toString("base64")}`;
      const admitted = await run(
        "upload/handler.mjs",
        { ...PING_ALB_EVENT, headers: { ...https, authorization } },
        env,
      );
      expect(admitted.result).toMatchObject({
        statusCode: 200,
        headers: { "BITS-Packet-Type": "Ack" },
      });
      console.log(`fresh import + SSM read + bcrypt + first Ping: ${admitted.ms.toFixed(0)} ms`);
    } finally {
      await ssm.close();
    }
  });

  it("the cleanup bundle turns a stream record of an ending into one PutEvents on the named bus", async () => {
    const bus = await startEventBridgeStandIn();
    try {
      const before: SessionRecord = {
        id: "{6F9619FF-8B86-D011-B42D-00C04FC964FF}",
        status: "committing",
        key: "reports/2026-11.zip",
        principal: "alice",
        slot: "p:alice",
        overwrite: false,
        maxBytes: 100,
        fragments: 1,
        uploadId: "u",
        total: 3,
        bytesInParts: 3,
        offset: 3,
        etags: [],
        chunks: 0,
        version: 4,
        expiresAt: 2_000_000_000,
      };
      const after = {
        ...before,
        status: "closed" as const,
        version: 5,
        outcome: { kind: "completed" as const, at: 1_800_000_000_000 },
      };
      const event = {
        Records: [
          {
            eventID: "1",
            eventName: "MODIFY",
            eventSource: "aws:dynamodb",
            dynamodb: { OldImage: toItem(before), NewImage: toItem(after) },
          },
        ],
      };
      const { result } = await run("cleanup/handler.mjs", event, {
        BITS_EVENTS: "eventbridge",
        BITS_EVENT_BUS: "uploads-bus",
        AWS_ENDPOINT_URL_EVENTBRIDGE: bus.endpoint,
        AWS_ACCESS_KEY_ID: "local",
        AWS_SECRET_ACCESS_KEY: "local",
      });
      expect(result).toEqual({ cleaned: 0, events: 1 });
      expect(bus.accepted).toHaveLength(1);
      expect(bus.accepted[0]).toMatchObject({
        EventBusName: "uploads-bus",
        Source: "bits.upload",
        DetailType: "Upload Completed",
        Resources: ["arn:aws:s3:::bucket/reports/2026-11.zip"],
      });
      expect(JSON.parse(bus.accepted[0]?.Detail ?? "{}")).toMatchObject({
        eventId: before.id,
        key: before.key,
        size: 3,
      });
    } finally {
      await bus.close();
    }
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
