import { describe, expect, it } from "vitest";
import {
  ack,
  createSessionAck,
  ERROR_REASON_HEADER,
  errorAck,
  formatHresult,
  methodNotAllowed,
} from "../../../functions/bits/ack.ts";
import { BITS_PROTOCOL_GUID, HRESULT } from "../../../functions/bits/constants.ts";
import { BitsError, type BitsErrorKind, ERRORS } from "../../../functions/bits/errors.ts";

const SID = "{A0FF5911-4144-45B3-BF27-27AFC8EC8A67}";
const ACK = { "BITS-Packet-Type": "Ack", "Content-Length": "0" };
const KINDS = Object.keys(ERRORS) as BitsErrorKind[];

describe("formatHresult (docs/protocol.md, Error codes: `0x` and 8 upper-case hex digits)", () => {
  it.each([
    [HRESULT.E_INVALIDARG, "0x80070057"],
    [HRESULT.E_ACCESSDENIED, "0x80070005"],
    [HRESULT.BG_E_SESSION_NOT_FOUND, "0x8020001F"],
    [HRESULT.BG_E_TOO_LARGE, "0x80200020"],
    [HRESULT.E_FAIL, "0x80004005"],
    [0, "0x00000000"],
    [5, "0x00000005"],
    [0xabcdef, "0x00ABCDEF"],
    [0xffffffff, "0xFFFFFFFF"],
  ])("formats %i as %s", (code, text) => {
    expect(formatHresult(code)).toBe(text);
  });

  it("formats a negative (signed 32-bit) HRESULT as its unsigned hex", () => {
    expect(formatHresult(0x80070057 | 0)).toBe("0x80070057");
    expect(formatHresult(-1)).toBe("0xFFFFFFFF");
  });
});

describe("ack: every response is an Ack with Content-Length 0 ([MC-BUP] 2.2.1.2, 2.2.3.3)", () => {
  it("a bare Ack has exactly BITS-Packet-Type: Ack and Content-Length: 0", () => {
    expect(ack(200)).toEqual({ status: 200, headers: ACK });
  });

  it("echoes the session ID and BITS-Received-Content-Range, a 0 offset included", () => {
    expect(ack(200, { sessionId: SID, receivedContentRange: 0 })).toEqual({
      status: 200,
      headers: { ...ACK, "BITS-Session-Id": SID, "BITS-Received-Content-Range": "0" },
    });
    expect(ack(200, { receivedContentRange: 4892 }).headers["BITS-Received-Content-Range"]).toBe(
      "4892",
    );
  });

  it("fields explicitly undefined add no header", () => {
    expect(ack(200, { sessionId: undefined, receivedContentRange: undefined })).toEqual({
      status: 200,
      headers: ACK,
    });
  });
});

describe("createSessionAck ([MC-BUP] 2.2.3.2)", () => {
  it("200 with exactly BITS-Packet-Type, Content-Length, BITS-Protocol, BITS-Session-Id, Accept-Encoding", () => {
    expect(createSessionAck(SID)).toEqual({
      status: 200,
      headers: {
        "BITS-Packet-Type": "Ack",
        "Content-Length": "0",
        "BITS-Session-Id": SID,
        "BITS-Protocol": BITS_PROTOCOL_GUID,
        "Accept-Encoding": "identity",
      },
    });
  });

  it("answers with the canonical lower-case protocol GUID", () => {
    expect(createSessionAck(SID).headers["BITS-Protocol"]).toBe(
      "{7df0354d-249b-430f-820d-3d2a9bef4931}",
    );
  });
});

describe("errorAck: the one place a protocol error becomes an Ack (docs/protocol.md, Error codes)", () => {
  it.each([
    ["invalidArg", 400, "0x80070057"],
    ["accessDenied", 403, "0x80070005"],
    ["uploadsDisabled", 501, "0x80070005"],
    ["sessionNotFound", 500, "0x8020001F"],
    ["tooLarge", 500, "0x80200020"],
    ["internal", 500, "0x80004005"],
  ] as const)(
    "%s is %i with exactly the Ack headers plus Error-Code %s and Context 0x5",
    (kind, status, code) => {
      expect(errorAck(new BitsError(kind, "m"))).toEqual({
        status,
        headers: { ...ACK, "BITS-Error-Code": code, "BITS-Error-Context": "0x5" },
      });
    },
  );

  it("[MC-BUP] note <4>: fragmentTooLarge (413) carries no BITS error headers at all", () => {
    expect(errorAck(new BitsError("fragmentTooLarge", "m"))).toEqual({ status: 413, headers: ACK });
  });

  it("a gap's 416 is a plain Ack: the session and BITS-Received-Content-Range, no error headers", () => {
    expect(ack(416, { sessionId: SID, receivedContentRange: 200 })).toEqual({
      status: 416,
      headers: { ...ACK, "BITS-Session-Id": SID, "BITS-Received-Content-Range": "200" },
    });
  });

  it("echoes a known session ID on an error", () => {
    expect(errorAck(new BitsError("invalidArg", "m"), { sessionId: SID }).headers).toEqual({
      ...ACK,
      "BITS-Session-Id": SID,
      "BITS-Error-Code": "0x80070057",
      "BITS-Error-Context": "0x5",
    });
  });

  it("BITS-Error-Code and BITS-Error-Context appear together, exactly when the error has a code", () => {
    for (const kind of KINDS) {
      const headers = errorAck(new BitsError(kind, "m")).headers;
      const hasCode = ERRORS[kind].code !== undefined;
      expect("BITS-Error-Code" in headers, kind).toBe(hasCode);
      expect("BITS-Error-Context" in headers, kind).toBe(hasCode);
      expect(headers["BITS-Packet-Type"], kind).toBe("Ack");
      expect(headers["Content-Length"], kind).toBe("0");
      expect(errorAck(new BitsError(kind, "m")).status, kind).toBe(ERRORS[kind].status);
    }
  });

  it("never leaks the error message into the response", () => {
    const response = errorAck(new BitsError("internal", "secret detail from S3"));
    expect(JSON.stringify(response)).not.toContain("secret");
  });
});

describe("reasons, for a client that asks (docs/protocol.md, Reasons)", () => {
  const reasonOf = (error: BitsError, withReason = true) =>
    errorAck(error, {}, { withReason }).headers[ERROR_REASON_HEADER];

  it("a refusal of the client's own request says why; only when asked", () => {
    const denied = new BitsError("accessDenied", "the signed URL has expired");
    expect(reasonOf(denied)).toBe("the signed URL has expired");
    expect(reasonOf(denied, false)).toBeUndefined();
    expect(reasonOf(new BitsError("invalidArg", "bad Content-Range"))).toBe("bad Content-Range");
    expect(reasonOf(new BitsError("sessionLimit", "2 sessions open for this client"))).toBe(
      "2 sessions open for this client",
    );
  });

  it("failures of the server and lost sessions say nothing, unless marked as the client's own", () => {
    expect(reasonOf(new BitsError("internal", "secret detail from S3"))).toBeUndefined();
    expect(reasonOf(new BitsError("sessionNotFound", "no such session for this client"))).toBe(
      undefined,
    );
    const ended = new BitsError("sessionNotFound", "ended: cancelled by an operator");
    expect(reasonOf(ended.tellingClient())).toBe("ended: cancelled by an operator");
  });

  it("a reason is one line of printable ASCII, at most 200 characters", () => {
    const reason = reasonOf(
      new BitsError("invalidArg", `caf\u00e9\r\nX-Evil: 1 ${"y".repeat(300)}`),
    );
    expect(reason).toMatch(/^[\x20-\x7e]{1,200}$/);
    expect(reason?.startsWith("caf X-Evil: 1 y")).toBe(true);
  });
});

describe("methodNotAllowed ([MC-BUP] 2.2.1; docs/protocol.md, Packets and the request method)", () => {
  it("is 405 with Allow: BITS_POST and an empty body", () => {
    expect(methodNotAllowed()).toEqual({
      status: 405,
      headers: { Allow: "BITS_POST", "Content-Length": "0" },
    });
  });
});
