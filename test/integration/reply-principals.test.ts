import bcrypt from "bcryptjs";
import { describe, expect, it } from "vitest";
import { createAuthenticator } from "../../functions/auth/authenticator.ts";
import { signUploadUrl } from "../../functions/auth/signed-url.ts";
import type { AuthMode } from "../../functions/auth/types.ts";
import { BITS_PROTOCOL_GUID } from "../../functions/bits/constants.ts";
import type { BitsResponse, Peer } from "../../functions/bits/request.ts";
import type { Notifier } from "../../functions/ports/notifier.ts";
import type { ServiceSettings } from "../../functions/service/context.ts";
import { call } from "../support/calls.ts";
import { sha256 } from "../support/checks.ts";
import { realService } from "../support/storage.ts";
import { randomBytes } from "../support/windows-client.ts";

/**
 * A reply of Basic alice's upload-reply session, fetched by the other principals called alice: a
 * signed URL with `bits-sub=alice` and a certificate with `CN=alice` (docs/security.md,
 * "Principals"). They are other principals, so for them the reply does not exist: the same 404
 * as a reply URL with a made-up token. Against DynamoDB Local and fauxqs.
 */

const TLS: Peer = { secure: true, address: "203.0.113.7" };
const CERT_ALICE: Peer = { ...TLS, clientCertificate: { subject: "CN=alice" } };
const KEY = Buffer.alloc(32, 9);
const ALL: AuthMode[] = ["basic", "signed-url", "client-cert"];
const HTPASSWD = `alice:${bcrypt.hashSync("alice-pw", 4)}`;
const ALICE = {
  Authorization: `Basic ${Buffer.from("alice:alice-pw").toString("base64")}`,
};
const DATA = randomBytes(30_000, 0x7e91);
const REPLY = randomBytes(5_000, 0x7e92);

/** An application that answers every upload with REPLY. */
const application: Notifier = {
  notify: async () => ({ kind: "ok", copyToDestination: false, reply: REPLY }),
};

async function aliceReply(settings: Partial<ServiceSettings> = {}) {
  const authenticator = createAuthenticator(ALL, {
    realm: "Test uploads",
    htpasswd: { source: "test", current: async () => HTPASSWD },
    urlKeys: { source: "test", current: async () => `k1 ${KEY.toString("base64url")}` },
  });
  const env = await realService(
    {
      notifications: [{ path: "/", type: "value", url: "http://app.example/notify" }],
      ...settings,
    },
    { authenticator, notifier: application },
  );
  const post = (headers: Record<string, string>, body: Uint8Array = new Uint8Array(0)) =>
    call(env.service, { path: "/r/file.bin", headers: { ...ALICE, ...headers }, body, peer: TLS });
  const created = await post({
    "BITS-Packet-Type": "Create-Session",
    "BITS-Supported-Protocols": BITS_PROTOCOL_GUID,
  });
  const id = created.headers["BITS-Session-Id"] ?? "";
  const final = await post(
    {
      "BITS-Packet-Type": "Fragment",
      "BITS-Session-Id": id,
      "Content-Range": `bytes 0-${DATA.length - 1}/${DATA.length}`,
    },
    DATA,
  );
  expect(final.status).toBe(200);
  const replyPath = new URL(final.headers["BITS-Reply-URL"] ?? "").pathname;
  const get = (peer: Peer, path = replyPath, headers: Record<string, string> = {}) =>
    call(env.service, { method: "GET", path, headers, peer });
  return { env, replyPath, get };
}

/** The reply path signed for `bits-sub=alice`, as path and query. */
function signedAlice(replyPath: string) {
  const url = new URL(
    signUploadUrl(`https://uploads.example.com${replyPath}`, {
      keyId: "k1",
      secret: KEY,
      expiresAt: Math.floor(Date.now() / 1000) + 3600,
      subject: "alice",
    }),
  );
  return `${url.pathname}${url.search}`;
}

const bodyOf = async (response: BitsResponse) =>
  new Uint8Array(
    await new Response(response.body as ConstructorParameters<typeof Response>[0]).arrayBuffer(),
  );

/** What the client sees of an answer: status, headers and body. */
const seen = async (response: BitsResponse) => ({
  status: response.status,
  headers: response.headers,
  body: (await bodyOf(response)).length,
});

describe("finding 7: another mode's alice cannot download Basic alice's reply", () => {
  it("a certificate CN=alice and a signed URL bits-sub=alice get what a made-up reply URL gets", async () => {
    const { replyPath, get } = await aliceReply();
    const madeUp = await seen(await get(TLS, `${replyPath.slice(0, -8)}00000000`));
    expect(madeUp).toEqual({ status: 404, headers: { "Content-Length": "0" }, body: 0 });

    expect(await seen(await get(CERT_ALICE))).toEqual(madeUp);
    expect(await seen(await get(TLS, signedAlice(replyPath)))).toEqual(madeUp);

    // Basic alice herself gets the application's reply, byte for byte.
    const hers = await get(TLS, replyPath, ALICE);
    expect(hers.status).toBe(200);
    expect(sha256(await bodyOf(hers))).toBe(sha256(REPLY));
  });

  it("joined by the operator, the certificate's and the signed URL's alice are Basic alice and get it", async () => {
    const { replyPath, get } = await aliceReply({ joinedModes: ["client-cert", "signed-url"] });
    for (const joined of [await get(CERT_ALICE), await get(TLS, signedAlice(replyPath))]) {
      expect(joined.status).toBe(200);
      expect(sha256(await bodyOf(joined))).toBe(sha256(REPLY));
    }
  });
});
