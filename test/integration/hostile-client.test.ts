import type { ServerResponse } from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { HttpNotifier } from "../../functions/adapters/notify/http-notifier.ts";
import { createAuthenticator } from "../../functions/auth/authenticator.ts";
import { signUploadUrl } from "../../functions/auth/signed-url.ts";
import type { Authenticator } from "../../functions/auth/types.ts";
import { BITS_PROTOCOL_GUID, MiB } from "../../functions/bits/constants.ts";
import type { NotificationRule } from "../../functions/bits/notification.ts";
import type { ServiceSettings } from "../../functions/service/context.ts";
import { sessionDir } from "../../functions/service/staging.ts";
import type { UploadService } from "../../functions/service/upload-service.ts";
import { call } from "../support/calls.ts";
import { sha256 } from "../support/checks.ts";
import { type Notification, startReplyApp } from "../support/reply-app.ts";
import { bucketKeys, realService } from "../support/storage.ts";
import { packet, type Transport } from "../support/transports.ts";
import { bitsUpload, randomBytes } from "../support/windows-client.ts";

/**
 * What a hostile client tried against the shared handler (docs/security.md), each written as the
 * attack: a second spelling of a path, a Host header naming another server, a query string
 * naming the operator's parameters, an oversize reply, slivers under a huge declared total, and
 * a log read for session IDs and tokens.
 */

const ACCESS_DENIED = "0x80070005";
const secret = (text: string) => ({ source: "test", current: async () => text });
const KEY = Buffer.alloc(32, 9).toString("base64url");

/** Straight into the service, any method, as a client over TLS with these extra headers. */
function direct(service: UploadService, extra: Record<string, string> = {}): Transport {
  return async (req) => {
    const response = await call(service, {
      method: req.method,
      path: req.path,
      headers: { ...req.headers, ...extra },
      body: req.body,
      peer: { secure: true, scheme: "https", address: "203.0.113.9" },
    });
    const body =
      response.body === undefined || response.body instanceof Uint8Array
        ? response.body
        : new Uint8Array(await new Response(response.body).arrayBuffer());
    return {
      status: response.status,
      headers: new Map(Object.entries(response.headers).map(([k, v]) => [k.toLowerCase(), v])),
      ...(body === undefined ? {} : { body }),
    };
  };
}

/** A service on the real stand-ins whose log lines are kept, as they would be printed. */
async function logged(settings: Partial<ServiceSettings>, authenticator?: Authenticator) {
  const env = await realService(settings, {
    notifier: new HttpNotifier(),
    ...(authenticator ? { authenticator } : {}),
  });
  const lines: string[] = [];
  env.runtime.log = (level, message, fields = {}) => {
    lines.push(JSON.stringify({ level, message, ...fields }));
  };
  return { ...env, lines };
}

const create = (transport: Transport, path: string) =>
  packet(transport, path, {
    "BITS-Packet-Type": "Create-Session",
    "BITS-Supported-Protocols": BITS_PROTOCOL_GUID,
  });

const byValue = (path: string, url: string): NotificationRule[] => [{ path, type: "value", url }];

let app: Awaited<ReturnType<typeof startReplyApp>>;
let stranger: Awaited<ReturnType<typeof startReplyApp>>;
const replyWith = (text: string) => (_: Notification, res: ServerResponse) => {
  res.end(text);
};

beforeAll(async () => {
  app = await startReplyApp(replyWith("reply"));
  // Where a hostile client would like the server to send its requests.
  stranger = await startReplyApp(replyWith("stranger's reply"));
});
afterAll(async () => {
  await app.close();
  await stranger.close();
});

describe("one canonical path: every decision is made on the path the key is made from", () => {
  it("a by-value rule for /alice/abs/ is not bypassed by /alice/%61bs/", async () => {
    const env = await logged({ notifications: byValue("/alice/abs/", `${app.url}/notify`) });
    const before = app.received.length;
    const data = randomBytes(20_000, 21);
    const outcome = await bitsUpload(direct(env.service), "/alice/%61bs/bypass.txt", data);
    expect(outcome.reply && Buffer.from(outcome.reply).toString()).toBe("reply");
    const notified = app.received.slice(before);
    expect(notified).toHaveLength(1);
    expect(sha256(notified[0]?.body ?? new Uint8Array())).toBe(sha256(data));
    // Without BITS-Copy-File-To-Destination nothing lands at the destination.
    expect(await bucketKeys(env.bucket)).toEqual([]);
    // The application and the audit line see the canonical path.
    expect(notified[0]?.headers["bits-original-request-url"]).toMatch(/\/alice\/abs\/bypass\.txt$/);
    const packets = env.lines
      .map((line) => JSON.parse(line))
      .filter((line) => line.message === "request" && line.method === "BITS_POST");
    expect(packets.length).toBeGreaterThan(2);
    expect(new Set(packets.map((line) => line.path))).toEqual(new Set(["/alice/abs/bypass.txt"]));
  });

  it("an upload path enabled as /uploads/ is the same path spelled /%75ploads/", async () => {
    const env = await realService({ uploadPaths: ["/uploads/"] });
    const data = randomBytes(9_000, 22);
    await bitsUpload(direct(env.service), "/%75ploads/x.bin", data);
    const stored = await env.objects.get("uploads/x.bin");
    expect(stored && sha256(stored)).toBe(sha256(data));
  });
});

describe("no request the server makes takes its target from the request", () => {
  it("a relative notification URL resolves against the configured origin, never the Host header", async () => {
    const env = await logged({
      notifications: byValue("/", "notify"),
      publicOrigin: app.url,
    });
    const host = new URL(stranger.url).host;
    const [appBefore, strangerBefore] = [app.received.length, stranger.received.length];
    const data = randomBytes(6_000, 23);
    const outcome = await bitsUpload(direct(env.service, { Host: host }), "/in/f.bin", data);
    expect(stranger.received.length).toBe(strangerBefore);
    expect(app.received.slice(appBefore).map((n) => n.url)).toEqual(["/in/notify"]);
    expect(outcome.reply && Buffer.from(outcome.reply).toString()).toBe("reply");
    // The reply URL given back is on the configured origin too.
    expect(outcome.replyUrl?.startsWith(`${app.url}/.bits-replies/`)).toBe(true);
  });

  it("without a configured origin a relative notification URL notifies no one", async () => {
    const env = await logged({ notifications: byValue("/", "notify") });
    const host = new URL(stranger.url).host;
    const before = stranger.received.length;
    const created = await create(direct(env.service, { Host: host }), "/in/g.bin");
    expect(created.status).toBe(500);
    expect(stranger.received.length).toBe(before);
  });

  it("the client's query string adds parameters but never repeats or replaces the operator's", async () => {
    const env = await logged({ notifications: byValue("/", `${app.url}/notify?account=42`) });
    const before = app.received.length;
    const path = "/q.bin?ACCOUNT=666&account=7&job=9";
    await bitsUpload(direct(env.service), path, randomBytes(5_000, 24));
    expect(app.received.slice(before).map((n) => n.url)).toEqual(["/notify?account=42&job=9"]);
  });

  it("a reply written through the presigned PUT URL is bounded in size and lifetime", async () => {
    const limit = 1_000;
    const env = await logged({
      notifications: [{ path: "/", type: "reference", url: `${app.url}/by-reference` }],
      maxReplyBytes: limit,
      notificationTimeoutMs: 5_000,
    });
    const urls: string[] = [];
    app.answer(async (notification, res) => {
      const url = String(notification.headers["bits-response-datafile-url"]);
      urls.push(url);
      const put = await fetch(url, { method: "PUT", body: new Uint8Array(limit + 1) });
      res.writeHead(put.ok ? 200 : 500).end();
    });
    try {
      const client = direct(env.service);
      const data = randomBytes(5_000, 25);
      const id = (await create(client, "/big-reply.bin")).headers.get("bits-session-id") ?? "";
      const final = await packet(
        client,
        "/big-reply.bin",
        {
          "BITS-Packet-Type": "Fragment",
          "BITS-Session-Id": id,
          "Content-Range": `bytes 0-${data.length - 1}/${data.length}`,
        },
        data,
      );
      expect(urls).toHaveLength(1);
      expect(new URL(urls[0] ?? "").searchParams.get("X-Amz-Expires")).toBe("5");
      // Not served: the application failed, and the client resends the final fragment.
      expect(final.status).toBe(502);
      expect(final.headers.get("bits-error-context")).toBe("0x7");
      expect(final.headers.get("bits-reply-url")).toBeUndefined();
      expect(await env.objects.stat(`.bits-staging/${sessionDir(id)}/reply`)).toBeUndefined();
    } finally {
      app.answer(replyWith("reply"));
    }
  });
});

describe("slivers: the fragment allowance follows the bytes received, not the declared total", () => {
  it("one-byte fragments of a declared 1 GiB file are stopped within 100 requests", async () => {
    const env = await realService();
    const client = direct(env.service);
    const id = (await create(client, "/slivers.bin")).headers.get("bits-session-id") ?? "";
    let refused: Awaited<ReturnType<Transport>> | undefined;
    let accepted = 0;
    for (let i = 0; i < 100 && refused === undefined; i++) {
      const response = await packet(
        client,
        "/slivers.bin",
        {
          "BITS-Packet-Type": "Fragment",
          "BITS-Session-Id": id,
          "Content-Range": `bytes ${i}-${i}/${1024 * MiB}`,
        },
        new Uint8Array([i]),
      );
      if (response.status === 200) accepted++;
      else refused = response;
    }
    expect(accepted).toBeLessThanOrEqual(66);
    expect(refused?.status).toBe(403);
    expect(refused?.headers.get("bits-error-code")).toBe(ACCESS_DENIED);
    // The session is discarded with its staged slivers.
    expect(await bucketKeys(env.bucket)).toEqual([]);
  });

  it("a Windows-like client, fragments growing from 5 KB, is never stopped", async () => {
    const env = await realService();
    const data = randomBytes(3 * MiB + 17, 26);
    const outcome = await bitsUpload(direct(env.service), "/growing.bin", data);
    expect(outcome.sessionIds).toHaveLength(1);
    const stored = await env.objects.get("growing.bin");
    expect(stored && sha256(stored)).toBe(sha256(data));
  });
});

describe("no log line carries a session ID or a token", () => {
  /** Every form a session ID or the reply token could take in a line. */
  function secretsOf(sessionIds: readonly string[], replyUrl: string | undefined) {
    const forms = sessionIds.flatMap((id) => [id, id.slice(1, -1), sessionDir(id)]);
    const token = replyUrl?.split("/").pop();
    return token === undefined ? forms : [...forms, token];
  }

  const expectClean = (lines: readonly string[], secrets: readonly string[]) => {
    expect(lines.length).toBeGreaterThan(3);
    for (const line of lines) {
      for (const secret of secrets) expect(line.toLowerCase()).not.toContain(secret.toLowerCase());
    }
  };

  it("an anonymous upload-reply job: upload, notification, reply download, close", async () => {
    const env = await logged({ notifications: byValue("/", `${app.url}/notify`) });
    const data = randomBytes(30_000, 27);
    const outcome = await bitsUpload(direct(env.service), "/logs/anon.bin", data, {
      replyRangeBytes: 2,
    });
    expect(outcome.reply && Buffer.from(outcome.reply).toString()).toBe("reply");
    const secrets = secretsOf(outcome.sessionIds, outcome.replyUrl);
    expect(secrets).toHaveLength(4);
    expectClean(env.lines, secrets);
  });

  it("a signed-URL upload-reply job, its signature included", async () => {
    const authenticator = createAuthenticator(["signed-url"], {
      realm: "",
      urlKeys: secret(`k1 ${KEY}`),
    });
    const env = await logged({ notifications: byValue("/", `${app.url}/notify`) }, authenticator);
    const url = signUploadUrl("https://uploads.example.com/logs/signed.bin", {
      keyId: "k1",
      secret: Buffer.from(KEY, "base64url"),
      expiresAt: Math.floor(Date.now() / 1000) + 3600,
      subject: "host-17",
    });
    const target = new URL(url);
    const outcome = await bitsUpload(
      direct(env.service),
      `${target.pathname}${target.search}`,
      randomBytes(12_000, 28),
    );
    expect(outcome.reply && Buffer.from(outcome.reply).toString()).toBe("reply");
    const signature = target.searchParams.get("bits-sig") ?? "";
    expectClean(env.lines, [...secretsOf(outcome.sessionIds, outcome.replyUrl), signature]);
  });
});
