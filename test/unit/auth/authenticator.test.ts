import { randomBytes } from "node:crypto";
import bcrypt from "bcryptjs";
import { describe, expect, it } from "vitest";
import { createAuthenticator } from "../../../functions/auth/authenticator.ts";
import { signUploadUrl } from "../../../functions/auth/signed-url.ts";
import type { AuthMode, AuthRequest } from "../../../functions/auth/types.ts";
import type { SecretText } from "../../../functions/ports/secrets.ts";

const KEY = randomBytes(32);
const text = (value: string): SecretText => ({ source: "test", current: async () => value });
const htpasswd = text(`bob:${bcrypt.hashSync("hunter2", 4)}`);
const urlKeys = text(`k1 ${KEY.toString("base64url")}`);
const CERT = { subject: "CN=host-17,O=Example" };

const GOOD = `Basic ${Buffer.from("bob:hunter2").toString("base64")}`;
const WRONG = `Basic ${Buffer.from("bob:nope").toString("base64")}`;

function request(
  options: { authorization?: string; signed?: "good" | "bad"; cert?: boolean } = {},
): AuthRequest {
  const query = new Map<string, string>();
  if (options.signed !== undefined) {
    const url = signUploadUrl("https://up.example/a.zip", {
      keyId: "k1",
      secret: KEY,
      expiresAt: 9,
    });
    for (const [name, value] of new URL(url).searchParams) query.set(name, value);
    if (options.signed === "bad") query.set("bits-expires", "10");
  }
  const headers = new Map<string, string>();
  if (options.authorization !== undefined) headers.set("authorization", options.authorization);
  return {
    destination: "/a.zip",
    query,
    headers,
    secure: true,
    ...(options.cert ? { clientCertificate: CERT } : {}),
  };
}

function auth(modes: readonly AuthMode[]) {
  let compares = 0;
  const compare = (password: string, hash: string) => {
    compares++;
    return bcrypt.compare(password, hash);
  };
  const authenticator = createAuthenticator(modes, { realm: "r", htpasswd, urlKeys, compare });
  return {
    compares: () => compares,
    run: async (r: AuthRequest) => authenticator.authenticate(r, 0),
    mode: async (r: AuthRequest) => {
      const result = await authenticator.authenticate(r, 0);
      return result.kind === "ok" ? result.principal.mode : result.kind;
    },
  };
}

describe("createAuthenticator: configuration", () => {
  it("refuses basic without an htpasswd and signed-url without keys", () => {
    expect(() => createAuthenticator(["basic"], { realm: "r" })).toThrow(/htpasswd/);
    expect(() => createAuthenticator(["signed-url"], { realm: "r" })).toThrow(/keys/);
  });

  it("refuses an empty or unknown list of modes", () => {
    expect(() => createAuthenticator([], { realm: "r" })).toThrow(/at least one/);
    expect(() => createAuthenticator(["kerberos" as AuthMode], { realm: "r" })).toThrow(/unknown/);
  });
});

describe("createAuthenticator: from the strongest proof to none", () => {
  const all: AuthMode[] = ["anonymous", "basic", "signed-url", "client-cert"];

  it("a verified client certificate comes first", async () => {
    const a = auth(all);
    expect(await a.mode(request({ cert: true, signed: "bad", authorization: WRONG }))).toBe(
      "client-cert",
    );
    expect(a.compares()).toBe(0);
  });

  it("a certificate is ignored when client-cert is not enabled", async () => {
    expect(await auth(["anonymous"]).mode(request({ cert: true }))).toBe("anonymous");
  });

  it("a good signature comes before Basic", async () => {
    expect(await auth(all).mode(request({ signed: "good", authorization: WRONG }))).toBe(
      "signed-url",
    );
  });

  it("a bad signature is denied and never falls through to anonymous or Basic", async () => {
    const a = auth(all);
    expect(await a.run(request({ signed: "bad" }))).toMatchObject({ kind: "denied" });
    expect(await a.mode(request({ signed: "bad", authorization: GOOD }))).toBe("denied");
    expect(a.compares()).toBe(0);
  });

  it("bits-sig is an ordinary parameter when signed-url is not enabled", async () => {
    expect(await auth(["anonymous"]).mode(request({ signed: "bad" }))).toBe("anonymous");
  });

  it("with anonymous also enabled, a request without Authorization is anonymous", async () => {
    const result = await auth(["basic", "anonymous"]).run(request());
    expect(result).toEqual({
      kind: "ok",
      principal: { name: "anonymous", mode: "anonymous", identified: false },
    });
  });

  it("with anonymous also enabled, credentials sent are still held to: wrong is challenged", async () => {
    const a = auth(["basic", "anonymous"]);
    expect(await a.mode(request({ authorization: WRONG }))).toBe("challenge");
    expect(await a.mode(request({ authorization: GOOD }))).toBe("basic");
    expect(a.compares()).toBe(2);
  });

  it("Basic alone challenges a request without credentials", async () => {
    expect(await auth(["basic", "signed-url"]).run(request())).toMatchObject({
      kind: "challenge",
      realm: "r",
    });
  });

  it("without Basic or anonymous, a request with no credential is denied", async () => {
    expect(await auth(["client-cert", "signed-url"]).run(request())).toEqual({
      kind: "denied",
      reason: "no credentials",
    });
  });
});
