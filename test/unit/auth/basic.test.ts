import bcrypt from "bcryptjs";
import { describe, expect, it } from "vitest";
import {
  BasicAuthenticator,
  HtpasswdError,
  parseBasicAuthorization,
  parseHtpasswd,
} from "../../../functions/auth/basic.ts";
import type { AuthRequest } from "../../../functions/auth/types.ts";
import type { SecretText } from "../../../functions/ports/secrets.ts";
import { basic } from "../../support/transports.ts";

/** Made with `htpasswd -nbB -C 4 alice 's3cret'` (apache2-utils 2.4.68): Apache writes `$2y$`. */
const APACHE_LINE = "alice:$2y$04$r0i3eBLipZWFIwKTk2eZde8OCA5jJtZHnMLElrj9kflsVHbqlFeu6";
const BOB_HASH = bcrypt.hashSync("hunter2", 4);
const REALM = "BITS uploads";

function secret(initial: string): SecretText & { text: string } {
  return {
    text: initial,
    source: "test htpasswd",
    async current() {
      return this.text;
    },
  };
}

function request(authorization: string | undefined, secure = true): AuthRequest {
  const headers = new Map<string, string>();
  if (authorization !== undefined) headers.set("authorization", authorization);
  return { destination: "/a/b.zip", query: new Map(), headers, secure };
}

/** bcryptjs' compare, counted. */
function countingCompare() {
  const calls: string[] = [];
  const compare = async (password: string, hash: string) => {
    calls.push(hash);
    return bcrypt.compare(password, hash);
  };
  return { calls, compare };
}

function authenticator(text: string, options: Partial<{ cacheSize: number }> = {}) {
  const source = secret(text);
  const counted = countingCompare();
  const auth = new BasicAuthenticator(source, {
    realm: REALM,
    compare: counted.compare,
    ...options,
  });
  return { source, calls: counted.calls, auth };
}

const thrown = (text: string) => {
  try {
    parseHtpasswd(text);
  } catch (error) {
    return error;
  }
  throw new Error("expected parseHtpasswd to throw");
};

describe("parseHtpasswd: bcrypt entries only", () => {
  it("reads user:hash lines, skipping blank lines, comments and CRLF endings", () => {
    const text = `# users\n\n${APACHE_LINE}\r\n  # bob below\nbob:${BOB_HASH}\n`;
    expect(parseHtpasswd(text)).toEqual(
      new Map([
        ["alice", APACHE_LINE.slice(6)],
        ["bob", BOB_HASH],
      ]),
    );
  });

  it("accepts the $2a$, $2b$ and $2y$ (htpasswd -B) prefixes", () => {
    const body = BOB_HASH.slice(4);
    for (const prefix of ["$2a$", "$2b$", "$2y$"]) {
      expect(parseHtpasswd(`bob:${prefix}${body}`).get("bob")).toBe(prefix + body);
    }
  });

  it.each([
    ["MD5 (htpasswd -m)", "carol:$apr1$Ee1Qr7xe$kq5dDIpMKb0b3FTjGJ8Ys/"],
    ["SHA-1 (htpasswd -s)", "carol:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g="],
    ["crypt (htpasswd -d)", "carol:rqXexS6ZhobKA"],
    ["plain text (htpasswd -p)", "carol:s3cret"],
    ["a truncated bcrypt hash", `carol:${BOB_HASH.slice(0, 40)}`],
  ])("refuses %s, naming the line and the user but never the hash", (_kind, line) => {
    const error = thrown(`# header\n${line}\n`);
    expect(error).toBeInstanceOf(HtpasswdError);
    const message = (error as Error).message;
    expect(message).toContain("line 2");
    expect(message).toContain('"carol"');
    expect(message).not.toContain(line.slice(6));
  });

  it("refuses a user listed twice", () => {
    const error = thrown(`bob:${BOB_HASH}\n${APACHE_LINE}\nbob:${BOB_HASH}`) as Error;
    expect(error).toBeInstanceOf(HtpasswdError);
    expect(error.message).toMatch(/line 3 \(user "bob"\).*line 1/);
  });

  it("refuses a line without user:hash, without echoing it", () => {
    const error = thrown("just-a-password") as Error;
    expect(error.message).toBe("htpasswd line 1: expected user:hash");
  });

  it("bcryptjs verifies the $2y$ line htpasswd -B wrote, as it is", async () => {
    const hash = parseHtpasswd(APACHE_LINE).get("alice") ?? "";
    expect(await bcrypt.compare("s3cret", hash)).toBe(true);
    expect(await bcrypt.compare("s3cret!", hash)).toBe(false);
  });
});

describe("parseBasicAuthorization", () => {
  it("decodes user and password as UTF-8, splitting at the first colon", () => {
    expect(parseBasicAuthorization(basic("zoë", "p:ss:wörd"))).toEqual({
      user: "zoë",
      password: "p:ss:wörd",
    });
  });

  it("takes the scheme case-insensitively", () => {
    const token = Buffer.from("a:b").toString("base64");
    expect(parseBasicAuthorization(`bAsIc ${token}`)).toEqual({ user: "a", password: "b" });
  });

  it.each([
    ["no header", undefined],
    ["another scheme", "Bearer abc"],
    ["no colon", `Basic ${Buffer.from("alice").toString("base64")}`],
    ["not base64", "Basic !!!"],
    ["invalid UTF-8", `Basic ${Buffer.from([0x61, 0x3a, 0xff]).toString("base64")}`],
    ["no token", "Basic "],
  ])("answers undefined for %s", (_case, header) => {
    expect(parseBasicAuthorization(header)).toBeUndefined();
  });
});

describe("BasicAuthenticator", () => {
  const htpasswd = `${APACHE_LINE}\nbob:${BOB_HASH}\n`;

  it("challenges a request without credentials: BITS sends them only after a 401", async () => {
    const { auth } = authenticator(htpasswd);
    expect(await auth.authenticate(request(undefined), 0)).toMatchObject({
      kind: "challenge",
      realm: REALM,
    });
    expect(await auth.authenticate(request("Basic %%%"), 0)).toMatchObject({ kind: "challenge" });
  });

  it("lets a good user in, with the real bcryptjs and Apache's $2y$ hash", async () => {
    const auth = new BasicAuthenticator(secret(htpasswd), { realm: REALM });
    expect(await auth.authenticate(request(basic("alice", "s3cret")), 0)).toEqual({
      kind: "ok",
      principal: { name: "alice", mode: "basic", identified: true },
    });
  });

  it("denies Basic credentials that did not travel over TLS, without a bcrypt", async () => {
    const { auth, calls } = authenticator(htpasswd);
    const result = await auth.authenticate(request(basic("alice", "s3cret"), false), 0);
    expect(result.kind).toBe("denied");
    expect(calls).toHaveLength(0);
  });

  it("a known credential verified twice costs exactly one bcrypt compare", async () => {
    const { auth, calls } = authenticator(htpasswd);
    for (const now of [0, 1000, 9 * 60_000]) {
      const result = await auth.authenticate(request(basic("bob", "hunter2")), now);
      expect(result.kind).toBe("ok");
    }
    expect(calls).toHaveLength(1);
  });

  it("a verified credential is checked again after its TTL (10 minutes)", async () => {
    const { auth, calls } = authenticator(htpasswd);
    await auth.authenticate(request(basic("bob", "hunter2")), 0);
    await auth.authenticate(request(basic("bob", "hunter2")), 10 * 60_000);
    expect(calls).toHaveLength(2);
  });

  it("a wrong password is challenged, and its repeat within 30 s costs no bcrypt", async () => {
    const { auth, calls } = authenticator(htpasswd);
    const wrong = request(basic("bob", "hunter3"));
    expect(await auth.authenticate(wrong, 0)).toMatchObject({ kind: "challenge", realm: REALM });
    expect(await auth.authenticate(wrong, 29_999)).toMatchObject({ kind: "challenge" });
    expect(calls).toHaveLength(1);
    expect(await auth.authenticate(wrong, 30_000)).toMatchObject({ kind: "challenge" });
    expect(calls).toHaveLength(2);
  });

  it("an unknown user costs one bcrypt against a dummy hash of the users' cost", async () => {
    const { auth, calls } = authenticator(htpasswd);
    const result = await auth.authenticate(request(basic("mallory", "hunter2")), 0);
    expect(result.kind).toBe("challenge");
    expect(calls).toHaveLength(1);
    expect(calls[0]).toMatch(/^\$2b\$04\$[./A-Za-z0-9]{53}$/);
    expect(calls[0]).not.toBe(BOB_HASH);
  });

  it("a cache hit counts only for the same user, though user\\0password is ambiguous", async () => {
    const { auth } = authenticator(`a:${bcrypt.hashSync("b\0c", 4)}`);
    expect((await auth.authenticate(request(basic("a", "b\0c")), 0)).kind).toBe("ok");
    expect((await auth.authenticate(request(basic("a\0b", "c")), 0)).kind).toBe("challenge");
  });

  it("a changed htpasswd drops the cache: a removed user is refused at once", async () => {
    const { auth, source, calls } = authenticator(htpasswd);
    expect((await auth.authenticate(request(basic("bob", "hunter2")), 0)).kind).toBe("ok");
    source.text = APACHE_LINE;
    expect((await auth.authenticate(request(basic("bob", "hunter2")), 1)).kind).toBe("challenge");
    expect(calls).toHaveLength(2);
  });

  it("a changed password stops the old one and lets the new one in", async () => {
    const { auth, source } = authenticator(htpasswd);
    await auth.authenticate(request(basic("bob", "new-password")), 0); // cached failure
    expect((await auth.authenticate(request(basic("bob", "hunter2")), 0)).kind).toBe("ok");
    source.text = `bob:${bcrypt.hashSync("new-password", 4)}`;
    expect((await auth.authenticate(request(basic("bob", "hunter2")), 1)).kind).toBe("challenge");
    expect((await auth.authenticate(request(basic("bob", "new-password")), 2)).kind).toBe("ok");
  });

  it("keeps at most cacheSize verified credentials", async () => {
    const { auth, calls } = authenticator(htpasswd, { cacheSize: 1 });
    const bob = request(basic("bob", "hunter2"));
    const alice = request(basic("alice", "s3cret"));
    for (const r of [bob, alice, bob, alice])
      expect((await auth.authenticate(r, 0)).kind).toBe("ok");
    expect(calls).toHaveLength(4);
  });

  it("a failing secret source propagates (the service answers 500)", async () => {
    const source: SecretText = {
      source: "ssm:/bits/htpasswd",
      current: () => Promise.reject(new Error("throttled")),
    };
    const auth = new BasicAuthenticator(source, { realm: REALM });
    await expect(auth.authenticate(request(basic("bob", "x")), 0)).rejects.toThrow("throttled");
  });

  it("a bad htpasswd is reported with its source, and never lets anyone in", async () => {
    const { auth } = authenticator("bob:plain");
    const attempt = auth.authenticate(request(basic("bob", "plain")), 0);
    await expect(attempt).rejects.toThrow(/^test htpasswd: htpasswd line 1 \(user "bob"\)/);
  });
});

describe("htpasswd: the names of clients without an identity are reserved", () => {
  it.each(["anonymous", "signed-url"])("refuses a user named %s", (user) => {
    expect(() => parseHtpasswd(`${user}:${BOB_HASH}`)).toThrow(/reserved/);
  });
});
