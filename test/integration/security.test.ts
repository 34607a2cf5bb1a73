import bcrypt from "bcryptjs";
import { describe, expect, inject, it } from "vitest";
import { S3ObjectStore } from "../../functions/adapters/s3/s3-object-store.ts";
import { createAuthenticator } from "../../functions/auth/authenticator.ts";
import { signUploadUrl } from "../../functions/auth/signed-url.ts";
import type { Authenticator } from "../../functions/auth/types.ts";
import { MiB } from "../../functions/bits/constants.ts";
import type { Peer } from "../../functions/bits/request.ts";
import type { ServiceSettings } from "../../functions/service/context.ts";
import { standInS3 } from "../../infra/stand-ins.ts";
import { expectOnlyResults, sha256 } from "../support/checks.ts";
import { depth } from "../support/depth.ts";
import {
  freshStorage,
  realService,
  serviceOver,
  tableItems,
  uploadIsGone,
} from "../support/storage.ts";
import {
  basic,
  lambdaTransport,
  packet,
  serviceTransport,
  type Transport,
} from "../support/transports.ts";
import { bitsUpload, randomBytes } from "../support/windows-client.ts";

/**
 * docs/security.md against DynamoDB Local and fauxqs: each auth mode, sessions bound to their
 * principal and URL, every cap, prefixes joined as segments, and the one committer per key.
 */

const ACCESS_DENIED = { "BITS-Error-Code": "0x80070005", "BITS-Error-Context": "0x5" };
const NOT_FOUND = "0x8020001F";
const TLS: Peer = { secure: true, address: "203.0.113.7" };
const secret = (text: string) => ({ source: "test", current: async () => text });
const HTPASSWD = [
  `alice:${bcrypt.hashSync("alice-pw", 4)}`,
  `bob:${bcrypt.hashSync("bob-pw", 4)}`,
].join("\n");
const KEY = Buffer.alloc(32, 7).toString("base64url");
const basicAuth = () =>
  createAuthenticator(["basic"], { realm: "Test uploads", htpasswd: secret(HTPASSWD) });

/** A transport straight into the service, as a client at `peer` with these extra headers. */
function as(
  env: Awaited<ReturnType<typeof realService>>,
  peer: Peer,
  extra: Record<string, string> = {},
): Transport {
  return serviceTransport(env.service, peer, extra);
}

async function serviceWith(authenticator: Authenticator, settings: Partial<ServiceSettings> = {}) {
  return realService(settings, { authenticator });
}

const create = (transport: Transport, path: string) =>
  packet(transport, path, {
    "BITS-Packet-Type": "Create-Session",
    "BITS-Supported-Protocols": "{7df0354d-249b-430f-820d-3d2a9bef4931}",
  });
const fragment = (
  transport: Transport,
  path: string,
  id: string,
  data: Uint8Array,
  first: number,
  last: number,
) =>
  packet(
    transport,
    path,
    {
      "BITS-Packet-Type": "Fragment",
      "BITS-Session-Id": id,
      "Content-Range": `bytes ${first}-${last}/${data.length}`,
    },
    data.subarray(first, last + 1),
  );
const end = (transport: Transport, path: string, id: string, type = "Close-Session") =>
  packet(transport, path, { "BITS-Packet-Type": type, "BITS-Session-Id": id });

describe("Basic over TLS against bcrypt htpasswd entries", () => {
  it("MUST challenge a request without credentials with 401 + WWW-Authenticate, never an Ack", async () => {
    const env = await serviceWith(basicAuth());
    const response = await create(as(env, TLS), "/a.bin");
    expect(response.status).toBe(401);
    expect(response.headers.get("www-authenticate")).toBe(
      'Basic realm="Test uploads", charset="UTF-8"',
    );
    expect(response.headers.has("bits-packet-type")).toBe(false);
    expect(response.headers.has("bits-error-code")).toBe(false);
  });

  it("a wrong password is challenged again; nothing is created", async () => {
    const env = await serviceWith(basicAuth());
    const response = await create(as(env, TLS, { Authorization: basic("alice", "nope") }), "/a");
    expect(response.status).toBe(401);
    await expectOnlyResults(env.bucket, env.table, []);
  });

  it("a Windows-like client answers the challenge and uploads byte for byte", async () => {
    const env = await serviceWith(basicAuth());
    const data = randomBytes(6 * MiB + 5, 11);
    const outcome = await bitsUpload(as(env, TLS), "/reports/a.bin", data, {
      credentials: { user: "alice", password: "alice-pw" },
      initialFragment: 256 * 1024,
      maxFragment: MiB,
    });
    expect(outcome.statuses[0]).toBe(401);
    const stored = await env.objects.get("reports/a.bin");
    expect(stored && sha256(stored)).toBe(sha256(data));
    const record = await env.sessions.get(outcome.sessionIds[0] ?? "");
    expect(record?.principal).toBe("alice");
    await expectOnlyResults(env.bucket, env.table, ["reports/a.bin"]);
  });

  it("Basic credentials over plain HTTP are refused with 403 E_ACCESSDENIED", async () => {
    const env = await serviceWith(basicAuth());
    const plain = as(env, { secure: false }, { Authorization: basic("alice", "alice-pw") });
    const response = await create(plain, "/a.bin");
    expect(response.status).toBe(403);
    expect(response.headers.get("bits-error-code")).toBe(ACCESS_DENIED["BITS-Error-Code"]);
  });
});

describe("signed upload URLs (HMAC, rotation with two keys)", () => {
  const keys = `new ${KEY}\nold ${Buffer.alloc(32, 9).toString("base64url")}`;
  const auth = () => createAuthenticator(["signed-url"], { realm: "x", urlKeys: secret(keys) });
  const sign = (
    path: string,
    options: {
      expiresAt?: number;
      maxBytes?: number;
      prefix?: string;
      keyId?: string;
      subject?: string;
    } = {},
  ) => {
    const url = signUploadUrl(`https://uploads.example.com${path}`, {
      keyId: options.keyId ?? "new",
      secret: Buffer.from(options.keyId === "old" ? Buffer.alloc(32, 9) : Buffer.alloc(32, 7)),
      expiresAt: options.expiresAt ?? Math.floor(Date.now() / 1000) + 3600,
      ...(options.maxBytes === undefined ? {} : { maxBytes: options.maxBytes }),
      ...(options.prefix === undefined ? {} : { prefix: options.prefix }),
      ...(options.subject === undefined ? {} : { subject: options.subject }),
    });
    const parsed = new URL(url);
    return `${parsed.pathname}${parsed.search}`;
  };

  it("a valid URL uploads with nothing but the URL, signed by either active key", async () => {
    const env = await serviceWith(auth());
    for (const keyId of ["new", "old"]) {
      const data = randomBytes(300_000, keyId.length);
      await bitsUpload(as(env, TLS), sign(`/in/${keyId}.bin`, { keyId }), data);
      const stored = await env.objects.get(`in/${keyId}.bin`);
      expect(stored && sha256(stored)).toBe(sha256(data));
    }
  });

  it("an expired URL cannot start an upload (403), but one started in time may finish", async () => {
    const env = await serviceWith(auth());
    const expired = sign("/late.bin", { expiresAt: Math.floor(Date.now() / 1000) - 1 });
    expect((await create(as(env, TLS), expired)).status).toBe(403);

    const url = sign("/slow.bin", { expiresAt: Math.floor(Date.now() / 1000) + 60 });
    const data = randomBytes(20_000, 3);
    const id = (await create(as(env, TLS), url)).headers.get("bits-session-id") ?? "";
    env.runtime.advance(3600_000);
    expect((await fragment(as(env, TLS), url, id, data, 0, data.length - 1)).status).toBe(200);
    expect((await end(as(env, TLS), url, id)).status).toBe(200);
    const stored = await env.objects.get("slow.bin");
    expect(stored && sha256(stored)).toBe(sha256(data));
  });

  it.each([
    ["a tampered path", (url: string) => url.replace("/mine.bin", "/yours.bin")],
    [
      "a raised size limit",
      (url: string) => url.replace("bits-max-size=1000", "bits-max-size=9999"),
    ],
    // Another first character, whatever it was (a fixed "A" left one URL in 64 unchanged).
    [
      "a changed signature",
      (url: string) =>
        url.replace(/bits-sig=(.)/, (_, c: string) => `bits-sig=${c === "A" ? "B" : "A"}`),
    ],
    ["an unknown key", (url: string) => url.replace("bits-kid=new", "bits-kid=gone")],
  ])("%s is refused with 403 E_ACCESSDENIED", async (_, tamper) => {
    const env = await serviceWith(auth());
    const response = await create(as(env, TLS), tamper(sign("/mine.bin", { maxBytes: 1000 })));
    expect(response.status).toBe(403);
    expect(response.headers.get("bits-error-code")).toBe(ACCESS_DENIED["BITS-Error-Code"]);
    await expectOnlyResults(env.bucket, env.table, []);
  });

  it("a URL for one key does not open another: signing /a does not allow /b", async () => {
    const env = await serviceWith(auth());
    const url = sign("/a.bin");
    const other = url.replace("/a.bin", "/b.bin");
    expect((await create(as(env, TLS), other)).status).toBe(403);
  });

  it("a prefix URL allows keys below it and nothing beside it", async () => {
    const env = await serviceWith(auth());
    const url = sign("/drop/x.bin", { prefix: "/drop/", subject: "device-17" });
    const query = url.slice(url.indexOf("?"));
    expect((await create(as(env, TLS), `/drop/any/name.bin${query}`)).status).toBe(200);
    expect((await create(as(env, TLS), `/dropbox/name.bin${query}`)).status).toBe(403);
  });

  it("a size limit in the URL is enforced at the first fragment: 500 BG_E_TOO_LARGE", async () => {
    const env = await serviceWith(auth());
    const url = sign("/small.bin", { maxBytes: 1000 });
    const id = (await create(as(env, TLS), url)).headers.get("bits-session-id") ?? "";
    const data = randomBytes(1001, 4);
    const response = await fragment(as(env, TLS), url, id, data, 0, 99);
    expect(response.status).toBe(500);
    expect(response.headers.get("bits-error-code")).toBe("0x80200020");
  });
});

describe("client certificates through the ALB's mutual TLS", () => {
  const mtls = {
    "x-forwarded-proto": "https",
    "x-amzn-mtls-clientcert-subject": "CN=host-17.corp.example,OU=Fleet,O=Example",
    "x-amzn-mtls-clientcert-issuer": "CN=Example Fleet CA,O=Example",
    "x-amzn-mtls-clientcert-serial-number": "0A1B2C",
  };
  const auth = () => createAuthenticator(["client-cert"], { realm: "x" });

  it("the certificate's common name is the principal; the upload lands byte for byte", async () => {
    const env = await serviceWith(auth());
    const alb = lambdaTransport(env.service, "alb", { trustClientCertificates: true });
    const withCert: Transport = (req) => alb({ ...req, headers: { ...req.headers, ...mtls } });
    const data = randomBytes(100_000, 5);
    const outcome = await bitsUpload(withCert, "/fleet/inventory.json", data);
    const stored = await env.objects.get("fleet/inventory.json");
    expect(stored && sha256(stored)).toBe(sha256(data));
    expect((await env.sessions.get(outcome.sessionIds[0] ?? ""))?.principal).toBe(
      "host-17.corp.example",
    );
  });

  it("the headers are not trusted where no listener verified them (API Gateway, or trust off)", async () => {
    const env = await serviceWith(auth());
    for (const transport of [
      lambdaTransport(env.service, "v2", { trustClientCertificates: true }),
      lambdaTransport(env.service, "alb", { trustClientCertificates: false }),
    ]) {
      const response = await transport({
        method: "BITS_POST",
        path: "/forged.bin",
        headers: { ...mtls, "BITS-Packet-Type": "Ping" },
        body: new Uint8Array(0),
      });
      expect(response.status).toBe(403);
    }
  });
});

describe("a session answers only its own principal on its own URL", () => {
  it("Fragment, Close and Cancel from another principal are BG_E_SESSION_NOT_FOUND and change nothing", async () => {
    const env = await serviceWith(basicAuth());
    const alice = as(env, TLS, { Authorization: basic("alice", "alice-pw") });
    const bob = as(env, TLS, { Authorization: basic("bob", "bob-pw") });
    const data = randomBytes(10_000, 6);
    const id = (await create(alice, "/a/file.bin")).headers.get("bits-session-id") ?? "";
    expect((await fragment(alice, "/a/file.bin", id, data, 0, 4999)).status).toBe(200);
    const evil = randomBytes(10_000, 66);
    for (const response of [
      await fragment(bob, "/a/file.bin", id, evil, 5000, 9999),
      await end(bob, "/a/file.bin", id, "Cancel-Session"),
      await end(bob, "/a/file.bin", id, "Close-Session"),
    ]) {
      expect(response.status).toBe(500);
      expect(response.headers.get("bits-error-code")).toBe(NOT_FOUND);
      // Not even the ID is echoed: it says nothing about whether the session exists.
      expect(response.headers.has("bits-session-id")).toBe(false);
    }
    expect((await env.sessions.get(id))?.offset).toBe(5000);
    expect((await fragment(alice, "/a/file.bin", id, data, 5000, 9999)).status).toBe(200);
    expect((await end(alice, "/a/file.bin", id)).status).toBe(200);
    const stored = await env.objects.get("a/file.bin");
    expect(stored && sha256(stored)).toBe(sha256(data));
  });

  it("the same principal on another URL cannot reach the session; its bytes land nowhere", async () => {
    const env = await serviceWith(basicAuth());
    const alice = as(env, TLS, { Authorization: basic("alice", "alice-pw") });
    const data = randomBytes(10_000, 7);
    const id = (await create(alice, "/victim.bin")).headers.get("bits-session-id") ?? "";
    const moved = await fragment(alice, "/other.bin", id, data, 0, 9999);
    expect(moved.headers.get("bits-error-code")).toBe(NOT_FOUND);
    expect((await end(alice, "/other.bin", id, "Cancel-Session")).status).toBe(500);
    expect((await env.sessions.get(id))?.offset).toBe(0);
    expect((await env.sessions.get(id))?.status).toBe("open");
  });
});

describe("caps: what anyone can cost", () => {
  it("open sessions per principal: past the cap 503 E_ACCESSDENIED, nothing half-created", async () => {
    const env = await serviceWith(basicAuth(), { caps: { perSlot: 2, total: 100 } });
    const alice = as(env, TLS, { Authorization: basic("alice", "alice-pw") });
    const bob = as(env, TLS, { Authorization: basic("bob", "bob-pw") });
    const first = (await create(alice, "/1.bin")).headers.get("bits-session-id") ?? "";
    expect((await create(alice, "/2.bin")).status).toBe(200);
    const refused = await create(alice, "/3.bin");
    expect(refused.status).toBe(503);
    expect(refused.headers.get("bits-error-code")).toBe(ACCESS_DENIED["BITS-Error-Code"]);
    expect(refused.headers.has("bits-session-id")).toBe(false);
    // Another principal has its own slot.
    expect((await create(bob, "/b.bin")).status).toBe(200);
    // Ending a session frees its place.
    expect((await end(alice, "/1.bin", first, "Cancel-Session")).status).toBe(200);
    expect((await create(alice, "/3.bin")).status).toBe(200);
    expect(await env.sessions.openSessions()).toBe(3);
    const { records } = await tableItems(env.table);
    // Three open sessions and a tombstone: the refused Create-Session left no record and no upload.
    expect(records.filter((record) => record.status === "open")).toHaveLength(3);
    for (const record of records.filter((r) => r.status !== "open")) {
      expect(await uploadIsGone(env.bucket, record.key, record.uploadId)).toBe(true);
    }
  });

  it("open sessions overall: past the cap 503, for everyone", async () => {
    const env = await serviceWith(basicAuth(), { caps: { perSlot: 10, total: 1 } });
    const alice = as(env, TLS, { Authorization: basic("alice", "alice-pw") });
    const bob = as(env, TLS, { Authorization: basic("bob", "bob-pw") });
    expect((await create(alice, "/a.bin")).status).toBe(200);
    expect((await create(bob, "/b.bin")).status).toBe(503);
  });

  it("anonymous clients are capped per address, not all together", async () => {
    const env = await realService({ caps: { perSlot: 1, total: 100 } });
    const one = as(env, { secure: false, address: "198.51.100.1" });
    const two = as(env, { secure: false, address: "198.51.100.2" });
    expect((await create(one, "/1.bin")).status).toBe(200);
    expect((await create(one, "/2.bin")).status).toBe(503);
    expect((await create(two, "/3.bin")).status).toBe(200);
  });

  it("fragments per session are bounded by the file's size: past it 403, the session is gone", async () => {
    // 64 fragments plus 1 per MiB: a 1,000-byte file may take 65 writing fragments.
    const env = await realService({ maxFragmentsPerMiB: 1 });
    const client = as(env, TLS);
    const data = randomBytes(1000, 8);
    const id = (await create(client, "/slivers.bin")).headers.get("bits-session-id") ?? "";
    for (let i = 0; i < 65; i++) {
      expect((await fragment(client, "/slivers.bin", id, data, i, i)).status).toBe(200);
    }
    const refused = await fragment(client, "/slivers.bin", id, data, 65, 65);
    expect(refused.status).toBe(403);
    expect(refused.headers.get("bits-error-code")).toBe(ACCESS_DENIED["BITS-Error-Code"]);
    const after = await fragment(client, "/slivers.bin", id, data, 65, 999);
    expect(after.headers.get("bits-error-code")).toBe(NOT_FOUND);
    await expectOnlyResults(env.bucket, env.table, []);
  });

  it("a legitimate Windows-like client with 5 KB fragments stays well inside the fragment budget", async () => {
    const env = await realService({ maxFragmentsPerMiB: 512 });
    // Some 200 fragments of 5 KB a MiB, against a budget of 64 plus 512 a MiB (deep: 2 MiB).
    const data = randomBytes(depth(MiB, 2 * MiB), 12);
    const outcome = await bitsUpload(as(env, TLS), "/normal.bin", data, {
      maxFragment: 5 * 1024,
    });
    expect(outcome.sessionIds).toHaveLength(1);
    const stored = await env.objects.get("normal.bin");
    expect(stored && sha256(stored)).toBe(sha256(data));
  });
});

describe("authorization: prefixes, confinement and who may overwrite", () => {
  it("the key prefix is joined as a path segment: /-private/x lands under uploads/, never uploads-private/", async () => {
    const env = await realService({ keyPrefix: "uploads/" });
    const data = randomBytes(1000, 9);
    await bitsUpload(as(env, TLS), "/-private/x", data);
    expect(await env.objects.head("uploads/-private/x")).toBeDefined();
    expect(await env.objects.head("uploads-private/x")).toBeUndefined();
  });

  it("a confined principal writes only under its own prefix", async () => {
    const env = await serviceWith(basicAuth(), {
      keyPrefix: "uploads/",
      principalPrefix: "{principal}",
    });
    const alice = as(env, TLS, { Authorization: basic("alice", "alice-pw") });
    expect((await create(alice, "/alice/report.zip")).status).toBe(200);
    for (const path of ["/bob/report.zip", "/alice-x/report.zip", "/report.zip"]) {
      const response = await create(alice, path);
      expect(response.status).toBe(403);
      expect(response.headers.get("bits-error-code")).toBe(ACCESS_DENIED["BITS-Error-Code"]);
    }
  });

  it("only the principals named may overwrite when overwrite is off", async () => {
    const env = await serviceWith(basicAuth(), { overwritePrincipals: ["alice"] });
    const alice = as(env, TLS, { Authorization: basic("alice", "alice-pw") });
    const bob = as(env, TLS, { Authorization: basic("bob", "bob-pw") });
    await env.objects.putStaged("shared.bin", randomBytes(10, 1));
    expect((await create(bob, "/shared.bin")).status).toBe(403);
    const data = randomBytes(5000, 10);
    await bitsUpload(alice, "/shared.bin", data);
    const stored = await env.objects.get("shared.bin");
    expect(stored && sha256(stored)).toBe(sha256(data));
  });
});

describe("overwrite off: two sessions completing one key never both succeed", () => {
  /**
   * An S3 client that holds every CompleteMultipartUpload until a second one arrives (or 1.5 s
   * pass): both completions are then past their "is the key free?" check before either lands,
   * the interleaving in which a store that ignores `If-None-Match` (fauxqs does) lets both win.
   */
  function barrierClient() {
    const client = standInS3(inject("s3Endpoint"));
    const waiting: (() => void)[] = [];
    client.middlewareStack.add(
      (next, context) => async (args) => {
        if (context.commandName === "CompleteMultipartUploadCommand") {
          await new Promise<void>((resolve) => {
            waiting.push(resolve);
            if (waiting.length >= 2) for (const release of waiting.splice(0)) release();
            setTimeout(resolve, 1500);
          });
        }
        return next(args);
      },
      { step: "initialize", name: "completionBarrier" },
    );
    return client;
  }

  it("two racing Close-Sessions on one key: exactly one 200, one 403, one object (on fauxqs, which ignores If-None-Match)", async () => {
    const storage = await freshStorage();
    const objects = new S3ObjectStore(barrierClient(), storage.bucket, { fauxqsChecksums: true });
    const env = {
      ...storage,
      ...serviceOver(storage.sessions, objects, { allowOverwrite: false }),
    };
    const client = as(env, TLS);
    const first = randomBytes(6 * MiB + 1, 20);
    const second = randomBytes(6 * MiB + 2, 21);
    const ids: string[] = [];
    for (const data of [first, second]) {
      const id = (await create(client, "/race.bin")).headers.get("bits-session-id") ?? "";
      for (let offset = 0; offset < data.length; offset += MiB) {
        const last = Math.min(offset + MiB, data.length) - 1;
        expect((await fragment(client, "/race.bin", id, data, offset, last)).status).toBe(200);
      }
      ids.push(id);
    }
    const answers = await Promise.all(ids.map((id) => end(client, "/race.bin", id)));
    const statuses = answers.map((answer) => answer.status).sort();
    expect(statuses).toEqual([200, 403]);
    const winner = answers[0]?.status === 200 ? first : second;
    const stored = await env.objects.get("race.bin");
    expect(stored && sha256(stored)).toBe(sha256(winner));
    await expectOnlyResults(env.bucket, env.table, ["race.bin"]);
  });
});
