import { recordedIdentity } from "../auth/authorization.ts";
import { AUTH_MODES, type AuthMode } from "../auth/types.ts";
import { BitsError } from "../bits/errors.ts";
import { isEnded, isLive, type SessionRecord } from "../bits/session.ts";
import { type Call, sessionTag } from "./call.ts";
import { nowSeconds, type ServiceContext } from "./context.ts";
import { endSession } from "./end-session.ts";
import { caughtUp } from "./tail.ts";

/**
 * What an operator may do with sessions, beside the protocol: read them all and cancel one
 * (docs/client.md, bits-sessions). Reading goes through the session store's paged scan, as the cleanup
 * sweep does (docs/cleanup.md); cancelling goes through Cancel-Session itself.
 */

/** Table entries read per scan page. */
const SCAN_PAGE = 1000;

/** Every session record in the table (open, ending and ended), page by page. */
export async function* storedSessions(context: ServiceContext): AsyncGenerator<SessionRecord> {
  let after: string | undefined;
  do {
    const page = await context.sessions.scanPage({ after, max: SCAN_PAGE });
    for (const item of page.items) if (item.kind === "session") yield item.record;
    after = page.next;
  } while (after !== undefined);
}

/**
 * A record as an operator should see it: an open session with the bytes staged since its last
 * record write counted (docs/durability.md), from one listing of its staging folder.
 */
export async function withTail(
  context: ServiceContext,
  record: SessionRecord,
): Promise<SessionRecord> {
  return isLive(record, nowSeconds(context)) ? caughtUp(context, record) : record;
}

/** A session ID as IIS writes it, from any spelling of the GUID: `{1A2B…}`, `1a2b…`. */
export function canonicalSessionId(text: string): string | undefined {
  const bare = text.trim().replace(/^\{|\}$/g, "");
  return /^[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}$/i.test(bare)
    ? `{${bare.toUpperCase()}}`
    : undefined;
}

export type Lookup =
  | { readonly kind: "found"; readonly record: SessionRecord }
  | { readonly kind: "unknown" }
  /** A prefix that names more than one session. */
  | { readonly kind: "ambiguous"; readonly ids: readonly string[] };

/**
 * The session a full ID or the start of one names (`1A2B3C4D`, as a listing shows it), with or
 * without braces, in any case. A full ID costs one read; a prefix, a scan of the table.
 */
export async function findSession(context: ServiceContext, text: string): Promise<Lookup> {
  const id = canonicalSessionId(text);
  if (id !== undefined) {
    const record = await context.sessions.get(id);
    return record === undefined ? { kind: "unknown" } : { kind: "found", record };
  }
  const prefix = text.trim().replace(/^\{/, "").toUpperCase();
  if (!/^[0-9A-F-]+$/.test(prefix)) return { kind: "unknown" };
  const matches: SessionRecord[] = [];
  for await (const record of storedSessions(context)) {
    if (record.id.slice(1).startsWith(prefix)) matches.push(record);
  }
  const [only, ...more] = matches;
  if (only === undefined) return { kind: "unknown" };
  if (more.length > 0) return { kind: "ambiguous", ids: matches.map((record) => record.id) };
  return { kind: "found", record: only };
}

export type OperatorCancel =
  /** Cancelled (now, or by a Cancel racing this one); `record` is the tombstone. */
  | { readonly kind: "cancelled"; readonly record: SessionRecord }
  /** It had ended already, or it was committing and completed instead; `record` as it is now. */
  | { readonly kind: "ended"; readonly record: SessionRecord }
  /** Past its timeout: clients can no longer reach it, and the cleanup releases it. */
  | { readonly kind: "expired"; readonly record: SessionRecord }
  | { readonly kind: "unknown" };

/**
 * Cancels a session for its client, as an operator: the same Cancel-Session ([MC-BUP]
 * 3.2.5.2.8) a client sends, so the ending is decided and carried out exactly as then
 * (the multipart upload aborted, staged objects and part chunks deleted, the open-session slot
 * released, the tombstone written, whose stream record announces `Upload Cancelled`,
 * docs/events.md). The operator is not the session's principal, so the packet is sent on its
 * behalf, on its own URL. A session whose end was decided already keeps that decision: one
 * that is committing completes, as it would for the client's own Cancel.
 */
export async function cancelAsOperator(
  context: ServiceContext,
  id: string,
): Promise<OperatorCancel> {
  const record = await context.sessions.get(id);
  if (record === undefined) return { kind: "unknown" };
  if (isEnded(record)) return { kind: "ended", record };
  if (!isLive(record, nowSeconds(context))) return { kind: "expired", record };
  try {
    await endSession(
      context,
      { type: "cancel-session", sessionId: record.id, key: record.key },
      ownerCall(record),
    );
  } catch (error) {
    // The session ended or expired between the read and the cancel.
    if (!(error instanceof BitsError && error.kind === "sessionNotFound")) throw error;
  }
  const after = await context.sessions.get(id);
  if (after === undefined) return { kind: "unknown" };
  if (after.status !== "cancelled") return { kind: "ended", record: after };
  context.runtime.log("info", "session cancelled by the operator", {
    session: sessionTag(record.id),
    key: record.key,
    principal: record.principal,
  });
  return { kind: "cancelled", record: after };
}

/** The request of the session's own client, as far as ending a session looks at one. */
function ownerCall(record: SessionRecord): Call {
  const mode = AUTH_MODES.find((known) => known === record.auth) ?? ("anonymous" as AuthMode);
  return {
    principal: { name: record.principal, mode, identified: record.slot.startsWith("p:") },
    identity: recordedIdentity(record, record.principal),
    slot: record.slot,
    audit: { bytesStored: 0 },
    origin: "",
    remoteUrl: "",
    path: "",
    client: record.client,
    byOperator: true,
  };
}
