import { BITS_PROTOCOL_GUID } from "./constants.ts";
import type { BitsError } from "./errors.ts";
import type { BitsResponse } from "./request.ts";

/**
 * Formats an HRESULT as the project sends it: `0x` and 8 upper-case hex digits (docs/protocol.md,
 * "Error codes").
 */
export function formatHresult(code: number): string {
  return `0x${(code >>> 0).toString(16).toUpperCase().padStart(8, "0")}`;
}

interface AckFields {
  sessionId?: string | undefined;
  receivedContentRange?: number | undefined;
  /** Upload-reply only, on the final fragment's Ack ([MC-BUP] 2.2.7.2). */
  replyUrl?: string | undefined;
  /**
   * Close-Session of a stored file: the object's full-object CRC32C, base64 as S3 writes it
   * (docs/checksums.md), so a client can check what was stored against what it sent.
   */
  objectCrc32c?: string | undefined;
}

/**
 * Not a BITS header: Windows ignores it, and `bits-upload` compares it with the file's own
 * CRC32C (docs/checksums.md).
 */
export const OBJECT_CRC32C_HEADER = "X-Object-CRC32C";

/**
 * Not BITS headers either: a client that sends `X-BITS-Want-Reason` learns in
 * `X-BITS-Error-Reason` why an error Ack refused its own request, in a few words
 * (docs/protocol.md, "Reasons"). `bits-upload` asks; Windows does not, so the Acks it sees are
 * exactly the protocol's.
 */
export const WANT_REASON_HEADER = "X-BITS-Want-Reason";
export const ERROR_REASON_HEADER = "X-BITS-Error-Reason";

/** A reason as a header value: printable ASCII, one line, at most 200 characters. */
function headerText(text: string): string {
  return text
    .replace(/[^\x20-\x7e]+/g, " ")
    .trim()
    .slice(0, 200);
}

/**
 * Every response to a BITS packet is an Ack with `Content-Length: 0` and no body, errors
 * included ([MC-BUP] 2.2.1.2, 2.2.3.3; docs/protocol.md, "Acks").
 */
export function ack(status: number, fields: AckFields = {}): BitsResponse {
  const headers: Record<string, string> = {
    "BITS-Packet-Type": "Ack",
    "Content-Length": "0",
  };
  if (fields.sessionId !== undefined) headers["BITS-Session-Id"] = fields.sessionId;
  if (fields.receivedContentRange !== undefined) {
    headers["BITS-Received-Content-Range"] = String(fields.receivedContentRange);
  }
  if (fields.replyUrl !== undefined) headers["BITS-Reply-URL"] = fields.replyUrl;
  if (fields.objectCrc32c !== undefined) headers[OBJECT_CRC32C_HEADER] = fields.objectCrc32c;
  return { status, headers };
}

/** The Ack for Create-Session ([MC-BUP] 2.2.3.2): protocol, new session and `identity`. */
export function createSessionAck(sessionId: string): BitsResponse {
  const base = ack(200, { sessionId });
  return {
    status: 200,
    headers: {
      ...base.headers,
      "BITS-Protocol": BITS_PROTOCOL_GUID,
      "Accept-Encoding": "identity",
    },
  };
}

/**
 * The one place a protocol error becomes an Ack. `BITS-Error-Code` and `BITS-Error-Context`
 * appear together and only on errors; 413 carries none ([MC-BUP] note <4>). A gap's 416 is no
 * error but a plain `ack` with the expected offset.
 */
export function errorAck(
  error: BitsError,
  fields: AckFields = {},
  { withReason = false }: { withReason?: boolean } = {},
): BitsResponse {
  const base = ack(error.status, fields);
  const code = error.code;
  if (code === undefined) return base;
  const reason = withReason ? error.clientReason : undefined;
  return {
    status: base.status,
    headers: {
      ...base.headers,
      "BITS-Error-Code": formatHresult(code),
      "BITS-Error-Context": `0x${error.context.toString(16).toUpperCase()}`,
      ...(reason === undefined ? {} : { [ERROR_REASON_HEADER]: headerText(reason) }),
    },
  };
}

/**
 * The answer to a request without valid credentials: a plain HTTP challenge, never an Ack. The
 * Windows client answers it with the job's credentials and resends the packet
 * ([MC-BUP] 3.1.5.1.7); an Ack with an error would be a protocol failure to it instead.
 */
export function challenge(realm: string): BitsResponse {
  return {
    status: 401,
    headers: {
      "WWW-Authenticate": `Basic realm="${realm}", charset="UTF-8"`,
      "Content-Length": "0",
    },
  };
}

/** An answer with `Retry-After`: when the client may try again, in seconds. */
export function withRetryAfter(response: BitsResponse, seconds: number): BitsResponse {
  return { ...response, headers: { ...response.headers, "Retry-After": String(seconds) } };
}

/** Methods other than BITS_POST on the upload path ([MC-BUP] 2.2.1). */
export function methodNotAllowed(): BitsResponse {
  return { status: 405, headers: { Allow: "BITS_POST", "Content-Length": "0" } };
}
