import { createHmac } from "node:crypto";
import bcrypt from "bcryptjs";
import { describe, expect, it } from "vitest";
import { createAuthenticator } from "../../functions/auth/authenticator.ts";
import { signUploadUrl } from "../../functions/auth/signed-url.ts";
import type { AuthMode } from "../../functions/auth/types.ts";
import type { Peer } from "../../functions/bits/request.ts";
import type { ServiceSettings } from "../../functions/service/context.ts";
import { expectOnlyResults, sha256 } from "../support/checks.ts";
import { realService } from "../support/storage.ts";
import { packet, serviceTransport, type Transport } from "../support/transports.ts";
import { bitsUpload, randomBytes } from "../support/windows-client.ts";

/**
 * The attacks on authentication that once held (docs/security.md): principals of different
 * modes taken for one, a signed size limit of zero, free password guessing. Each test is the
 * attack, against DynamoDB Local and fauxqs, and says what must hold instead.
 */

const NOT_FOUND = "0x8020001F";
const ACCESS_DENIED = "0x80070005";
const TLS: Peer = { secure: true, address: "203.0.113.7" };
const KEY = Buffer.alloc(32, 7);
const text = (value: string) => ({ source: "test", current: async () => value });
const HTPASSWD = [
  `alice:${bcrypt.hashSync("alice-pw", 4)}`,
  `bob:${bcrypt.hashSync("bob-pw", 4)}`,
].join("\n");
const basic = (user: string, password: string) =>
  `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`;

function counted(modes: readonly AuthMode[]) {
  const counter = { compares: 0 };
  const authenticator = createAuthenticator(modes, {
    realm: "Test uploads",
    htpasswd: text(HTPASSWD),
    urlKeys: text(`k1 ${KEY.toString("base64url")}`),
    compare: (password, hash) => {
      counter.compares++;
      return bcrypt.compare(password, hash);
    },
  });
  return { authenticator, counter };
}

async function serviceFor(modes: readonly AuthMode[], settings: Partial<ServiceSettings> = {}) {
  const { authenticator, counter } = counted(modes);
  const env = await realService(settings, { authenticator });
  return { ...env, counter };
}

type Env = Awaited<ReturnType<typeof serviceFor>>;

/** A transport straight into the service, as a client at `peer` with these extra headers. */
function as(env: Env, peer: Peer, extra: Record<string, string> = {}): Transport {
  return serviceTransport(env.service, peer, extra);
}

const create = (transport: Transport, path: string) =>
  packet(transport, path, {
    "BITS-Packet-Type": "Create-Session",
    "BITS-Supported-Protocols": "{7df0354d-249b-430f-820d-3d2a9bef4931}",
  });
const fragment = (t: Transport, path: string, id: string, data: Uint8Array, a: number, b: number) =>
  packet(
    t,
    path,
    {
      "BITS-Packet-Type": "Fragment",
      "BITS-Session-Id": id,
      "Content-Range": `bytes ${a}-${b}/${data.length}`,
    },
    data.subarray(a, b + 1),
  );

/** `path` signed for `subject`, as path and query. */
function signed(path: string, options: { subject?: string; prefix?: string } = {}) {
  const url = signUploadUrl(`https://uploads.example.com${path}`, {
    keyId: "k1",
    secret: KEY,
    expiresAt: Math.floor(Date.now() / 1000) + 3600,
    ...options,
  });
  const parsed = new URL(url);
  return `${parsed.pathname}${parsed.search}`;
}

const aliceBasic = (env: Env) => as(env, TLS, { Authorization: basic("alice", "alice-pw") });
const aliceCert = (env: Env) => as(env, { ...TLS, clientCertificate: { subject: "CN=alice" } });
const ALL: AuthMode[] = ["basic", "signed-url", "client-cert"];

describe("finding 7: principals of different modes are different principals", () => {
  it("a signed URL with bits-sub=alice cannot continue Basic alice's session", async () => {
    const env = await serviceFor(ALL);
    const data = randomBytes(10_000, 1);
    const id = (await create(aliceBasic(env), "/a/file.bin")).headers.get("bits-session-id") ?? "";
    expect((await fragment(aliceBasic(env), "/a/file.bin", id, data, 0, 4999)).status).toBe(200);
    const url = signed("/a/file.bin", { subject: "alice" });
    const evil = randomBytes(10_000, 2);
    const stolen = await fragment(as(env, TLS), url, id, evil, 5000, 9999);
    expect(stolen.status).toBe(500);
    expect(stolen.headers.get("bits-error-code")).toBe(NOT_FOUND);
    expect((await env.sessions.get(id))?.offset).toBe(5000);
  });

  it("a certificate with CN=alice cannot continue Basic alice's session either", async () => {
    const env = await serviceFor(ALL);
    const data = randomBytes(10_000, 3);
    const id = (await create(aliceBasic(env), "/c/file.bin")).headers.get("bits-session-id") ?? "";
    const stolen = await fragment(aliceCert(env), "/c/file.bin", id, data, 0, 9999);
    expect(stolen.headers.get("bits-error-code")).toBe(NOT_FOUND);
    expect((await env.sessions.get(id))?.offset).toBe(0);
  });

  it("Basic alice's prefix is hers: a signed alice or a certificate alice writes elsewhere", async () => {
    const env = await serviceFor(ALL, { principalPrefix: "users/{principal}" });
    expect((await create(aliceBasic(env), "/users/alice/a.bin")).status).toBe(200);
    const url = signed("/users/alice/b.bin", { subject: "alice" });
    expect((await create(as(env, TLS), url)).status).toBe(403);
    expect((await create(aliceCert(env), "/users/alice/c.bin")).status).toBe(403);
    // Each has a prefix of its own, named with its mode.
    const own = signed("/users/signed-url:alice/b.bin", { subject: "alice" });
    const data = randomBytes(2000, 4);
    await bitsUpload(as(env, TLS), own, data);
    const stored = await env.objects.get("users/signed-url:alice/b.bin");
    expect(stored && sha256(stored)).toBe(sha256(data));
    expect((await create(aliceCert(env), "/users/client-cert:alice/c.bin")).status).toBe(200);
  });

  it("caps are counted apart: Basic alice at her cap does not hold back a signed alice", async () => {
    const env = await serviceFor(ALL, { caps: { perSlot: 1, total: 100 } });
    expect((await create(aliceBasic(env), "/1.bin")).status).toBe(200);
    expect((await create(aliceBasic(env), "/2.bin")).status).toBe(503);
    expect((await create(as(env, TLS), signed("/3.bin", { subject: "alice" }))).status).toBe(200);
    expect((await create(aliceCert(env), "/4.bin")).status).toBe(200);
  });

  it("Basic alice's right to overwrite is not a signed alice's", async () => {
    const env = await serviceFor(ALL, { overwritePrincipals: ["alice"] });
    await env.objects.putStaged("shared.bin", randomBytes(10, 5));
    const response = await create(as(env, TLS), signed("/shared.bin", { subject: "alice" }));
    expect(response.status).toBe(403);
    expect(response.headers.get("bits-error-code")).toBe(ACCESS_DENIED);
    expect((await create(aliceCert(env), "/shared.bin")).status).toBe(403);
    expect((await create(aliceBasic(env), "/shared.bin")).status).toBe(200);
  });

  it("an operator may join the modes explicitly: then signed alice is Basic alice", async () => {
    const env = await serviceFor(ALL, {
      joinedModes: ["signed-url"],
      principalPrefix: "users/{principal}",
    });
    const data = randomBytes(10_000, 6);
    const id =
      (await create(aliceBasic(env), "/users/alice/j.bin")).headers.get("bits-session-id") ?? "";
    expect((await fragment(aliceBasic(env), "/users/alice/j.bin", id, data, 0, 4999)).status).toBe(
      200,
    );
    const url = signed("/users/alice/j.bin", { subject: "alice" });
    expect((await fragment(as(env, TLS), url, id, data, 5000, 9999)).status).toBe(200);
    // The certificate mode was not joined.
    expect((await create(aliceCert(env), "/users/alice/k.bin")).status).toBe(403);
  });
});

describe("finding 8: a signed size limit of zero is zero", () => {
  /** A URL signed with bits-max-size=0, the way any backend could sign it by hand. */
  function signedZero(path: string) {
    const expires = String(Math.floor(Date.now() / 1000) + 3600);
    const lines = ["BITS-SIGNED-URL-1", path, "key", expires, "0", ""];
    const sig = createHmac("sha256", KEY).update(lines.join("\n")).digest("base64url");
    return `${path}?bits-expires=${expires}&bits-kid=k1&bits-max-size=0&bits-sig=${sig}`;
  }

  it("a 5,000-byte file on a URL signed for 0 bytes is refused with BG_E_TOO_LARGE; nothing is stored", async () => {
    const env = await serviceFor(["signed-url"]);
    const url = signedZero("/zero.bin");
    const created = await create(as(env, TLS), url);
    const id = created.headers.get("bits-session-id") ?? "";
    if (created.status === 200) {
      const data = randomBytes(5000, 7);
      const response = await fragment(as(env, TLS), url, id, data, 0, 4999);
      expect(response.status).toBe(500);
      expect(response.headers.get("bits-error-code")).toBe("0x80200020");
      await packet(as(env, TLS), url, {
        "BITS-Packet-Type": "Close-Session",
        "BITS-Session-Id": id,
      });
    }
    expect(await env.objects.head("zero.bin")).toBeUndefined();
  });

  it("signing a zero limit is refused", () => {
    expect(() =>
      signUploadUrl("https://up.example/f", {
        keyId: "k1",
        secret: KEY,
        expiresAt: 9,
        maxBytes: 0,
      }),
    ).toThrow(/bits-max-size/);
  });
});

describe("finding 10: password guessing is bounded, and refused guesses cost no bcrypt", () => {
  const RETRY_LATER = 503;

  it("30 wrong passwords from one address: locked out before the 30th, the right one too, with Retry-After", async () => {
    const env = await serviceFor(["basic"]);
    const statuses: number[] = [];
    for (let i = 0; i < 30; i++) {
      const guess = as(env, TLS, { Authorization: basic("alice", `guess-${i}`) });
      statuses.push((await create(guess, "/a.bin")).status);
    }
    expect(statuses.filter((status) => status === 401).length).toBeLessThanOrEqual(10);
    expect(statuses.at(-1)).toBe(RETRY_LATER);
    const spent = env.counter.compares;
    expect(spent).toBeLessThanOrEqual(10);
    const right = await create(aliceBasic(env), "/a.bin");
    expect(right.status).toBe(RETRY_LATER);
    expect(Number(right.headers.get("retry-after"))).toBeGreaterThan(0);
    expect(right.headers.get("bits-packet-type")).toBe("Ack");
    expect(right.headers.get("bits-error-code")).toBe("0x801901F7");
    expect(env.counter.compares).toBe(spent);
    await expectOnlyResults(env.bucket, env.table, []);
    // Another address is not locked out by this one (alice was guessed at under her limit).
    const elsewhere = as(
      env,
      { ...TLS, address: "198.51.100.9" },
      {
        Authorization: basic("bob", "bob-pw"),
      },
    );
    expect((await create(elsewhere, "/b.bin")).status).toBe(200);
    // Once the lock has passed, the right password works again.
    env.runtime.advance(60 * 60_000);
    expect((await create(aliceBasic(env), "/a.bin")).status).toBe(200);
  });

  it("wrong passwords for one user from many addresses lock that user name, not the others", async () => {
    const env = await serviceFor(["basic"]);
    for (let i = 0; i < 40; i++) {
      const peer = { ...TLS, address: `198.51.100.${i + 1}` };
      await create(as(env, peer, { Authorization: basic("alice", `guess-${i}`) }), "/a.bin");
    }
    expect(env.counter.compares).toBeLessThanOrEqual(20);
    const fresh = { ...TLS, address: "192.0.2.50" };
    const spent = env.counter.compares;
    const right = await create(as(env, fresh, { Authorization: basic("alice", "alice-pw") }), "/a");
    expect(right.status).toBe(RETRY_LATER);
    expect(env.counter.compares).toBe(spent);
    const bob = await create(as(env, fresh, { Authorization: basic("bob", "bob-pw") }), "/b.bin");
    expect(bob.status).toBe(200);
  });

  it("a client that verified before the lock keeps uploading: its credentials are known good", async () => {
    const env = await serviceFor(["basic"]);
    expect((await create(aliceBasic(env), "/before.bin")).status).toBe(200);
    for (let i = 0; i < 30; i++) {
      const peer = { ...TLS, address: `198.51.100.${i + 1}` };
      await create(as(env, peer, { Authorization: basic("alice", `guess-${i}`) }), "/x.bin");
    }
    const data = randomBytes(3000, 8);
    await bitsUpload(aliceBasic(env), "/after.bin", data);
    const stored = await env.objects.get("after.bin");
    expect(stored && sha256(stored)).toBe(sha256(data));
  });
});
