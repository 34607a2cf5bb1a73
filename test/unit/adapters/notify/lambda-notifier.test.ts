import type { LambdaClient } from "@aws-sdk/client-lambda";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LambdaNotifier } from "../../../../functions/adapters/notify/lambda-notifier.ts";
import type { NotificationRequest } from "../../../../functions/ports/notifier.ts";
import {
  type LambdaStandIn,
  standInLambda,
  startLambdaStandIn,
} from "../../../support/lambda-stand-in.ts";

let standIn: LambdaStandIn;
let client: LambdaClient;
let notifier: LambdaNotifier;
const pending: (() => void)[] = [];

beforeAll(async () => {
  standIn = await startLambdaStandIn();
  client = standInLambda(standIn.endpoint);
  notifier = new LambdaNotifier(client);
  const answer = (result: unknown) => async () => result;
  standIn.register("utf8", answer({ statusCode: 200, body: "héllo reply" }));
  standIn.register(
    "base64",
    answer({
      statusCode: 200,
      body: Buffer.from([0, 1, 254, 255]).toString("base64"),
      isBase64Encoded: true,
    }),
  );
  standIn.register(
    "static",
    answer({ statusCode: 200, body: "ignored", staticResponseUrl: "https://replies.example/r/1" }),
  );
  standIn.register("copy", answer({ statusCode: 200, copyFileToDestination: true, body: null }));
  standIn.register("denied", answer({ statusCode: 403, errorCode: "0x80070005" }));
  standIn.register("broken", answer({ statusCode: 500, errorCode: "nonsense" }));
  standIn.register("not-an-answer", answer({ hello: "world" }));
  standIn.register("wrong-types", answer({ statusCode: 200, body: 42 }));
  standIn.register("big", answer({ statusCode: 200, body: "x".repeat(2_000) }));
  standIn.register("relative", answer({ statusCode: 200, staticResponseUrl: "/r/1" }));
  standIn.register("throws", async () => {
    throw new Error("the application fell over");
  });
  standIn.register(
    "slow",
    () => new Promise((resolve) => pending.push(() => resolve({ statusCode: 200 }))),
  );
});

afterAll(async () => {
  for (const release of pending) release();
  client.destroy();
  await standIn.close();
});

function notification(name: string, overrides: Partial<NotificationRequest> = {}) {
  return {
    type: "reference",
    target: `lambda:${name}`,
    originalUrl: "https://bits.example/uploads/a%20file.bin",
    sessionId: "{11111111-2222-3333-4444-555555555555}",
    principal: "alice",
    request: {
      bucket: "uploads-bucket",
      key: "uploads/a file.bin",
      size: 12_345_678,
      readUrl: "https://s3.example/get?X-Amz-Signature=get",
      open: () => Promise.reject(new Error("a Lambda notification never opens the file")),
    },
    response: {
      bucket: "uploads-bucket",
      key: "replies/r1",
      writeUrl: "https://s3.example/put?X-Amz-Signature=put",
    },
    timeoutMs: 5_000,
    maxReplyBytes: 1_500,
    ...overrides,
  } satisfies NotificationRequest;
}

describe("LambdaNotifier", () => {
  it("invokes synchronously with the documented event", async () => {
    const before = standIn.invocations.length;
    await notifier.notify(notification("utf8", { type: "value" }));
    expect(standIn.invocations.slice(before)).toEqual([
      {
        functionName: "utf8",
        invocationType: "RequestResponse",
        event: {
          version: "1",
          type: "value",
          originalUrl: "https://bits.example/uploads/a%20file.bin",
          sessionId: "{11111111-2222-3333-4444-555555555555}",
          principal: "alice",
          request: {
            bucket: "uploads-bucket",
            key: "uploads/a file.bin",
            size: 12_345_678,
            url: "https://s3.example/get?X-Amz-Signature=get",
          },
          response: {
            bucket: "uploads-bucket",
            key: "replies/r1",
            url: "https://s3.example/put?X-Amz-Signature=put",
          },
        },
      },
    ]);
  });

  it("returns a utf8 body as the reply, by either type", async () => {
    for (const type of ["value", "reference"] as const) {
      const result = await notifier.notify(notification("utf8", { type }));
      expect(result).toMatchObject({ kind: "ok", copyToDestination: false });
      expect(result.kind === "ok" && Buffer.from(result.reply ?? []).toString()).toBe(
        "héllo reply",
      );
    }
  });

  it("decodes a base64 body", async () => {
    const result = await notifier.notify(notification("base64"));
    expect(result.kind === "ok" && [...(result.reply ?? [])]).toEqual([0, 1, 254, 255]);
  });

  it("returns a static reply URL, ignoring the body", async () => {
    expect(await notifier.notify(notification("static"))).toEqual({
      kind: "ok",
      staticUrl: "https://replies.example/r/1",
      copyToDestination: false,
    });
  });

  it("returns the copy flag and no reply when there is no body", async () => {
    expect(await notifier.notify(notification("copy"))).toEqual({
      kind: "ok",
      copyToDestination: true,
      reply: undefined,
    });
  });

  it("maps a statusCode other than 200 to an app-error, with a well-formed errorCode only", async () => {
    expect(await notifier.notify(notification("denied"))).toEqual({
      kind: "app-error",
      status: 403,
      errorCode: 0x80070005,
      message: expect.stringContaining("403"),
    });
    expect(await notifier.notify(notification("broken"))).toMatchObject({
      kind: "app-error",
      status: 500,
      errorCode: undefined,
    });
  });

  it("maps a function error to an app-error 502 with its message", async () => {
    expect(await notifier.notify(notification("throws"))).toEqual({
      kind: "app-error",
      status: 502,
      message: expect.stringContaining("the application fell over"),
    });
  });

  it.each(["not-an-answer", "wrong-types", "big", "relative"])(
    "refuses an unusable answer (%s)",
    async (name) => {
      expect((await notifier.notify(notification(name))).kind).toBe("unreachable");
    },
  );

  it("reports an unknown function as unreachable", async () => {
    const result = await notifier.notify(notification("nobody"));
    expect(result).toEqual({
      kind: "unreachable",
      message: expect.stringContaining("does not exist"),
    });
    expect(JSON.stringify(result)).not.toContain("X-Amz-Signature");
  });

  it("finds a function by ARN", async () => {
    const arn = "arn:aws:lambda:us-east-1:123456789012:function:utf8";
    expect((await notifier.notify(notification(arn))).kind).toBe("ok");
  });

  it("times out a slow function within the budget", async () => {
    const started = performance.now();
    expect(await notifier.notify(notification("slow", { timeoutMs: 300 }))).toEqual({
      kind: "timeout",
    });
    expect(performance.now() - started).toBeLessThan(600);
  });
});
