import { createAuthenticator } from "../auth/authenticator.ts";
import type { Authenticator, AuthRequest, Principal } from "../auth/types.ts";
import { ack, challenge, errorAck, formatHresult, methodNotAllowed } from "../bits/ack.ts";
import { HRESULT } from "../bits/constants.ts";
import { BitsError } from "../bits/errors.ts";
import { confinedPrefix, destinationPath, objectKeyFor } from "../bits/key.ts";
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
import { type Call, sessionTag, slotFor } from "./call.ts";
import { nowSeconds, type ServiceContext } from "./context.ts";
import { createSession } from "./create-session.ts";
import { endSession } from "./end-session.ts";
import { fragment } from "./fragment.ts";
import { emfFields, type Metric } from "./metrics.ts";
import { serveReply } from "./reply-download.ts";

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

/** Lets everyone in: the default of tests and of the local server on loopback. */
export const ANONYMOUS: Authenticator = createAuthenticator(["anonymous"], { realm: "" });

/** What one request did, for its audit line. */
interface Outcome {
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
    async handle(request) {
      const started = context.runtime.now();
      const outcome: Outcome = {};
      const response = await serve(context, authenticator, request, outcome);
      audit(context, request, response, outcome, started);
      return response;
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
      return await serveReply(context, authenticator, request, authRequest(request));
    } catch (error) {
      logFailure(context, error, undefined);
      return { status: 500, headers: { "Content-Length": "0" } };
    }
  }
  if (!isBitsPost(request)) return methodNotAllowed();
  try {
    // Authentication comes first, as in IIS: a client without credentials learns nothing else.
    const auth = await authenticator.authenticate(authRequest(request), context.runtime.now());
    if (auth.kind === "challenge") {
      outcome.reason = auth.reason;
      return challenge(auth.realm);
    }
    if (auth.kind === "denied") throw new BitsError("accessDenied", auth.reason);
    outcome.principal = auth.principal;
    if (!uploadsEnabled(settings.uploadPaths, request.path)) {
      throw new BitsError("uploadsDisabled", "uploads are not enabled for this path");
    }
    const packet = parsePacket(request, {
      keyPrefix: settings.keyPrefix,
      reservedPrefix: settings.stagingPrefix,
    });
    outcome.packet = packet;
    const origin = originOf(request);
    const search = new URLSearchParams([...(request.query ?? new Map())]).toString();
    const call: Call = {
      principal: auth.principal,
      slot: slotFor(auth.principal, request.peer),
      audit: { bytesStored: 0 },
      origin,
      remoteUrl: `${origin}${request.path}${search === "" ? "" : `?${search}`}`,
      path: request.path,
      client: request.peer?.address,
    };
    outcome.call = call;
    if (packet.type !== "ping") {
      authorize(context, call.principal, packet.key, packet.type === "create-session");
    }
    const handler = HANDLERS[packet.type] as Handler<PacketType>;
    return await handler(context, packet, call);
  } catch (error) {
    const failure =
      error instanceof BitsError ? error : new BitsError("internal", "unexpected failure");
    outcome.reason = failure.message;
    if (failure.kind === "internal") logFailure(context, error, sessionIdOf(request));
    const sessionId = await knownSessionId(context, request, outcome, failure);
    return errorAck(failure, sessionId === undefined ? {} : { sessionId });
  }
}

/** `scheme://host` as the client reached the server (the Host header it sent). */
function originOf(request: BitsRequest): string {
  const host = request.headers.get("host") ?? "localhost";
  return `${request.peer?.scheme ?? "https"}://${host}`;
}

function authRequest(request: BitsRequest): AuthRequest {
  let destination: string | undefined;
  try {
    destination = destinationPath(request.path);
  } catch {
    destination = undefined;
  }
  return {
    destination,
    query: request.query ?? new Map(),
    headers: request.headers,
    secure: request.peer?.secure ?? false,
    clientCertificate: request.peer?.clientCertificate,
  };
}

/**
 * May this principal write this key ([MC-BUP] 3.2.5.2.3, step 2)? Confined principals only
 * under their own prefix; a signed URL only until it expires, for a new upload (`starting`): one
 * that started in time may finish, since BITS may take days to resume (docs/security.md).
 */
function authorize(context: ServiceContext, principal: Principal, key: string, starting: boolean) {
  const { keyPrefix, principalPrefix } = context.settings;
  if (principalPrefix !== "") {
    const allowed = confinedPrefix(keyPrefix, principalPrefix, principal.name);
    if (allowed === undefined || !key.startsWith(allowed)) {
      throw new BitsError("accessDenied", "outside the principal's prefix");
    }
  }
  const grant = principal.grant;
  if (starting && grant !== undefined) {
    if (grant.expiresAt <= nowSeconds(context)) {
      throw new BitsError("accessDenied", "the signed URL has expired");
    }
  }
}

/** What a read of a stored object may do: the key to read, or the answer that refuses it. */
export type ReadAccess =
  | { readonly kind: "allowed"; readonly key: string }
  | { readonly kind: "refused"; readonly response: BitsResponse; readonly reason: string };

/**
 * May this request read the object at its path (the local server's GET and HEAD, docs/security.md
 * "The local server")? Only with the authentication an upload needs, and only a key this
 * principal may write now: an enabled path, inside its prefix, and with a signed URL only while
 * it could start an upload there. Refusals are answered before the object is looked up, so they
 * say nothing about whether it exists.
 */
export async function authorizeRead(
  context: ServiceContext,
  authenticator: Authenticator,
  request: BitsRequest,
): Promise<ReadAccess> {
  const auth = await authenticator.authenticate(authRequest(request), context.runtime.now());
  if (auth.kind === "challenge") {
    return { kind: "refused", response: challenge(auth.realm), reason: auth.reason };
  }
  const refused = (reason: string): ReadAccess => ({
    kind: "refused",
    response: { status: 403, headers: { "Content-Length": "0" } },
    reason,
  });
  if (auth.kind === "denied") return refused(auth.reason);
  const { settings } = context;
  if (!uploadsEnabled(settings.uploadPaths, request.path)) {
    return refused("uploads are not enabled for this path");
  }
  let key: string;
  try {
    key = objectKeyFor(request.path, settings.keyPrefix, settings.stagingPrefix);
    authorize(context, auth.principal, key, true);
  } catch (error) {
    if (error instanceof BitsError) {
      const status = error.kind === "accessDenied" ? 403 : 400;
      return {
        kind: "refused",
        response: { status, headers: { "Content-Length": "0" } },
        reason: error.message,
      };
    }
    throw error;
  }
  return { kind: "allowed", key };
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
  const { packet, principal } = outcome;
  if (id === undefined || failure.kind === "sessionNotFound" || principal === undefined) {
    return undefined;
  }
  if (packet?.type === "ping" || packet?.type === "create-session") return undefined;
  try {
    const { keyPrefix, stagingPrefix } = context.settings;
    const key = packet?.key ?? objectKeyFor(request.path, keyPrefix, stagingPrefix);
    const record = await context.sessions.get(id);
    const owned = record?.principal === principal.name && record.key === key;
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
    error: error instanceof Error ? `${error.name}: ${error.message}` : String(error),
  });
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
    path: request.path.slice(0, 1100),
    key: packet !== undefined && "key" in packet ? packet.key : undefined,
    packet: type,
    principal: principal?.name,
    auth: principal?.mode,
    session: sessionId === undefined ? undefined : sessionTag(sessionId),
    status: response.status,
    error: response.headers["BITS-Error-Code"],
    reason: response.status < 400 ? undefined : outcome.reason,
    received: request.body.length,
    stored: call?.audit.bytesStored ?? 0,
    ms,
    ...emfFields(context.settings.metrics, metrics, started),
  });
}
