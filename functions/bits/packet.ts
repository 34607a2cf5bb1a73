import { BITS_PROTOCOL_GUID, MAX_HEADER_VALUE_BYTES, MAX_SESSION_ID_LENGTH } from "./constants.ts";
import { invalidArg } from "./errors.ts";
import { type Destination, type KeyRules, keyOf, parseDestination } from "./key.ts";
import { type ContentRange, parseContentRange } from "./range.ts";
import type { BitsRequest } from "./request.ts";

export type Packet =
  | { readonly type: "ping" }
  | { readonly type: "create-session"; readonly key: string }
  | {
      readonly type: "fragment";
      readonly sessionId: string;
      /** The key the URL maps to: a session answers only packets sent to its own URL. */
      readonly key: string;
      readonly range: ContentRange;
      readonly body: Uint8Array;
    }
  | { readonly type: "close-session"; readonly sessionId: string; readonly key: string }
  | { readonly type: "cancel-session"; readonly sessionId: string; readonly key: string };

export type PacketType = Packet["type"];

const utf8 = new TextEncoder();

const PACKET_TYPES: ReadonlySet<string> = new Set<PacketType>([
  "ping",
  "create-session",
  "fragment",
  "close-session",
  "cancel-session",
]);

/**
 * `BITS_POST`, or `POST` with `X-Http-Method-Override: BITS_POST` (docs/protocol.md, "Packets and
 * the request method").
 */
export function isBitsPost(request: BitsRequest): boolean {
  if (request.method === "BITS_POST") return true;
  return (
    request.method === "POST" &&
    request.headers.get("x-http-method-override")?.trim().toUpperCase() === "BITS_POST"
  );
}

/** The packet type, compared case-insensitively ([MC-BUP] 2.2.1.2 vs the Windows client). */
export function packetTypeOf(request: BitsRequest): PacketType {
  const raw = request.headers.get("bits-packet-type");
  if (raw === undefined) throw invalidArg("missing BITS-Packet-Type");
  const type = raw.trim().toLowerCase();
  if (!PACKET_TYPES.has(type)) throw invalidArg(`unknown packet type ${raw.slice(0, 40)}`);
  return type as PacketType;
}

/** The session ID the request carries, if it is a plausible one. */
export function sessionIdOf(request: BitsRequest): string | undefined {
  const id = request.headers.get("bits-session-id")?.trim();
  if (id === undefined || id === "" || id.length > MAX_SESSION_ID_LENGTH) return undefined;
  return id;
}

/**
 * Common validation in [MC-BUP] 3.2.5.2.3 order (syntax, then `Content-Length`), then the
 * packet-specific syntax. Throws `BitsError` for anything malformed. `destination` is the
 * request path as the service decoded it, once.
 */
export function parsePacket(
  request: BitsRequest,
  rules: KeyRules,
  destination: Destination = parseDestination(request.path),
): Packet {
  for (const value of request.headers.values()) {
    if (utf8.encode(value).length > MAX_HEADER_VALUE_BYTES) {
      throw invalidArg("header value over 4 KB");
    }
  }
  const type = packetTypeOf(request);
  checkContentLength(request);
  if (type !== "fragment" && request.body.length > 0) {
    // Ping, Create-, Close- and Cancel-Session carry no body ([MC-BUP] 2.2.2-2.2.10).
    throw invalidArg(`${type} with a body`);
  }
  if (type === "ping") return { type };
  const key = keyOf(destination, rules.keyPrefix, rules.reservedPrefix);
  switch (type) {
    case "create-session":
      checkProtocols(request.headers.get("bits-supported-protocols"));
      return { type, key };
    case "fragment": {
      const encoding = request.headers.get("content-encoding")?.trim().toLowerCase();
      if (encoding !== undefined && encoding !== "identity") {
        // Windows servers support only identity ([MC-BUP] note <12>).
        throw invalidArg("Content-Encoding other than identity");
      }
      const range = parseContentRange(request.headers.get("content-range"), request.body.length);
      return { type, sessionId: requireSessionId(request), key, range, body: request.body };
    }
    case "close-session":
    case "cancel-session":
      return { type, sessionId: requireSessionId(request), key };
  }
}

/**
 * `Content-Length` MUST be present ([MC-BUP] 2.2.1.1), but Lambda events do not always carry it:
 * its absence is tolerated, a value that differs from the body is not (docs/protocol.md,
 * "Content-Length").
 */
function checkContentLength(request: BitsRequest): void {
  const value = request.headers.get("content-length");
  if (value === undefined) return;
  if (!/^\s*\d{1,16}\s*$/.test(value) || Number(value) !== request.body.length) {
    throw invalidArg("Content-Length differs from the body");
  }
}

/** The client's list may be space- or comma-separated ([MC-BUP] 2.2.2.2). */
function checkProtocols(value: string | undefined): void {
  const offered = (value ?? "")
    .split(/[\s,]+/)
    .filter((guid) => guid !== "")
    .map((guid) => guid.toLowerCase());
  if (!offered.includes(BITS_PROTOCOL_GUID)) {
    throw invalidArg("no protocol in common ([MC-BUP] 3.2.5.2.4)");
  }
}

function requireSessionId(request: BitsRequest): string {
  if (request.headers.get("bits-session-id") === undefined) {
    throw invalidArg("missing BITS-Session-Id");
  }
  // A present but implausible ID cannot name a session: answered as unknown by the lookup.
  return sessionIdOf(request) ?? "";
}
