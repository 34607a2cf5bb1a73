import { createHmac, randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import {
  parseUrlKeys,
  SignedUrlAuthenticator,
  type SignOptions,
  signUploadUrl,
} from "../../../functions/auth/signed-url.ts";
import type { AuthRequest, AuthResult } from "../../../functions/auth/types.ts";
import { destinationPath } from "../../../functions/bits/key.ts";
import type { SecretText } from "../../../functions/ports/secrets.ts";

const NEW = randomBytes(32);
const OLD = randomBytes(48);
const KEYS = `# signing key first\nnew ${NEW.toString("base64url")}\n\nold ${OLD.toString("base64")}\n`;
const NOW = 1_800_000_000;

function secret(initial: string): SecretText & { text: string } {
  return {
    text: initial,
    source: "test url keys",
    async current() {
      return this.text;
    },
  };
}

/** The AuthRequest the server builds for `url`: destination as bits/key.ts decodes it. */
function requestFor(url: string, query?: (params: URLSearchParams) => void): AuthRequest {
  const parsed = new URL(url);
  query?.(parsed.searchParams);
  let destination: string | undefined;
  try {
    destination = destinationPath(parsed.pathname);
  } catch {
    destination = undefined;
  }
  return { destination, query: new Map(parsed.searchParams), headers: new Map(), secure: true };
}

const sign = (url: string, options: Partial<SignOptions> = {}) =>
  signUploadUrl(url, { keyId: "new", secret: NEW, expiresAt: NOW + 3600, ...options });

async function check(request: AuthRequest, text = KEYS): Promise<AuthResult | undefined> {
  return new SignedUrlAuthenticator(secret(text)).authenticate(request, NOW * 1000);
}

const reasonOf = (result: AuthResult | undefined) =>
  result?.kind === "denied" ? result.reason : `not denied: ${JSON.stringify(result)}`;

describe("signed upload URLs: a valid signature grants what it signs", () => {
  it("a key URL allows exactly its own path", async () => {
    const url = sign("https://up.example/a/b.zip?job=7", { maxBytes: 2048 });
    expect(await check(requestFor(url))).toEqual({
      kind: "ok",
      principal: {
        name: "signed-url",
        mode: "signed-url",
        identified: false,
        grant: {
          path: "/a/b.zip",
          prefix: false,
          expiresAt: NOW + 3600,
          maxBytes: 2048,
          keyId: "new",
        },
      },
    });
  });

  it("bits-sub names the principal and makes it identified", async () => {
    const result = await check(
      requestFor(sign("https://up.example/x.bin", { subject: "alice+1@corp" })),
    );
    expect(result).toMatchObject({
      kind: "ok",
      principal: { name: "alice+1@corp", identified: true },
    });
  });

  it("an expired URL still authenticates: the service refuses only a new session", async () => {
    const url = sign("https://up.example/x.bin", { expiresAt: NOW - 86_400 });
    const result = await check(requestFor(url));
    expect(result?.kind === "ok" && result.principal.grant?.expiresAt).toBe(NOW - 86_400);
  });

  it("signs the percent-decoded NFC path the server sees, whatever the spelling", async () => {
    const url = sign("https://up.example/d%C3%A9p%C3%B4t/Caf%C3%A9%20menu.zip"); // NFC é
    const nfd = url.replace("Caf%C3%A9", "Cafe%CC%81"); // e + combining acute
    expect(await check(requestFor(nfd))).toMatchObject({
      kind: "ok",
      principal: { grant: { path: "/dépôt/Café menu.zip" } },
    });
  });

  it("the signature is HMAC-SHA256 over the documented six lines", () => {
    const url = new URL(sign("https://up.example/a%20b/c", { maxBytes: 10, subject: "bob" }));
    const lines = ["BITS-SIGNED-URL-1", "/a b/c", "key", String(NOW + 3600), "10", "bob"];
    const expected = createHmac("sha256", NEW).update(lines.join("\n")).digest("base64url");
    expect(url.searchParams.get("bits-sig")).toBe(expected);
    expect(url.searchParams.get("bits-kid")).toBe("new");
  });

  it("replaces bits-* parameters already present and keeps the others as they were", () => {
    const first = sign("https://up.example/a?x=1%2B1&y", { prefix: "/a/" });
    const again = new URL(sign(first, { maxBytes: 5 }));
    expect(again.search.startsWith("?x=1%2B1&y&bits-expires=")).toBe(true);
    expect(again.searchParams.getAll("bits-sig")).toHaveLength(1);
    expect(again.searchParams.has("bits-prefix")).toBe(false);
  });
});

describe("signed upload URLs: anything not signed is denied", () => {
  const url = sign("https://up.example/a/b.zip", { maxBytes: 1000 });

  it("a request without bits-sig is not a signed-URL request", async () => {
    expect(await check(requestFor("https://up.example/a/b.zip?bits-kid=new"))).toBeUndefined();
  });

  it.each([
    ["tampered path", (u: string) => u.replace("/a/b.zip", "/a/c.zip")],
    ["tampered max-size", (u: string) => u.replace("bits-max-size=1000", "bits-max-size=9999")],
    ["removed max-size", (u: string) => u.replace("bits-max-size=1000&", "")],
    ["tampered expiry", (u: string) => u.replace(`${NOW + 3600}`, `${NOW + 3601}`)],
    ["added subject", (u: string) => `${u}&bits-sub=root`],
    ["names another listed key", (u: string) => u.replace("bits-kid=new", "bits-kid=old")],
  ])("%s: bad signature", async (_case, tamper) => {
    expect(reasonOf(await check(requestFor(tamper(url))))).toMatch(/bad signature/);
  });

  it("an unknown key ID is denied", async () => {
    const other = signUploadUrl("https://up.example/a/b.zip", {
      keyId: "gone",
      secret: NEW,
      expiresAt: NOW,
    });
    expect(reasonOf(await check(requestFor(other)))).toMatch(/unknown key/);
  });

  it.each([
    ["bits-sig", "abc"],
    ["bits-expires", "0123"],
    ["bits-expires", "soon"],
    ["bits-max-size", "1e3"],
    ["bits-kid", "bad id"],
    ["bits-prefix", "/a"],
    ["bits-prefix", "/a/../"],
    ["bits-sub", "alice smith"],
    ["bits-sub", "a".repeat(129)],
  ])("a malformed %s (%j) is denied", async (name, value) => {
    const request = requestFor(url, (params) => params.set(name, value));
    expect(reasonOf(await check(request))).toMatch(/malformed/);
  });

  it("a path that is no destination is denied", async () => {
    const request = requestFor(sign("https://up.example/a/", { prefix: "/a/" }));
    expect(reasonOf(await check(request))).toMatch(/no destination/);
  });
});

describe("signed upload URLs with bits-prefix", () => {
  const url = sign("https://up.example/a/anything", { prefix: "/a/" });
  const at = (path: string) => requestFor(url.replace("/a/anything", path));

  it.each(["/a/x.zip", "/a/b/c/d.zip"])("allows %s below the prefix", async (path) => {
    expect(await check(at(path))).toMatchObject({
      kind: "ok",
      principal: { grant: { path: "/a/", prefix: true } },
    });
  });

  it.each(["/ab/x", "/b/x.zip", "/a"])("refuses %s outside it (segment-aware)", async (path) => {
    expect(reasonOf(await check(at(path)))).toMatch(/outside/);
  });

  it("a prefix with non-ASCII characters survives the query string", async () => {
    const unicode = sign("https://up.example/x", { prefix: "/dossier é+1/" });
    const request = requestFor(unicode.replace("/x?", "/dossier%20%C3%A9+1/r%C3%A9sum%C3%A9.pdf?"));
    expect((await check(request))?.kind).toBe("ok");
  });
});

describe("key rotation", () => {
  it("the first key signs; every listed key verifies", async () => {
    const keys = parseUrlKeys(KEYS);
    expect(keys.signing.id).toBe("new");
    expect([...keys.all.keys()]).toEqual(["new", "old"]);
    const byOld = signUploadUrl("https://up.example/f", {
      keyId: "old",
      secret: OLD,
      expiresAt: NOW,
    });
    expect((await check(requestFor(byOld)))?.kind).toBe("ok");
    expect((await check(requestFor(sign("https://up.example/f"))))?.kind).toBe("ok");
  });

  it("a key removed from the source stops verifying at the next refresh", async () => {
    const source = secret(KEYS);
    const auth = new SignedUrlAuthenticator(source);
    const byOld = signUploadUrl("https://up.example/f", {
      keyId: "old",
      secret: OLD,
      expiresAt: NOW,
    });
    expect((await auth.authenticate(requestFor(byOld), 0))?.kind).toBe("ok");
    source.text = `new ${NEW.toString("base64")}`;
    expect(reasonOf(await auth.authenticate(requestFor(byOld), 0))).toMatch(/unknown key/);
  });
});

describe("parseUrlKeys", () => {
  const key = NEW.toString("base64url");

  it.each([
    ["a secret under 32 bytes", `k1 ${randomBytes(31).toString("base64")}`],
    ["a secret that is not base64", `k1 ${key.slice(0, -1)}!`],
    ["a bad key ID", `k/1 ${key}`],
    ["a third field", `k1 ${key} extra`],
    ["a key ID listed twice", `k1 ${key}\nk1 ${key}`],
  ])("refuses %s, naming the line but never the secret", (_case, text) => {
    const attempt = () => parseUrlKeys(`# keys\n${text}`);
    expect(attempt).toThrow(/url keys line [23]/);
    try {
      attempt();
    } catch (error) {
      expect((error as Error).message).not.toContain(key.slice(0, 20));
    }
  });

  it("refuses a file with no key", () => {
    expect(() => parseUrlKeys("# nothing yet\n")).toThrow(/no key/);
  });
});

describe("signUploadUrl refuses what it could not sign", () => {
  it.each<[string, Partial<SignOptions>, string]>([
    ["a bad subject", { subject: "a b" }, "https://up.example/f"],
    ["a fractional expiry", { expiresAt: 1.5 }, "https://up.example/f"],
    ["a negative size", { maxBytes: -1 }, "https://up.example/f"],
    ["a short secret", { secret: randomBytes(16) }, "https://up.example/f"],
    ["a prefix without the final /", { prefix: "/a" }, "https://up.example/f"],
    ["a directory path", {}, "https://up.example/dir/"],
    ["a segment holding a /", {}, "https://up.example/a/b%2Fc"],
    ["a control character", {}, "https://up.example/a%00b"],
  ])("%s", (_case, options, url) => {
    expect(() => sign(url, options)).toThrow(/cannot sign/);
  });
});

describe("bits-sig: only the canonical encoding verifies", () => {
  // 43 base64url characters carry 258 bits for a 256-bit HMAC: the last character's two low
  // bits are padding, so three other characters decode to the same bytes.
  it("the last character changed to any of the three that decode alike is denied", async () => {
    const url = sign("https://up.example/m.bin");
    const sig = new URL(url).searchParams.get("bits-sig") ?? "";
    const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const last = alphabet.indexOf(sig.at(-1) ?? "");
    const twins = [1, 2, 3].map((low) => `${sig.slice(0, -1)}${alphabet[(last & ~3) | low]}`);
    expect(
      twins.every((twin) => Buffer.from(twin, "base64url").equals(Buffer.from(sig, "base64url"))),
    ).toBe(true);
    expect((await check(requestFor(url)))?.kind).toBe("ok");
    for (const twin of twins) {
      const request = requestFor(url, (params) => params.set("bits-sig", twin));
      expect(reasonOf(await check(request))).toMatch(/malformed|bad signature/);
    }
  });
});
