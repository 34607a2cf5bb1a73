import { describe, expect, it } from "vitest";
import { BITS_PROTOCOL_GUID } from "../../../functions/bits/constants.ts";
import type { KeyRules } from "../../../functions/bits/key.ts";
import {
  isBitsPost,
  packetTypeOf,
  parsePacket,
  sessionIdOf,
} from "../../../functions/bits/packet.ts";
import { type BitsRequest, headerMap } from "../../../functions/bits/request.ts";
import { bitsErrorFrom, thrownKind } from "./throws.ts";

const RULES: KeyRules = { keyPrefix: "", reservedPrefix: ".bits-staging/" };
const SID = "{A0FF5911-4144-45B3-BF27-27AFC8EC8A67}";

interface Options {
  readonly method?: string;
  readonly path?: string;
  readonly body?: Uint8Array;
  /** Leave Content-Length out (it is added from the body by default). */
  readonly noContentLength?: boolean;
}

function request(headers: Record<string, string>, options: Options = {}): BitsRequest {
  const body = options.body ?? new Uint8Array(0);
  const all = {
    ...(options.noContentLength ? {} : { "Content-Length": String(body.length) }),
    ...headers,
  };
  return {
    method: options.method ?? "BITS_POST",
    path: options.path ?? "/upload/file.txt",
    headers: headerMap(Object.entries(all)),
    body,
  };
}

const parse = (headers: Record<string, string>, options?: Options) =>
  parsePacket(request(headers, options), RULES);
const refused = (headers: Record<string, string>, options?: Options) =>
  thrownKind(() => parse(headers, options));

const createSession = (protocols = BITS_PROTOCOL_GUID) => ({
  "BITS-Packet-Type": "Create-Session",
  "BITS-Supported-Protocols": protocols,
});
const fragmentHeaders = (range = "bytes 0-3/10") => ({
  "BITS-Packet-Type": "Fragment",
  "BITS-Session-Id": SID,
  "Content-Range": range,
});
const FOUR = new Uint8Array([1, 2, 3, 4]);

describe("parsePacket: packet types ([MC-BUP] 2.2.1.2; docs/protocol.md, Packets and the request method)", () => {
  it.each([
    ["Ping", "ping"],
    ["PING", "ping"],
    ["Create-Session", "create-session"],
    ["CREATE-SESSION", "create-session"],
    ["create-session", "create-session"],
    ["Close-Session", "close-session"],
    ["CLOSE-SESSION", "close-session"],
    ["Cancel-Session", "cancel-session"],
    ["cAnCeL-sEsSiOn", "cancel-session"],
    ["Fragment", "fragment"],
    ["fRaGmEnT", "fragment"],
    ["FRAgmENT", "fragment"],
    ["  Ping  ", "ping"],
  ])("packet type %j is compared case-insensitively as %s", (raw, type) => {
    expect(packetTypeOf(request({ "BITS-Packet-Type": raw }))).toBe(type);
  });

  it("a `fRaGmEnT` packet is parsed like any Fragment", () => {
    const packet = parse({ ...fragmentHeaders(), "BITS-Packet-Type": "fRaGmEnT" }, { body: FOUR });
    expect(packet).toEqual({
      type: "fragment",
      sessionId: SID,
      key: "upload/file.txt",
      range: { first: 0, last: 3, total: 10 },
      body: FOUR,
    });
  });

  it("a `CREATE-SESSION` packet is parsed like any Create-Session", () => {
    expect(parse({ ...createSession(), "BITS-Packet-Type": "CREATE-SESSION" })).toEqual({
      type: "create-session",
      key: "upload/file.txt",
    });
  });

  it.each(["Ack", "Pong", "Fragments", "Create Session", ""])(
    "unknown packet type %j is 400 E_INVALIDARG",
    (raw) => {
      const error = bitsErrorFrom(() => parse({ "BITS-Packet-Type": raw }));
      expect(error.kind).toBe("invalidArg");
      expect(error.status).toBe(400);
    },
  );

  it("a request without BITS-Packet-Type is 400", () => {
    expect(refused({})).toBe("invalidArg");
  });

  it("Ping parses to a bare ping", () => {
    expect(parse({ "BITS-Packet-Type": "Ping" })).toEqual({ type: "ping" });
  });
});

describe("parsePacket: common syntax ([MC-BUP] 3.2.5.2.3)", () => {
  it("a header value over 4 KB is 400 E_INVALIDARG ([MC-BUP] 2.2.1, note <2>)", () => {
    expect(refused({ "BITS-Packet-Type": "Ping", "X-Custom": "x".repeat(4097) })).toBe(
      "invalidArg",
    );
  });

  it("a header value of exactly 4 KB is accepted", () => {
    expect(parse({ "BITS-Packet-Type": "Ping", "X-Custom": "x".repeat(4096) })).toEqual({
      type: "ping",
    });
  });

  it("the 4 KB limit counts UTF-8 bytes, not characters", () => {
    // 2,049 "é" are 2,049 characters but 4,098 bytes.
    expect(refused({ "BITS-Packet-Type": "Ping", "X-Custom": "é".repeat(2049) })).toBe(
      "invalidArg",
    );
  });

  it("the 4 KB limit applies before the packet type is even looked at", () => {
    expect(refused({ "BITS-Packet-Type": "Nonsense", "X-Custom": "x".repeat(5000) })).toBe(
      "invalidArg",
    );
  });

  it("an absent Content-Length is not an error on its own (docs/protocol.md, Content-Length)", () => {
    expect(parse({ "BITS-Packet-Type": "Ping" }, { noContentLength: true })).toEqual({
      type: "ping",
    });
    const packet = parse(fragmentHeaders(), { body: FOUR, noContentLength: true });
    expect(packet.type).toBe("fragment");
  });

  it.each([
    ["5", new Uint8Array(0)],
    ["3", FOUR],
    ["5", FOUR],
    ["", new Uint8Array(0)],
    ["-0", new Uint8Array(0)],
    ["0x4", FOUR],
    ["4.0", FOUR],
    ["4, 4", FOUR],
    ["four", FOUR],
  ])("Content-Length %j that differs from the body is 400", (length, body) => {
    const headers = body.length > 0 ? fragmentHeaders() : { "BITS-Packet-Type": "Ping" };
    expect(() => parse(headers, { body })).not.toThrow();
    expect(refused({ ...headers, "Content-Length": length }, { body })).toBe("invalidArg");
  });

  it("a Content-Length equal to the body, with surrounding blanks, is accepted", () => {
    const packet = parse({ ...fragmentHeaders(), "Content-Length": " 4 " }, { body: FOUR });
    expect(packet.type).toBe("fragment");
  });

  it.each(["Ping", "Create-Session", "Close-Session", "Cancel-Session"])(
    "%s with a body is 400 ([MC-BUP] 2.2.2-2.2.10: Content-Length 0, no body)",
    (type) => {
      const headers = { ...createSession(), "BITS-Session-Id": SID, "BITS-Packet-Type": type };
      expect(parse(headers).type).toBe(type.toLowerCase());
      expect(refused(headers, { body: new Uint8Array(8) })).toBe("invalidArg");
      expect(refused(headers, { body: new Uint8Array(8), noContentLength: true })).toBe(
        "invalidArg",
      );
    },
  );
});

describe("parsePacket: Create-Session ([MC-BUP] 3.2.5.2.4)", () => {
  it("maps the request path to the object key", () => {
    expect(parse(createSession(), { path: "/upload/a%20b.txt" })).toEqual({
      type: "create-session",
      key: "upload/a b.txt",
    });
  });

  it("applies the key prefix", () => {
    const packet = parsePacket(request(createSession()), { ...RULES, keyPrefix: "in/" });
    expect(packet).toEqual({ type: "create-session", key: "in/upload/file.txt" });
  });

  it("a destination naming a directory is 400", () => {
    expect(refused(createSession(), { path: "/upload/" })).toBe("invalidArg");
  });

  it.each([
    ["space-separated", `{bad} ${BITS_PROTOCOL_GUID}`],
    ["comma-separated", `{bad},${BITS_PROTOCOL_GUID}`],
    ["comma-and-space-separated", `{bad}, ${BITS_PROTOCOL_GUID} ,{other}`],
    ["tab-separated", `{bad}\t${BITS_PROTOCOL_GUID}`],
    ["upper-case", BITS_PROTOCOL_GUID.toUpperCase()],
    ["padded", `  ${BITS_PROTOCOL_GUID}  `],
  ])("a %s protocol list naming the BITS 1.5 GUID is accepted ([MC-BUP] 2.2.2.2)", (_, list) => {
    expect(parse(createSession(list)).type).toBe("create-session");
  });

  it.each([
    ["an unknown GUID", "{00000000-0000-0000-0000-000000000000}"],
    ["an empty list", ""],
    ["the GUID without braces", BITS_PROTOCOL_GUID.slice(1, -1)],
    ["the GUID glued to another", `{bad}${BITS_PROTOCOL_GUID}`],
    ["a semicolon-separated list", `{bad};${BITS_PROTOCOL_GUID}`],
  ])("%s has no protocol in common: 400 E_INVALIDARG", (_, list) => {
    expect(refused(createSession(list))).toBe("invalidArg");
  });

  it("a Create-Session without BITS-Supported-Protocols is 400", () => {
    expect(refused({ "BITS-Packet-Type": "Create-Session" })).toBe("invalidArg");
  });
});

describe("parsePacket: Fragment (docs/protocol.md, Fragments and offsets)", () => {
  it("returns the session, the parsed range and the body itself", () => {
    const packet = parse(fragmentHeaders(), { body: FOUR });
    expect(packet).toEqual({
      type: "fragment",
      sessionId: SID,
      key: "upload/file.txt",
      range: { first: 0, last: 3, total: 10 },
      body: FOUR,
    });
    // The body is passed on as is, not copied.
    if (packet.type === "fragment") expect(packet.body).toBe(FOUR);
  });

  it("a Fragment carries a body (the only packet that may)", () => {
    expect(parse(fragmentHeaders(), { body: FOUR }).type).toBe("fragment");
  });

  it.each(["identity", "IDENTITY", " Identity "])(
    "5.2 step 6: Content-Encoding %j is accepted",
    (encoding) => {
      const headers = { ...fragmentHeaders(), "Content-Encoding": encoding };
      expect(parse(headers, { body: FOUR }).type).toBe("fragment");
    },
  );

  it.each(["gzip", "deflate", "br", "identity, gzip", ""])(
    "5.2 step 6: Content-Encoding %j other than identity is 400 ([MC-BUP] note <12>)",
    (encoding) => {
      const headers = { ...fragmentHeaders(), "Content-Encoding": encoding };
      expect(refused(headers, { body: FOUR })).toBe("invalidArg");
    },
  );

  it("a missing Content-Range is 400", () => {
    const { "Content-Range": _, ...headers } = fragmentHeaders();
    expect(refused(headers, { body: FOUR })).toBe("invalidArg");
  });

  it("a Content-Range that disagrees with the body is 400", () => {
    expect(refused(fragmentHeaders("bytes 0-4/10"), { body: FOUR })).toBe("invalidArg");
  });

  it("a zero-byte file's Fragment parses with an empty body", () => {
    const packet = parse(fragmentHeaders("bytes */0"));
    expect(packet).toMatchObject({ type: "fragment", range: { first: 0, last: -1, total: 0 } });
  });

  it("a Fragment without BITS-Session-Id is 400 E_INVALIDARG", () => {
    const { "BITS-Session-Id": _, ...headers } = fragmentHeaders();
    expect(refused(headers, { body: FOUR })).toBe("invalidArg");
  });

  it("a session ID is trimmed", () => {
    const packet = parse({ ...fragmentHeaders(), "BITS-Session-Id": `  ${SID} ` }, { body: FOUR });
    expect(packet).toMatchObject({ sessionId: SID });
  });

  it.each([
    ["empty", ""],
    ["over 100 characters", "x".repeat(101)],
  ])("a present but implausible (%s) session ID names no session: it parses as ''", (_, id) => {
    const packet = parse({ ...fragmentHeaders(), "BITS-Session-Id": id }, { body: FOUR });
    expect(packet).toMatchObject({ type: "fragment", sessionId: "" });
  });
});

describe("parsePacket: Close-Session and Cancel-Session", () => {
  it.each(["Close-Session", "Cancel-Session"])(
    "%s carries its session ID and URL's key",
    (type) => {
      expect(parse({ "BITS-Packet-Type": type, "BITS-Session-Id": SID })).toEqual({
        type: type.toLowerCase(),
        sessionId: SID,
        key: "upload/file.txt",
      });
    },
  );

  it.each(["Close-Session", "Cancel-Session"])("%s without BITS-Session-Id is 400", (type) => {
    expect(refused({ "BITS-Packet-Type": type })).toBe("invalidArg");
  });
});

describe("sessionIdOf", () => {
  it("returns the trimmed ID up to 100 characters, else nothing", () => {
    expect(sessionIdOf(request({ "BITS-Session-Id": SID }))).toBe(SID);
    expect(sessionIdOf(request({ "BITS-Session-Id": "x".repeat(100) }))).toHaveLength(100);
    expect(sessionIdOf(request({ "BITS-Session-Id": "x".repeat(101) }))).toBeUndefined();
    expect(sessionIdOf(request({ "BITS-Session-Id": "   " }))).toBeUndefined();
    expect(sessionIdOf(request({}))).toBeUndefined();
  });
});

describe("isBitsPost ([MC-BUP] 2.2.1; docs/protocol.md, Packets and the request method)", () => {
  it("accepts BITS_POST", () => {
    expect(isBitsPost(request({}, { method: "BITS_POST" }))).toBe(true);
  });

  it.each(["BITS_POST", "bits_post", " BITS_POST "])(
    "accepts POST with X-Http-Method-Override: %j (OneDrive-style extension)",
    (override) => {
      const post = request({ "X-Http-Method-Override": override }, { method: "POST" });
      expect(isBitsPost(post)).toBe(true);
    },
  );

  it("matches the override header name case-insensitively", () => {
    const post = request({ "x-http-method-override": "BITS_POST" }, { method: "POST" });
    expect(isBitsPost(post)).toBe(true);
  });

  it.each(["GET", "PUT", "PATCH", "DELETE"])("ignores the override on %s", (method) => {
    const other = request({ "X-Http-Method-Override": "BITS_POST" }, { method });
    expect(isBitsPost(other)).toBe(false);
  });

  it.each([
    ["POST", {}],
    ["POST", { "X-Http-Method-Override": "PUT" }],
    ["POST", { "X-Http-Method-Override": "BITS_POSTX" }],
    ["GET", {}],
    ["HEAD", {}],
    ["bits_post", {}],
    ["BITS-POST", {}],
  ])("refuses method %s with headers %j", (method, headers) => {
    expect(isBitsPost(request(headers, { method }))).toBe(false);
  });
});
