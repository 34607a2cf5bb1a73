import { describe, expect, it } from "vitest";
import { addressKey, FailedAttempts } from "../../../functions/auth/failed-attempts.ts";
import { ParsedSecret } from "../../../functions/auth/parsed-secret.ts";

describe("FailedAttempts", () => {
  const limit = { failures: 3, windowMs: 1000, maxKeys: 10 };

  it("locks a key out at the limit, until the window after the last failure has passed", () => {
    const attempts = new FailedAttempts(limit);
    attempts.fail("a", 0);
    attempts.fail("a", 100);
    expect(attempts.lockedFor("a", 200)).toBe(0);
    attempts.fail("a", 200);
    expect(attempts.lockedFor("a", 300)).toBe(900);
    expect(attempts.lockedFor("b", 300)).toBe(0);
    expect(attempts.lockedFor("a", 1200)).toBe(0);
  });

  it("forgets a count once its window has passed", () => {
    const attempts = new FailedAttempts(limit);
    attempts.fail("a", 0);
    attempts.fail("a", 100);
    attempts.fail("a", 1200);
    expect(attempts.lockedFor("a", 1300)).toBe(0);
  });
});

describe("addressKey", () => {
  it("an IPv4 address is itself; an IPv6 address counts by its /64", () => {
    expect(addressKey("203.0.113.7")).toBe("203.0.113.7");
    expect(addressKey("::ffff:203.0.113.7")).toBe("203.0.113.7");
    expect(addressKey("2001:db8:1:2:aaaa::1")).toBe("2001:db8:1:2::/64");
    expect(addressKey("2001:DB8:1:2:bbbb:0:0:9")).toBe("2001:db8:1:2::/64");
    expect(addressKey("2001:db8::1")).toBe("2001:db8:0:0::/64");
    expect(addressKey("::1")).toBe("0:0:0:0::/64");
  });
});

describe("ParsedSecret", () => {
  it("parses a text once, again only when it changed, and names the source of a bad one", async () => {
    let text = "one";
    const parsed: string[] = [];
    const secret = new ParsedSecret({ source: "src", current: async () => text }, (t) => {
      parsed.push(t);
      if (t === "bad") throw new Error("malformed");
      return t.toUpperCase();
    });
    expect(await secret.current()).toBe("ONE");
    expect(await secret.current()).toBe("ONE");
    expect(parsed).toEqual(["one"]);
    text = "bad";
    await expect(secret.current()).rejects.toThrow(/^src: malformed$/);
    text = "two";
    expect(await secret.current()).toBe("TWO");
    expect(parsed).toEqual(["one", "bad", "two"]);
  });
});
