import { createHash } from "node:crypto";
import { type Identity, owns } from "../auth/authorization.ts";
import type { Principal } from "../auth/types.ts";
import { BitsError } from "../bits/errors.ts";
import type { Peer } from "../bits/request.ts";
import { isLive, type SessionRecord } from "../bits/session.ts";

/** One request as the packet handlers see it: who sent it, and what it did for the audit log. */
export interface Call {
  readonly principal: Principal;
  /** The principal as sessions, caps, prefixes and the overwrite list know it. */
  readonly identity: Identity;
  /** The counter of open sessions this client's new sessions occupy. */
  readonly slot: string;
  readonly audit: Audit;
  /** `https://host` as the client reached the server: reply URLs are built on it. */
  readonly origin: string;
  /** The job's remote URL, absolute, query string included. */
  readonly remoteUrl: string;
  /** The request path, as sent. */
  readonly path: string;
  /** The client's address as the audit line gives it; undefined when the front door hides it. */
  readonly client?: string | undefined;
  /** Set when an operator, not the client, sent the packet (docs/client.md, bits-sessions). */
  readonly byOperator?: boolean | undefined;
}

/** What a request did, filled in by the handlers for its audit line. */
export interface Audit {
  /** Bytes written to S3 for this request (staged bytes and parts). */
  bytesStored: number;
}

/**
 * The slot a principal's sessions are counted in. A principal that names someone (a user, a
 * certificate, a signed URL's subject) has its own; one that names no one (anonymous, a signed
 * URL without subject) is counted per client address, so one client cannot take every slot.
 */
export function slotFor(principal: Principal, identity: Identity, peer: Peer | undefined): string {
  return principal.identified ? `p:${identity.key}` : `a:${peer?.address ?? "unknown"}`;
}

/**
 * A session answers only its own principal, on its own URL ([MC-BUP] 3.2.5.2.3; IIS binds a
 * session to its destination). Anyone else is told the session does not exist, so a session ID
 * is worth nothing to another client and says nothing about whether it exists.
 */
export function ownedBy(record: SessionRecord, packet: { key: string }, call: Call): boolean {
  return owns(call.identity, record) && record.key === packet.key;
}

/**
 * The one guard of every packet that names a session: the record, when it is live and this
 * client's own on this URL; for anyone else, and once it expired, the session does not exist
 * (500 BG_E_SESSION_NOT_FOUND, [MC-BUP] 3.2.5.2.3).
 */
export function liveAndOwned(
  record: SessionRecord | undefined,
  packet: { key: string },
  call: Call,
  nowSeconds: number,
): SessionRecord {
  if (record === undefined || !isLive(record, nowSeconds)) {
    throw new BitsError("sessionNotFound", "no such session");
  }
  if (!ownedBy(record, packet, call)) {
    throw new BitsError("sessionNotFound", "no such session for this client and URL");
  }
  return record;
}

/**
 * How a session ID appears in logs: a short hash, so logs never hold a usable session ID but
 * every line of one session carries the same tag.
 */
export function sessionTag(id: string): string {
  return createHash("sha256").update(id).digest("hex").slice(0, 16);
}

/** What a log line shows in place of a secret it must not hold. */
export const REDACTED = "[redacted]";

const GUID = /\{?([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\}?/gi;
/** A reply token (128 random bits in hex) or anything else as long and as random-looking. */
const TOKEN = /[0-9a-f]{32,}/gi;

/**
 * Text for a log line (an error's message, which may name a staged key) with every session ID,
 * in any of its forms (`{GUID}`, the staging folder's lower-case GUID), replaced by its tag, and
 * every token-like run of hex digits removed (docs/security.md, "What is logged").
 */
export function redactIds(text: string): string {
  return text
    .replace(GUID, (_, guid: string) => sessionTag(`{${guid.toUpperCase()}}`))
    .replace(TOKEN, REDACTED);
}
