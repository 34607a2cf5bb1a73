import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MemoryEventSink } from "../../functions/adapters/memory/memory-event-sink.ts";
import { HttpNotifier } from "../../functions/adapters/notify/http-notifier.ts";
import { LambdaNotifier } from "../../functions/adapters/notify/lambda-notifier.ts";
import { RoutingNotifier } from "../../functions/adapters/notify/notifier.ts";
import { BITS_PROTOCOL_GUID, MiB } from "../../functions/bits/constants.ts";
import type { NotificationRule } from "../../functions/bits/notification.ts";
import { sha256 } from "../support/checks.ts";
import { standInLambda, startLambdaStandIn } from "../support/lambda-stand-in.ts";
import { localServer } from "../support/local.ts";
import { startReplyApp } from "../support/reply-app.ts";
import { bucketKeys, realService, type StandInKind } from "../support/storage.ts";
import { httpTransport, lambdaTransport, packet, type Transport } from "../support/transports.ts";
import { bitsUpload, randomBytes } from "../support/windows-client.ts";

/**
 * Upload-reply jobs end to end ([MC-BUP] 1.3.3, 3.3; docs/upload-reply.md), against the S3 and
 * DynamoDB stand-ins, with real applications: a Node `http` server, and a Lambda function behind
 * a stand-in of the Lambda Invoke API reached by the real SDK client.
 */

const rules = (type: "value" | "reference", url: string): NotificationRule[] => [
  { path: "/", type, url },
];

let app: Awaited<ReturnType<typeof startReplyApp>>;
let lambda: Awaited<ReturnType<typeof startLambdaStandIn>>;

beforeAll(async () => {
  app = await startReplyApp((_, res) => {
    res.end();
  });
  lambda = await startLambdaStandIn();
});
afterAll(async () => {
  await app.close();
  await lambda.close();
});

async function server(
  type: "value" | "reference",
  url: string,
  timeoutMs = 10_000,
  standIn: StandInKind = "fauxqs",
) {
  const notifier = new RoutingNotifier({
    http: new HttpNotifier(),
    lambda: async () => new LambdaNotifier(standInLambda(lambda.endpoint)),
  });
  const env = await localServer(
    { notifications: rules(type, url), notificationTimeoutMs: timeoutMs },
    { notifier, standIn },
  );
  const transport = httpTransport(env.server.url);
  return {
    ...env,
    transport,
    async close() {
      transport.close();
      await env.server.close();
    },
  };
}

async function uploadAllButClose(transport: Transport, path: string, data: Uint8Array) {
  const created = await packet(transport, path, {
    "BITS-Packet-Type": "Create-Session",
    "BITS-Supported-Protocols": BITS_PROTOCOL_GUID,
  });
  const id = created.headers.get("bits-session-id") ?? "";
  const last = data.length - 1;
  const final = {
    "BITS-Packet-Type": "Fragment",
    "BITS-Session-Id": id,
    "Content-Range": `bytes 0-${last}/${data.length}`,
  };
  return {
    id,
    final: (via: Transport = transport) => packet(via, path, final, data),
  };
}

/** A Windows-like reply job, start to close, on the stand-in named. */
async function windowsLikeReplyJob(standIn: StandInKind) {
  const env = await server("value", `${app.url}/inventory?site=lab`, 10_000, standIn);
  app.answer((n, res) => {
    res.end(`policy for ${sha256(n.body)}`);
  });
  const before = app.received.length;
  try {
    const data = randomBytes(3 * MiB + 11, 40);
    const outcome = await bitsUpload(env.transport, "/in/host-1.json?job=7", data, {
      initialFragment: 256 * 1024,
      maxFragment: MiB,
      replyRangeBytes: 16,
    });
    const notification = app.received[before];
    expect(app.received.length - before).toBe(1);
    expect(notification?.method).toBe("POST");
    expect(notification?.url).toBe("/inventory?site=lab&job=7");
    expect(notification?.headers["bits-original-request-url"]).toBe(
      `${env.server.url}/in/host-1.json?job=7`,
    );
    expect(sha256(notification?.body ?? Buffer.alloc(0))).toBe(sha256(data));
    expect(Buffer.from(outcome.reply ?? []).toString()).toBe(`policy for ${sha256(data)}`);
    expect(outcome.replyUrl?.startsWith(`${env.server.url}/.bits-replies/`)).toBe(true);
    // Without BITS-Copy-File-To-Destination nothing is kept at the destination, and Close
    // removed the request and the reply.
    expect(await bucketKeys(env.bucket, standIn)).toEqual([]);
    const gone = await env.transport({
      method: "GET",
      path: new URL(outcome.replyUrl ?? "").pathname,
      headers: {},
      body: new Uint8Array(0),
    });
    expect(gone.status).toBe(404);
  } finally {
    await env.close();
  }
}

describe("by value: the file is POSTed to the application, its answer is the reply", () => {
  it("a Windows-like client uploads, downloads the reply with ranged GETs, then closes", () =>
    windowsLikeReplyJob("fauxqs"));

  it("the same on moto", () => windowsLikeReplyJob("moto"));

  it("BITS-Copy-File-To-Destination keeps the upload at its destination key", async () => {
    const env = await server("value", `${app.url}/keep`);
    app.answer((_, res) => {
      res.writeHead(200, { "BITS-Copy-File-To-Destination": "1" });
      res.end("kept");
    });
    try {
      const data = randomBytes(7 * MiB, 41);
      const outcome = await bitsUpload(env.transport, "/keep/me.bin", data, { maxFragment: MiB });
      expect(Buffer.from(outcome.reply ?? []).toString()).toBe("kept");
      const stored = await env.objects.get("keep/me.bin");
      expect(stored && sha256(stored)).toBe(sha256(data));
      expect(await bucketKeys(env.bucket)).toEqual(["keep/me.bin"]);
    } finally {
      await env.close();
    }
  });

  it("a static reply URL is given to the client as is", async () => {
    const env = await server("value", `${app.url}/static`);
    app.answer((_, res) => {
      res.writeHead(200, { "BITS-Static-Response-URL": `${app.url}/static-reply.txt` });
      res.end();
    });
    try {
      const { final } = await uploadAllButClose(env.transport, "/s.bin", randomBytes(1000, 42));
      const ack = await final();
      expect(ack.status).toBe(200);
      expect(ack.headers.get("bits-reply-url")).toBe(`${app.url}/static-reply.txt`);
    } finally {
      await env.close();
    }
  });
});

describe("application errors, timeouts and resent final fragments", () => {
  it("a 5xx is passed on with context 0x7; the resent final fragment notifies again and succeeds", async () => {
    const env = await server("value", `${app.url}/flaky`);
    let calls = 0;
    app.answer((_, res) => {
      calls += 1;
      if (calls === 1) {
        res.writeHead(503, { "BITS-Error-Code": "0x80070020" });
        res.end();
      } else {
        res.end("second time lucky");
      }
    });
    try {
      const { final } = await uploadAllButClose(env.transport, "/f.bin", randomBytes(5000, 43));
      const failed = await final();
      expect(failed.status).toBe(503);
      expect(failed.headers.get("bits-error-code")).toBe("0x80070020");
      expect(failed.headers.get("bits-error-context")).toBe("0x7");
      expect(failed.headers.has("bits-reply-url")).toBe(false);
      const ok = await final();
      expect(ok.status).toBe(200);
      // The reply of the second notification, kept by the server under its reply path.
      const replyUrl = ok.headers.get("bits-reply-url") ?? "";
      expect(replyUrl.startsWith(`${env.server.url}/.bits-replies/`)).toBe(true);
      const reply = await env.transport({
        method: "GET",
        path: new URL(replyUrl).pathname,
        headers: {},
        body: new Uint8Array(0),
      });
      expect(reply.status).toBe(200);
      expect(Buffer.from(reply.body ?? []).toString()).toBe("second time lucky");
      // A third copy after success: the same Ack, no third notification.
      const again = await final();
      expect(again.headers.get("bits-reply-url")).toBe(ok.headers.get("bits-reply-url"));
      expect(calls).toBe(2);
    } finally {
      await env.close();
    }
  });

  it("a 4xx without a BITS error code is BG_E_HTTP_ERROR_<status>, context 0x7", async () => {
    const env = await server("value", `${app.url}/bad`);
    app.answer((_, res) => {
      res.writeHead(400);
      res.end();
    });
    try {
      const { final } = await uploadAllButClose(env.transport, "/b.bin", randomBytes(10, 44));
      const failed = await final();
      expect(failed.status).toBe(400);
      expect(failed.headers.get("bits-error-code")).toBe("0x80190190");
      expect(failed.headers.get("bits-error-context")).toBe("0x7");
    } finally {
      await env.close();
    }
  });

  it("an application slower than the timeout gets the client 408, context 0x7", async () => {
    const env = await server("value", `${app.url}/slow`, 500);
    app.answer(async (_, res) => {
      await new Promise((resolve) => setTimeout(resolve, 3000));
      res.end("too late");
    });
    try {
      const { final } = await uploadAllButClose(env.transport, "/slow.bin", randomBytes(10, 45));
      const started = Date.now();
      const failed = await final();
      expect(failed.status).toBe(408);
      expect(failed.headers.get("bits-error-context")).toBe("0x7");
      expect(Date.now() - started).toBeLessThan(3000);
    } finally {
      await env.close();
    }
  });

  it("two copies of the final fragment at once notify once and get the same reply URL", async () => {
    const env = await server("value", `${app.url}/once`);
    let calls = 0;
    app.answer(async (_, res) => {
      calls += 1;
      await new Promise((resolve) => setTimeout(resolve, 300));
      res.end("once");
    });
    try {
      const { final } = await uploadAllButClose(env.transport, "/o.bin", randomBytes(2000, 46));
      // Both copies of the final fragment at once, on two connections.
      const copy = httpTransport(env.server.url);
      const [a, b] = await Promise.all([final(), final(copy)]);
      copy.close();
      expect(a.status).toBe(200);
      expect(b.status).toBe(200);
      expect(a.headers.get("bits-reply-url")).toBe(b.headers.get("bits-reply-url"));
      expect(calls).toBe(1);
    } finally {
      await env.close();
    }
  });
});

describe("by reference: the application reads the upload and writes the reply in S3", () => {
  it("S3 locations and presigned URLs in headers; the reply written through the URL is served", async () => {
    const env = await server("reference", `${app.url}/ref`);
    app.answer(async (n, res) => {
      const read = await fetch(String(n.headers["bits-request-datafile-url"]));
      const body = new Uint8Array(await read.arrayBuffer());
      await fetch(String(n.headers["bits-response-datafile-url"]), {
        method: "PUT",
        body: `ticket ${sha256(body)}`,
      });
      res.end("ignored in this mode");
    });
    const before = app.received.length;
    try {
      const data = randomBytes(2 * MiB, 47);
      const outcome = await bitsUpload(env.transport, "/dumps/crash.dmp", data, {
        maxFragment: MiB,
      });
      const notification = app.received[before];
      expect(notification?.body.length).toBe(0);
      expect(notification?.headers["bits-request-datafile-name"]).toMatch(
        new RegExp(`^s3://${env.bucket}/\\.bits-staging/.+/request$`),
      );
      expect(notification?.headers["bits-response-datafile-name"]).toMatch(/\/reply$/);
      expect(Buffer.from(outcome.reply ?? []).toString()).toBe(`ticket ${sha256(data)}`);
    } finally {
      await env.close();
    }
  });
});

describe("a Lambda function as the application, and replies larger than the ALB carries", () => {
  it("the function gets the documented event and answers a reply of tens of MB, downloaded through the ALB event shape", async () => {
    const big = randomBytes(24 * MiB, 48);
    let event: Record<string, unknown> | undefined;
    lambda.register("reply-maker", async (received) => {
      event = received as Record<string, unknown>;
      return { statusCode: 200, body: Buffer.from(big).toString("base64"), isBase64Encoded: true };
    });
    const env = await realService(
      { notifications: rules("value", "lambda:reply-maker"), maxResponseBody: 700_000 },
      {
        notifier: new RoutingNotifier({
          http: new HttpNotifier(),
          lambda: async () => new LambdaNotifier(standInLambda(lambda.endpoint)),
        }),
      },
    );
    const alb = lambdaTransport(env.service, "alb");
    const data = randomBytes(100_000, 49);
    const outcome = await bitsUpload(alb, "/apps/input.bin", data, {
      replyRangeBytes: 4 * MiB,
      maxRequests: 200,
    });
    expect(event).toMatchObject({
      version: "1",
      type: "value",
      request: { bucket: env.bucket, size: data.length },
      response: { bucket: env.bucket },
    });
    expect(sha256(outcome.reply ?? new Uint8Array(0))).toBe(sha256(big));
  });
});

describe("after the reply: Cancel, expiry, and who may fetch it", () => {
  it("Cancel-Session after the final fragment cancels only the reply: a copy at the destination stays", async () => {
    const env = await server("value", `${app.url}/cancel`);
    app.answer((_, res) => {
      res.writeHead(200, { "BITS-Copy-File-To-Destination": "yes" });
      res.end("reply");
    });
    try {
      const data = randomBytes(4000, 50);
      const { id, final } = await uploadAllButClose(env.transport, "/c.bin", data);
      const ack = await final();
      const replyPath = new URL(ack.headers.get("bits-reply-url") ?? "").pathname;
      const head = () =>
        env.transport({ method: "HEAD", path: replyPath, headers: {}, body: new Uint8Array(0) });
      expect((await head()).status).toBe(200);
      const cancel = await packet(env.transport, "/c.bin", {
        "BITS-Packet-Type": "Cancel-Session",
        "BITS-Session-Id": id,
      });
      expect(cancel.status).toBe(200);
      expect((await head()).status).toBe(404);
      expect(await bucketKeys(env.bucket)).toEqual(["c.bin"]);
      const stored = await env.objects.get("c.bin");
      expect(stored && sha256(stored)).toBe(sha256(data));
    } finally {
      await env.close();
    }
  });

  it("an expired session's request and reply are removed by the cleanup sweep", async () => {
    const env = await server("value", `${app.url}/expire`);
    app.answer((_, res) => {
      res.end("reply to expire");
    });
    try {
      const { final } = await uploadAllButClose(env.transport, "/e.bin", randomBytes(3000, 51));
      expect((await final()).status).toBe(200);
      expect((await bucketKeys(env.bucket)).some((key) => key.endsWith("/reply"))).toBe(true);
      env.runtime.advance((env.context.settings.sessionTimeoutSeconds + 1) * 1000);
      const { createCleanupHandler } = await import(
        "../../functions/adapters/lambda/cleanup-handler.ts"
      );
      await createCleanupHandler(
        env.context,
        async () => new MemoryEventSink(),
      )({
        source: "aws.events",
      });
      expect(await bucketKeys(env.bucket)).toEqual([]);
    } finally {
      await env.close();
    }
  });

  it("with Basic auth only the session's own principal may fetch the reply", async () => {
    const bcrypt = (await import("bcryptjs")).default;
    const { createAuthenticator } = await import("../../functions/auth/authenticator.ts");
    const text = `alice:${bcrypt.hashSync("a-pw", 4)}\nbob:${bcrypt.hashSync("b-pw", 4)}\n`;
    const authenticator = createAuthenticator(["basic"], {
      realm: "r",
      htpasswd: { source: "test", current: async () => text },
    });
    app.answer((_, res) => {
      res.end("for alice only");
    });
    const env = await realService(
      { notifications: rules("value", `${app.url}/private`) },
      { authenticator, notifier: new HttpNotifier() },
    );
    const as = (user?: string, password?: string): Transport => {
      const alb = lambdaTransport(env.service, "alb");
      const authorization = user
        ? `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`
        : undefined;
      return (req) =>
        alb({
          ...req,
          headers: {
            ...req.headers,
            "X-Forwarded-Proto": "https",
            ...(authorization ? { Authorization: authorization } : {}),
          },
        });
    };
    const data = randomBytes(2000, 52);
    const { final } = await uploadAllButClose(as("alice", "a-pw"), "/p.bin", data);
    const replyPath = new URL((await final()).headers.get("bits-reply-url") ?? "").pathname;
    const get = (transport: Transport) =>
      transport({ method: "GET", path: replyPath, headers: {}, body: new Uint8Array(0) });
    expect((await get(as())).status).toBe(401);
    expect((await get(as("bob", "b-pw"))).status).toBe(404);
    const mine = await get(as("alice", "a-pw"));
    expect(mine.status).toBe(200);
    expect(Buffer.from(mine.body ?? []).toString()).toBe("for alice only");
  });
});
