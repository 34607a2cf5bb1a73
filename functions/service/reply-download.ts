import { timingSafeEqual } from "node:crypto";
import { identityOf, owns } from "../auth/authorization.ts";
import type { Authenticator, AuthRequest } from "../auth/types.ts";
import { challenge } from "../bits/ack.ts";
import type { BitsRequest, BitsResponse } from "../bits/request.ts";
import type { ServiceContext } from "./context.ts";
import { replyKeyOf, replyServable } from "./reply.ts";
import { downloadHeaders, parseRange } from "./reply-range.ts";
import { sessionIdOfStagingDir } from "./staging.ts";

const empty = (status: number): BitsResponse => ({ status, headers: { "Content-Length": "0" } });

/** Modes whose proof a client can send again on the reply's GET, which is then required. */
const LOGIN_MODES = new Set(["basic", "client-cert"]);

/**
 * The reply download ([MC-BUP] 3.5.5, the BITS download requirements): `GET` and `HEAD`, single
 * byte ranges with 206, `Content-Length`, `ETag`, `Last-Modified`, `Accept-Ranges`. The URL
 * holds the session and an unguessable token; a session whose client logged in (Basic, a
 * certificate) must log in as the same principal again, as BITS does for the download. A reply
 * the application did not write is an empty one: a reply URL is always given
 * (docs/upload-reply.md). A body larger than the front door carries is a redirect to a
 * presigned S3 URL, which serves ranges itself.
 */
export async function serveReply(
  context: ServiceContext,
  authenticator: Authenticator,
  request: BitsRequest,
  authRequest: AuthRequest,
): Promise<BitsResponse> {
  const { objects, sessions, settings } = context;
  const rest = request.path.slice(settings.replyPath.length + 1).split("/");
  const id = sessionIdOfStagingDir(rest[0] ?? "");
  const token = rest[1] ?? "";
  if (id === undefined || rest.length !== 2) return empty(404);
  const record = await sessions.get(id);
  if (!replyServable(context, record) || record === undefined) return empty(404);
  if (!sameToken(record.notify?.token ?? "", token)) return empty(404);
  if (LOGIN_MODES.has(record.auth ?? "")) {
    const auth = await authenticator.authenticate(authRequest, context.runtime.now());
    if (auth.kind === "challenge") return challenge(auth.realm);
    if (auth.kind === "throttled") {
      const headers = { "Content-Length": "0", "Retry-After": String(auth.retryAfterSeconds) };
      return { status: 503, headers };
    }
    if (auth.kind !== "ok" || !owns(identityOf(auth.principal, settings), record)) {
      return empty(404);
    }
  }
  const key = replyKeyOf(context, record.id);
  const stat = (await objects.stat(key)) ?? {
    key,
    size: 0,
    etag: `"${record.notify?.token ?? "empty"}"`,
    lastModified: new Date(0),
  };
  // Written through the presigned PUT after the application's answer was checked: not served.
  if (stat.size > settings.maxReplyBytes) return empty(404);
  const range = parseRange(request.headers.get("range"), stat.size);
  const answer = downloadHeaders(stat, range, request.headers.get("if-range"));
  if (request.method === "HEAD" || answer.end < answer.start) {
    return { status: answer.status, headers: answer.headers };
  }
  const length = answer.end - answer.start + 1;
  if (length > settings.maxResponseBody) {
    const url = await objects.presign(key, "GET", 3600);
    return { status: 302, headers: { Location: url, "Content-Length": "0" } };
  }
  const read = await objects.readRange(key, answer.start, answer.end);
  if (read === undefined) return empty(404);
  return { status: answer.status, headers: answer.headers, body: read.stream };
}

function sameToken(expected: string, given: string): boolean {
  const a = Buffer.from(expected);
  const b = Buffer.from(given);
  return a.length === b.length && a.length > 0 && timingSafeEqual(a, b);
}
