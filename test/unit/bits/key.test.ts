import { describe, expect, it } from "vitest";
import { MAX_KEY_BYTES } from "../../../functions/bits/constants.ts";
import { confinedPrefix, normalizePrefix, objectKeyFor } from "../../../functions/bits/key.ts";
import { bitsErrorFrom, thrownKind } from "./throws.ts";

const STAGING = ".bits-staging/";
const key = (path: string, prefix = "") => objectKeyFor(path, prefix, STAGING);
const refused = (path: string, prefix = "") => thrownKind(() => key(path, prefix));

describe("objectKeyFor (docs/protocol.md, Destinations; [MC-BUP] 2.2.1.2)", () => {
  it("maps the request path, without its leading /, to the key", () => {
    expect(key("/upload/2000mb-rfc2119.txt")).toBe("upload/2000mb-rfc2119.txt");
    expect(key("/file.bin")).toBe("file.bin");
  });

  it("applies the key prefix in front of the decoded path", () => {
    expect(key("/upload/a.txt", "tenants/acme/")).toBe("tenants/acme/upload/a.txt");
  });

  it("does not percent-decode the configured prefix", () => {
    expect(key("/a.txt", "p%41/")).toBe("p%41/a.txt");
  });

  it("percent-decodes each segment exactly once: %2541 becomes %41, not A", () => {
    expect(key("/dir/%2541.txt")).toBe("dir/%41.txt");
    expect(key("/%252F")).toBe("%2F");
  });

  it("decodes percent-encoded characters, spaces and UTF-8", () => {
    expect(key("/my%20file%2B1.txt")).toBe("my file+1.txt");
    expect(key("/%C3%A9t%C3%A9/%E6%97%A5%E6%9C%AC.txt")).toBe("été/日本.txt");
  });

  it("keeps `+` literal (paths are not form-encoded)", () => {
    expect(key("/a+b.txt")).toBe("a+b.txt");
  });

  it("accepts unicode given raw", () => {
    expect(key("/ünïcødé/😀.txt")).toBe("ünïcødé/😀.txt");
  });

  it.each([
    "/..",
    "/upload/../secret",
    "/upload/..",
    "/upload/%2E%2E/secret",
    "/upload/%2e%2e",
    "/.",
    "/upload/./a.txt",
    "/upload/%2E/a.txt",
  ])("refuses `.` and `..` segments, encoded or not: %s", (path) => {
    expect(refused(path)).toBe("invalidArg");
  });

  it.each([
    "/upload/a%2Fb.txt",
    "/upload/a%2fb.txt",
    "/upload/%2F",
    "/upload/%2E%2E%2Fsecret",
    "/upload/a%5Cb.txt",
    "/upload/a%5cb.txt",
    "/upload/..%5Csecret",
    "/upload/a\\b.txt",
  ])("refuses a separator inside a segment (encoded / or \\): %s", (path) => {
    expect(refused(path)).toBe("invalidArg");
  });

  it.each(["/upload//a.txt", "//a.txt", "/a///b.txt"])("refuses empty segments: %s", (path) => {
    expect(refused(path)).toBe("invalidArg");
  });

  it.each([
    "/upload/a%00.txt",
    "/upload/a%0A.txt",
    "/upload/a%0d%0a.txt",
    "/upload/a%09.txt",
    "/upload/a%1F.txt",
    "/upload/a%7F.txt",
    "/upload/a\u0000.txt",
    "/upload/a\n.txt",
  ])("refuses control characters: %j", (path) => {
    expect(refused(path)).toBe("invalidArg");
  });

  it.each(["/", "/upload/", "/upload/dir/"])(
    "[MC-BUP] 2.2.1.2: a destination URL naming a directory (%s) is 400 E_INVALIDARG",
    (path) => {
      const error = bitsErrorFrom(() => key(path));
      expect(error.kind).toBe("invalidArg");
      expect(error.status).toBe(400);
    },
  );

  it.each(["", "upload/a.txt"])("refuses a path that is not absolute: %j", (path) => {
    expect(refused(path)).toBe("invalidArg");
  });

  it.each(["/upload/%", "/upload/%4", "/upload/%zz.txt", "/upload/%C3", "/upload/%ED%A0%80"])(
    "refuses malformed percent-encoding: %s",
    (path) => {
      expect(refused(path)).toBe("invalidArg");
    },
  );

  it("refuses keys under the reserved staging prefix, where staged fragments live", () => {
    expect(refused("/.bits-staging/session/1")).toBe("invalidArg");
    expect(refused("/%2Ebits-staging/x")).toBe("invalidArg");
  });

  it("refuses a key the prefix puts under the staging prefix", () => {
    // ".bits" + "-staging/x" is ".bits-staging/x": the check is on the whole key.
    expect(thrownKind(() => objectKeyFor("/-staging/x", ".bits", STAGING))).toBe("invalidArg");
    expect(objectKeyFor("/x", ".bits", STAGING)).toBe(".bitsx");
  });

  it("allows the staging name below a prefix, and names that merely resemble it", () => {
    expect(key("/.bits-staging/x", "uploads/")).toBe("uploads/.bits-staging/x");
    expect(key("/.bits-staging")).toBe(".bits-staging");
    expect(key("/.bits-stagingx/y")).toBe(".bits-stagingx/y");
  });

  it("an empty reserved prefix reserves nothing", () => {
    expect(objectKeyFor("/.bits-staging/x", "", "")).toBe(".bits-staging/x");
  });

  it(`accepts a key of exactly ${MAX_KEY_BYTES} bytes and refuses one byte more (S3 limit)`, () => {
    const name = (bytes: number) => `/${"a".repeat(bytes)}`;
    expect(key(name(MAX_KEY_BYTES))).toHaveLength(MAX_KEY_BYTES);
    expect(refused(name(MAX_KEY_BYTES + 1))).toBe("invalidArg");
  });

  it("counts the key length in UTF-8 bytes, prefix included", () => {
    // "€" is 3 bytes of UTF-8: 341 of them are 1,023 bytes, 342 are 1,026.
    expect(key(`/${"€".repeat(341)}`)).toHaveLength(341);
    expect(refused(`/${"€".repeat(342)}`)).toBe("invalidArg");
    expect(refused(`/${"a".repeat(MAX_KEY_BYTES - 3)}`, "abcd")).toBe("invalidArg");
    expect(key(`/${"a".repeat(MAX_KEY_BYTES - 4)}`, "abcd")).toHaveLength(MAX_KEY_BYTES);
  });

  it("counts the decoded length: an encoded name short enough once decoded is accepted", () => {
    const encoded = `/${"%61".repeat(MAX_KEY_BYTES)}`;
    expect(encoded.length).toBeGreaterThan(MAX_KEY_BYTES);
    expect(key(encoded)).toBe("a".repeat(MAX_KEY_BYTES));
  });
});

describe("destinationPath and keys: one spelling per name, nothing that displays as something else", () => {
  it("normalises to NFC: a decomposed é and a composed one are the same key", () => {
    expect(key("/cafe%CC%81.txt")).toBe("caf\u00e9.txt");
    expect(key("/caf%C3%A9.txt")).toBe("caf\u00e9.txt");
  });

  it.each([
    ["RIGHT-TO-LEFT OVERRIDE", "%E2%80%AE"],
    ["LEFT-TO-RIGHT EMBEDDING", "%E2%80%AA"],
    ["RIGHT-TO-LEFT ISOLATE", "%E2%81%A7"],
    ["POP DIRECTIONAL ISOLATE", "%E2%81%A9"],
    ["RIGHT-TO-LEFT MARK", "%E2%80%8F"],
    ["ARABIC LETTER MARK", "%D8%9C"],
  ])("refuses the bidirectional control %s", (_, encoded) => {
    expect(refused(`/invoice${encoded}fdp.exe`)).toBe("invalidArg");
  });

  it.each([
    ["NEL (C1)", "%C2%85"],
    ["CSI (C1)", "%C2%9B"],
    ["DEL", "%7F"],
    ["ESC (C0)", "%1B"],
  ])("refuses the control character %s", (_, encoded) => {
    expect(refused(`/a${encoded}b.txt`)).toBe("invalidArg");
  });
});

describe("normalizePrefix: prefixes are whole path segments", () => {
  it.each([
    ["", ""],
    ["/", ""],
    ["uploads", "uploads/"],
    ["uploads/", "uploads/"],
    ["/uploads/", "uploads/"],
    ["a/b", "a/b/"],
  ])("%j becomes %j", (text, prefix) => {
    expect(normalizePrefix(text)).toBe(prefix);
  });

  it.each(["a//b", "a/./b", "../a", "a/\u202eb"])("%j is not a prefix", (text) => {
    expect(normalizePrefix(text)).toBeUndefined();
  });

  it("a prefix never runs into a neighbour: uploads does not cover uploads-private", () => {
    const prefix = normalizePrefix("uploads") ?? "";
    expect(key("/-private/x", prefix)).toBe("uploads/-private/x");
    expect("uploads-private/x".startsWith(prefix)).toBe(false);
  });
});

describe("confinedPrefix: each principal under its own prefix", () => {
  it("puts the name in as whole segments under the key prefix", () => {
    expect(confinedPrefix("uploads/", "{principal}", "alice")).toBe("uploads/alice/");
    expect(confinedPrefix("", "tenants/{principal}/in", "bob")).toBe("tenants/bob/in/");
  });

  it.each(["a/b", "..", ".", "", "x\u0000", "a\u202e"])(
    "a name that cannot be one segment (%j) may write nothing",
    (name) => {
      expect(confinedPrefix("uploads/", "{principal}", name)).toBeUndefined();
    },
  );
});
