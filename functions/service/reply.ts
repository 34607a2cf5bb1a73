import { randomBytes } from "node:crypto";
import { ack } from "../bits/ack.ts";
import { HRESULT } from "../bits/constants.ts";
import { crc32c, crc32cCombine } from "../bits/crc32c.ts";
import { applicationError, BitsError } from "../bits/errors.ts";
import {
  isRelativeTarget,
  MAX_REPLY_URL_LENGTH,
  notificationTarget,
  ruleFor,
} from "../bits/notification.ts";
import type { BitsResponse } from "../bits/request.ts";
import type { Notify, SessionRecord } from "../bits/session.ts";
import type { NotificationResult } from "../ports/notifier.ts";
import type { UploadedPart } from "../ports/object-store.ts";
import { type Call, sessionTag } from "./call.ts";
import { completeFile, underKeyClaim } from "./completion.ts";
import { nowSeconds, type ServiceContext } from "./context.ts";
import { failSession } from "./endings.ts";
import { sessionDir, stagingPrefixFor } from "./staging.ts";

/** Where an upload-reply session keeps the uploaded file and the reply: its staging folder. */
export const requestKeyOf = (context: ServiceContext, id: string) =>
  `${stagingPrefixFor(context.settings.stagingPrefix, id)}request`;
export const replyKeyOf = (context: ServiceContext, id: string) =>
  `${stagingPrefixFor(context.settings.stagingPrefix, id)}reply`;

/**
 * At Create-Session: whether this URL is an upload-reply destination, and whom to notify
 * ([MC-BUP] 3.2.1.1: the server decides from its configuration, the client never says).
 */
export function notifyFor(context: ServiceContext, call: Call, path: string): Notify | undefined {
  const rule = ruleFor(context.settings.notifications, path);
  if (rule?.url === undefined || rule.type === "none") return undefined;
  if (isRelativeTarget(rule.url) && context.settings.publicOrigin === undefined) {
    // The configuration refuses this at start: resolved against the client's Host header, a
    // relative URL would let the client choose where the server sends the upload.
    throw new BitsError("internal", "a relative notification URL needs a public origin");
  }
  return {
    type: rule.type,
    target: notificationTarget(rule.url, call.remoteUrl),
    originalUrl: call.remoteUrl,
    token: randomBytes(16).toString("hex"),
  };
}

/** The final fragment's Ack of a session whose application has answered ([MC-BUP] 2.2.7.2). */
export function replyAck(record: SessionRecord): BitsResponse {
  return ack(200, {
    sessionId: record.id,
    receivedContentRange: record.offset,
    replyUrl: record.reply?.url,
  });
}

/**
 * The reply URL this server serves for a session: absolute, as Windows resolves it
 * (docs/protocol.md, "Reply URL (upload-reply)").
 */
export function replyUrlFor(context: ServiceContext, call: Call, record: SessionRecord) {
  const dir = sessionDir(record.id);
  return `${call.origin}${context.settings.replyPath}/${dir}/${record.notify?.token ?? ""}`;
}

const POLL_MS = 200;

/**
 * The last byte of an upload-reply session is stored: complete the file, notify the application
 * and answer with the reply URL ([MC-BUP] 3.2.5.2.6, 3.3). One handler notifies at a time (a
 * lease in the record); a concurrent copy of the final fragment waits for its answer, so the
 * application hears of the file once and both copies get the same reply URL. A failed
 * notification leaves the session as it was: the client's resent final fragment notifies again
 * ([MC-BUP] 3.2.5.1.3); a successful one is remembered, and a resent final fragment gets the
 * same Ack without a second notification (3.2.5.1.2).
 */
export async function notifyAndReply(
  context: ServiceContext,
  initial: SessionRecord,
  call: Call,
): Promise<BitsResponse> {
  const { sessions, settings } = context;
  const leaseMs = settings.notificationTimeoutMs + 15_000;
  let record: SessionRecord | undefined = initial;
  const deadline = context.runtime.now() + leaseMs;
  while (record !== undefined && record.status === "open") {
    if (record.reply !== undefined) return replyAck(record);
    const now = context.runtime.now();
    if ((record.notifyingUntil ?? 0) > now) {
      if (now > deadline) break;
      // The same clock as the deadline: tests that move time move both (ports/runtime.ts).
      await context.runtime.sleep(POLL_MS);
      record = await sessions.get(record.id);
      continue;
    }
    const leased = { ...record, notifyingUntil: now + leaseMs, version: record.version + 1 };
    const taken = await sessions.replace(leased, record.version);
    if (!taken.ok) {
      record = taken.current;
      continue;
    }
    return notifyHolding(context, leased, call);
  }
  if (record?.reply !== undefined) return replyAck(record);
  throw new BitsError("internal", "the application's answer is still awaited");
}

/**
 * Notifies the application while holding the lease. The lease is given back on every way out
 * but the one that records the answer, whose write clears it.
 */
async function notifyHolding(context: ServiceContext, record: SessionRecord, call: Call) {
  const { objects, sessions, settings, runtime } = context;
  const notify = record.notify as Notify;
  let answered = false;
  try {
    const size = await completeRequest(context, record);
    const requestKey = requestKeyOf(context, record.id);
    const replyKey = replyKeyOf(context, record.id);
    const seconds = Math.ceil(settings.notificationTimeoutMs / 1000);
    const result = await notifierOf(context).notify({
      type: notify.type,
      target: notify.target,
      originalUrl: notify.originalUrl,
      sessionId: record.id,
      principal: record.principal,
      request: {
        bucket: settings.bucket,
        key: requestKey,
        size,
        readUrl: await objects.presign(requestKey, "GET", seconds + 3600),
        open: async () => {
          const read = await objects.readStream(requestKey);
          if (read === undefined) throw new Error("the uploaded file is gone");
          return read.stream;
        },
      },
      response: {
        bucket: settings.bucket,
        key: replyKey,
        // Only while the application is being notified: its answer ends its turn to write.
        writeUrl: await objects.presign(replyKey, "PUT", seconds),
      },
      timeoutMs: settings.notificationTimeoutMs,
      maxReplyBytes: settings.maxReplyBytes,
    });
    runtime.log(result.kind === "ok" ? "info" : "warn", "application notified", {
      session: sessionTag(record.id),
      target: notify.target.startsWith("lambda:") ? notify.target : new URL(notify.target).origin,
      outcome: result.kind,
      status: result.kind === "app-error" ? result.status : undefined,
    });
    if (result.kind !== "ok") throw failureOf(result);
    if (result.reply !== undefined) await storeReply(context, record, result.reply);
    else if (result.staticUrl === undefined) await checkWrittenReply(context, record);
    let copied = false;
    if (result.copyToDestination) {
      const options = { overwrite: record.overwrite, owner: record.id };
      const source = requestKeyOf(context, record.id);
      const stored = await underKeyClaim(context, record, () =>
        objects.copy(source, record.key, options),
      );
      if (stored === "exists") {
        throw new BitsError("accessDenied", "destination exists and overwrite is off");
      }
      copied = true;
    }
    const url = result.staticUrl ?? replyUrlFor(context, call, record);
    if (url.length > MAX_REPLY_URL_LENGTH)
      throw applicationError(400, HRESULT.E_INVALIDARG, "reply URL too long");
    const done = {
      ...record,
      reply: { url, copied },
      notifyingUntil: undefined,
      version: record.version + 1,
    };
    const written = await sessions.replace(done, record.version);
    if (!written.ok) throw new BitsError("internal", "session changed while notifying");
    answered = true;
    context.cache?.rememberRecord(done);
    return replyAck(done);
  } finally {
    if (!answered) {
      const cleared = { ...record, notifyingUntil: undefined, version: record.version + 1 };
      await sessions.replace(cleared, record.version).catch(() => undefined);
    }
  }
}

/**
 * Completes the session's multipart upload into its request object (retry-safe: a completion
 * whose answer was lost is recognised by its owner), or writes it empty for a zero-byte file.
 * A file that cannot be completed ends the session: the client starts over.
 */
async function completeRequest(context: ServiceContext, record: SessionRecord): Promise<number> {
  const key = requestKeyOf(context, record.id);
  const { result, reason } = await completeFile(context, record, key, true);
  if (result !== "completed") {
    const why = reason ?? result;
    await failSession(context, record, `the request object cannot be completed (${why})`);
    throw new BitsError("sessionNotFound", `the upload cannot be completed (${why})`);
  }
  return record.total ?? 0;
}

const REPLY_PART_BYTES = 8 * 1024 * 1024;

/** Stores a reply; one of many MiB as a multipart upload, as S3 stand-ins cap single PUTs. */
async function storeReply(context: ServiceContext, record: SessionRecord, reply: Uint8Array) {
  const { objects } = context;
  const key = replyKeyOf(context, record.id);
  if (reply.length <= REPLY_PART_BYTES) {
    await objects.putStaged(key, reply);
    return;
  }
  const uploadId = await objects.createUpload(key, record.id);
  try {
    // Checksummed like every object the server writes (docs/checksums.md).
    const parts: UploadedPart[] = [];
    let whole = 0;
    for (let start = 0; start < reply.length; start += REPLY_PART_BYTES) {
      const part = reply.subarray(start, start + REPLY_PART_BYTES);
      const crc = crc32c(part);
      const etag = await objects.uploadPart(key, uploadId, parts.length + 1, part, crc);
      parts.push({ etag, crc32c: crc });
      whole = crc32cCombine(whole, crc, part.length);
    }
    const { result } = await objects.completeUpload(key, uploadId, parts, {
      overwrite: true,
      owner: record.id,
      crc32c: whole,
      size: reply.length,
    });
    if (result !== "completed") throw new Error(`the reply could not be stored (${result})`);
  } catch (error) {
    await objects.abortUpload(key, uploadId).catch(() => undefined);
    throw error;
  }
}

/**
 * A reply the application wrote through the presigned PUT URL, which cannot bound its size (S3
 * signs no upper limit into a PUT): one over BITS_MAX_REPLY_SIZE is deleted and the
 * notification failed, like one answered by value ([MC-BUP] 3.2.5.1.3: the client resends).
 */
async function checkWrittenReply(context: ServiceContext, record: SessionRecord) {
  const { objects, settings } = context;
  const key = replyKeyOf(context, record.id);
  const stat = await objects.stat(key);
  if (stat === undefined || stat.size <= settings.maxReplyBytes) return;
  await objects.delete([key]);
  throw failureOf({
    kind: "unreachable",
    message: `the application wrote a reply over ${settings.maxReplyBytes} bytes`,
  });
}

function notifierOf(context: ServiceContext) {
  if (context.notifier === undefined) throw new BitsError("internal", "no notifier configured");
  return context.notifier;
}

/**
 * A failed notification as the client hears it, context 0x7: the application's status and code;
 * a timeout is 408 ([MC-BUP] 3.3.6); an application that cannot be reached is 502, which the
 * client treats as transient and resends.
 */
function failureOf(result: Exclude<NotificationResult, { kind: "ok" }>): BitsError {
  switch (result.kind) {
    case "app-error":
      return applicationError(result.status, result.errorCode, result.message);
    case "timeout":
      return applicationError(408, HRESULT.ERROR_TIMEOUT, "the application did not answer in time");
    case "unreachable":
      return applicationError(502, undefined, result.message);
  }
}

/** True when the record's session is live enough to serve its reply. */
export function replyServable(context: ServiceContext, record: SessionRecord | undefined) {
  return (
    record !== undefined &&
    record.status === "open" &&
    record.reply !== undefined &&
    record.expiresAt > nowSeconds(context)
  );
}
