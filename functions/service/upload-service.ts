import { ANONYMOUS } from "../auth/authenticator.ts";
import { identityOf, owns, writeRefusal } from "../auth/authorization.ts";
import type { Authenticator, AuthRequest, Principal } from "../auth/types.ts";
import {
  ack,
  challenge,
  errorAck,
  formatHresult,
  methodNotAllowed,
  WANT_REASON_HEADER,
  withRetryAfter,
} from "../bits/ack.ts";
import { HRESULT } from "../bits/constants.ts";
import { BitsError } from "../bits/errors.ts";
import { type Destination, destinationUrlPath, keyOf, parseDestination } from "../bits/key.ts";
import {
  isBitsPost,
  type Packet,
  type PacketType,
  packetTypeOf,
  parsePacket,
  sessionIdOf,
} from "../bits/packet.ts";
import type { BitsRequest, BitsResponse } from "../bits/request.ts";
import { isLive } from "../bits/session.ts";
import { type Call, REDACTED, redactIds, sessionTag, slotFor } from "./call.ts";
import { nowSeconds, type ServiceContext } from "./context.ts";
import { createSession } from "./create-session.ts";
import { endSession } from "./end-session.ts";
import { fragment } from "./fragment.ts";
import { emfFields, type Metric } from "./metrics.ts";
import { serveReply } from "./reply-download.ts";
import { inRequest } from "./request-scope.ts";

type Handler<T extends PacketType> = (
  context: ServiceContext,
  packet: Extract<Packet, { type: T }>,
  call: Call,
) => Promise<BitsResponse>;

/** One handler per packet type ([MC-BUP] 3.2.5.2.5-8). Ping needs no session (3.2.5.2.2). */
const HANDLERS: { [T in PacketType]: Handler<T> } = {
  ping: async () => ack(200),
  "create-session": createSession,
  fragment,
  "close-session": endSession,
  "cancel-session": endSession,
};

export interface UploadService {
  handle(request: BitsRequest): Promise<BitsResponse>;
}

/** What one request did, for its audit line. */
interface Outcome {
  /** The request path, decoded once. */
  destination?: Destination | undefined;
  principal?: Principal | undefined;
  packet?: Packet | undefined;
  call?: Call | undefined;
  reason?: string | undefined;
}

/**
 * The BITS upload server, independent of front door and storage: a request value in, an Ack
 * value out. Every failure becomes a well-formed Ack here and nowhere else, and every request,
 * refused ones included, leaves one audit line (docs/security.md, "What is logged").
 */
export function createUploadService(
  context: ServiceContext,
  authenticator: Authenticator = ANONYMOUS,
): UploadService {
  return {
    handle(request) {
      const ids = { requestId: request.peer?.requestId, invocation: request.peer?.invocationId };
      return inRequest(ids, async () => {
        const started = context.runtime.now();
        const outcome: Outcome = {};
        const response = await serve(context, authenticator, request, outcome);
        audit(context, request, response, outcome, started);
        return response;
      });
    },
  };
}

async function serve(
  context: ServiceContext,
  authenticator: Authenticator,
  request: BitsRequest,
  outcome: Outcome,
): Promise<BitsResponse> {
  const { settings } = context;
  const isReply = request.path.startsWith(`${settings.replyPath}/`);
  if ((request.method === "GET" || request.method === "HEAD") && isReply) {
    try {
      const destination = parseDestination(request.path);
      return await serveReply(context, authenticator, request, authRequest(request, destination));
    } catch (error) {
      logFailure(context, error, undefined);
      return { status: 500, headers: { "Content-Length": "0" } };
    }
  }
  if (!isBitsPost(request)) return methodNotAllowed();
  // The path is decoded here and nowhere else: what is authorized, notified, audited and stored
  // is this one canonical path (docs/security.md, "One path").
  const destination = parseDestination(request.path);
  outcome.destination = destination;
  // Only a Ping may name no destination; its upload path is then judged as sent.
  const path = destination.ok ? destination.path : request.path;
  try {
    // Authentication comes first, as in IIS: a client without credentials learns nothing else.
    const auth = await authenticator.authenticate(
      authRequest(request, destination),
      context.runtime.now(),
    );
    if (auth.kind === "challenge") {
      outcome.reason = auth.reason;
      return challenge(auth.realm);
    }
    if (auth.kind === "throttled") {
      outcome.reason = auth.reason;
      const refusal = errorAck(new BitsError("retryLater", auth.reason));
      return withRetryAfter(refusal, auth.retryAfterSeconds);
    }
    if (auth.kind === "denied") throw new BitsError("accessDenied", auth.reason);
    outcome.principal = auth.principal;
    if (!uploadsEnabled(settings.uploadPaths, path)) {
      throw new BitsError("uploadsDisabled", "uploads are not enabled for this path");
    }
    const packet = parsePacket(
      request,
      { keyPrefix: settings.keyPrefix, reservedPrefix: settings.stagingPrefix },
      destination,
    );
    outcome.packet = packet;
    // Set by the operator, never taken from the request when configured (docs/security.md).
    const origin = settings.publicOrigin ?? originOf(request);
    const search = new URLSearchParams([...(request.query ?? new Map())]).toString();
    const identity = identityOf(auth.principal, settings);
    const call: Call = {
      principal: auth.principal,
      identity,
      slot: slotFor(auth.principal, identity, request.peer),
      audit: { bytesStored: 0 },
      origin,
      remoteUrl: `${origin}${destination.ok ? destinationUrlPath(path) : path}${search === "" ? "" : `?${search}`}`,
      path,
      client: request.peer?.address,
    };
    outcome.call = call;
    if (packet.type !== "ping") {
      const refusal = writeRefusal(settings, call.principal, identity, packet.key, {
        creating: packet.type === "create-session",
        nowSeconds: nowSeconds(context),
      });
      if (refusal !== undefined) throw new BitsError("accessDenied", refusal);
    }
    const handler = HANDLERS[packet.type] as Handler<PacketType>;
    return await handler(context, packet, call);
  } catch (error) {
    const failure =
      error instanceof BitsError ? error : new BitsError("internal", "unexpected failure");
    outcome.reason = failure.message;
    if (failure.kind === "internal") logFailure(context, error, sessionIdOf(request));
    const sessionId = await knownSessionId(context, request, outcome, failure);
    return errorAck(failure, sessionId === undefined ? {} : { sessionId }, {
      withReason: request.headers.has(WANT_REASON_HEADER.toLowerCase()),
    });
  }
}

/**
 * `scheme://host` as the client reached the server (the Host header it sent): only for URLs
 * given back to that client, and only when no public origin is configured. Never the target of
 * a request the server makes (relative notification URLs need the configured origin).
 */
function originOf(request: BitsRequest): string {
  const host = request.headers.get("host") ?? "localhost";
  return `${request.peer?.scheme ?? "https"}://${host}`;
}

function authRequest(request: BitsRequest, destination: Destination): AuthRequest {
  return {
    destination: destination.ok ? destination.path : undefined,
    query: request.query ?? new Map(),
    headers: request.headers,
    secure: request.peer?.secure ?? false,
    address: request.peer?.address,
    clientCertificate: request.peer?.clientCertificate,
  };
}

/** What a read of a stored object may do: the key to read, or the answer that refuses it. */
export type ReadAccess =
  | { readonly kind: "allowed"; readonly key: string }
  | { readonly kind: "refused"; readonly response: BitsResponse; readonly reason: string };

/**
 * May this request read the object at its path (the local server's GET and HEAD, docs/security.md
 * "The local server")? Only with the authentication an upload needs, and only a key this
 * principal may write now (`writeRefusal` for a new upload): an enabled path, inside its
 * prefix, and with a signed URL only while it could start an upload there. Refusals are
 * answered before the object is looked up, so they say nothing about whether it exists.
 */
export async function authorizeRead(
  context: ServiceContext,
  authenticator: Authenticator,
  request: BitsRequest,
): Promise<ReadAccess> {
  const { settings } = context;
  // Decoded once, as an upload's path is (docs/security.md, "One path").
  const destination = parseDestination(request.path);
  const auth = await authenticator.authenticate(
    authRequest(request, destination),
    context.runtime.now(),
  );
  if (auth.kind === "challenge") {
    return { kind: "refused", response: challenge(auth.realm), reason: auth.reason };
  }
  const refused = (reason: string, status = 403): ReadAccess => ({
    kind: "refused",
    response: { status, headers: { "Content-Length": "0" } },
    reason,
  });
  if (auth.kind === "throttled") {
    const response = errorAck(new BitsError("retryLater", auth.reason));
    return {
      kind: "refused",
      response: withRetryAfter(response, auth.retryAfterSeconds),
      reason: auth.reason,
    };
  }
  if (auth.kind === "denied") return refused(auth.reason);
  if (!destination.ok) return refused(destination.error.message, 400);
  if (!uploadsEnabled(settings.uploadPaths, destination.path)) {
    return refused("uploads are not enabled for this path");
  }
  let key: string;
  try {
    key = keyOf(destination, settings.keyPrefix, settings.stagingPrefix);
  } catch (error) {
    if (error instanceof BitsError) return refused(error.message, 400);
    throw error;
  }
  const identity = identityOf(auth.principal, settings);
  const refusal = writeRefusal(settings, auth.principal, identity, key, {
    creating: true,
    nowSeconds: nowSeconds(context),
  });
  return refusal === undefined ? { kind: "allowed", key } : refused(refusal);
}

/**
 * The session ID to echo on an error Ack: only one that names a live session of this principal
 * on this URL (docs/protocol.md, "Session IDs": a session ID says nothing to anyone else). A
 * packet refused before its session was looked up costs one read here.
 */
async function knownSessionId(
  context: ServiceContext,
  request: BitsRequest,
  outcome: Outcome,
  failure: BitsError,
): Promise<string | undefined> {
  const id = sessionIdOf(request);
  const { packet, principal, destination } = outcome;
  if (
    id === undefined ||
    failure.kind === "sessionNotFound" ||
    principal === undefined ||
    destination === undefined
  ) {
    return undefined;
  }
  if (packet?.type === "ping" || packet?.type === "create-session") return undefined;
  try {
    const { keyPrefix, stagingPrefix } = context.settings;
    const key = packet?.key ?? keyOf(destination, keyPrefix, stagingPrefix);
    const record = await context.sessions.get(id);
    const owned =
      record !== undefined &&
      owns(identityOf(principal, context.settings), record) &&
      record.key === key;
    return owned && isLive(record, nowSeconds(context)) ? id : undefined;
  } catch {
    return undefined;
  }
}

/** A path is enabled when it lies under one of the prefixes (a prefix "/" enables all). */
export function uploadsEnabled(prefixes: readonly string[], path: string): boolean {
  return prefixes.some(
    (prefix) =>
      prefix === "/" || path === prefix || path.startsWith(`${prefix.replace(/\/$/, "")}/`),
  );
}

function logFailure(context: ServiceContext, error: unknown, sessionId: string | undefined) {
  context.runtime.log("error", "request failed", {
    session: sessionId === undefined ? undefined : sessionTag(sessionId),
    error: redactIds(error instanceof Error ? `${error.name}: ${error.message}` : String(error)),
  });
}

/**
 * The path as the audit line gives it: the canonical one, which decisions were made on; a reply
 * URL without its session and token, which are all that guards some replies.
 */
function auditPath(
  context: ServiceContext,
  request: BitsRequest,
  destination: Destination | undefined,
): string {
  const path = destination?.ok ? destination.path : request.path;
  const { replyPath } = context.settings;
  const isReply = [path, request.path].some((p) => p.startsWith(`${replyPath}/`));
  return isReply ? `${replyPath}/${REDACTED}` : path.slice(0, 1100);
}

/** One JSON line per request (docs/security.md, "What is logged"). */
function audit(
  context: ServiceContext,
  request: BitsRequest,
  response: BitsResponse,
  outcome: Outcome,
  started: number,
) {
  const { principal, packet, call } = outcome;
  const sessionId = sessionIdOf(request);
  let type: string | undefined = packet?.type;
  if (type === undefined) {
    try {
      type = packetTypeOf(request);
    } catch {
      type = undefined;
    }
  }
  const code = response.headers["BITS-Error-Code"];
  const serverError =
    response.status >= 500 && (code === undefined || code === formatHresult(HRESULT.E_FAIL));
  const ms = context.runtime.now() - started;
  const metrics: Metric[] = [
    { name: "Requests", value: 1, unit: "Count" },
    { name: "BytesReceived", value: request.body.length, unit: "Bytes" },
    { name: "BytesStored", value: call?.audit.bytesStored ?? 0, unit: "Bytes" },
    { name: "Fragments", value: type === "fragment" ? 1 : 0, unit: "Count" },
    { name: "Latency", value: ms, unit: "Milliseconds" },
    { name: "ServerErrors", value: serverError ? 1 : 0, unit: "Count" },
  ];
  if (response.status >= 400) {
    const dimensions = { Status: String(response.status), BitsErrorCode: code ?? "none" };
    metrics.push({ name: "RefusedRequests", value: 1, unit: "Count" });
    metrics.push({ name: "RefusedRequests", value: 1, unit: "Count", dimensions });
  }
  context.runtime.log(response.status < 400 ? "info" : "warn", "request", {
    requestId: request.peer?.requestId,
    invocation: request.peer?.invocationId,
    client: request.peer?.address,
    userAgent: request.headers.get("user-agent")?.slice(0, 200),
    method: request.method.slice(0, 20),
    path: auditPath(context, request, outcome.destination),
    key: packet !== undefined && "key" in packet ? packet.key : undefined,
    packet: type,
    principal: principal?.name,
    auth: principal?.mode,
    session: sessionId === undefined ? undefined : sessionTag(sessionId),
    status: response.status,
    error: response.headers["BITS-Error-Code"],
    reason:
      response.status < 400 || outcome.reason === undefined ? undefined : redactIds(outcome.reason),
    received: request.body.length,
    stored: call?.audit.bytesStored ?? 0,
    ms,
    ...emfFields(context.settings.metrics, metrics, started),
  });
}
