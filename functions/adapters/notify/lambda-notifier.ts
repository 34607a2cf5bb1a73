import { InvokeCommand, type InvokeCommandOutput, LambdaClient } from "@aws-sdk/client-lambda";
import type { NotificationRequest, NotificationResult, Notifier } from "../../ports/notifier.ts";
import { absoluteHttpUrl, deadline, parseHresult, unreachable } from "./notifier.ts";

export const LAMBDA_TARGET_PREFIX = "lambda:";

/**
 * The event a notified Lambda function receives (synchronous `RequestResponse` invoke):
 *
 * ```json
 * { "version": "1", "type": "value" | "reference",
 *   "originalUrl": "https://host/path?query", "sessionId": "{...}", "principal": "alice",
 *   "request":  { "bucket": "b", "key": "uploads/file.bin", "size": 123, "url": "<presigned GET>" },
 *   "response": { "bucket": "b", "key": "replies/...", "url": "<presigned PUT>" } }
 * ```
 *
 * The file itself is never in the event (invoke payloads are limited to 6 MB): whatever the
 * type, the function reads it from S3 or `request.url`. By reference it may write its reply to
 * the response location; by either type it may return the reply in `body`.
 */
export interface NotificationEvent {
  readonly version: "1";
  readonly type: NotificationRequest["type"];
  readonly originalUrl: string;
  readonly sessionId: string;
  readonly principal: string;
  readonly request: { bucket: string; key: string; size: number; url: string };
  readonly response: { bucket: string; key: string; url: string };
}

/**
 * What the function returns, as JSON (`null` counts as absent):
 *
 * ```json
 * { "statusCode": 200, "body": "reply", "isBase64Encoded": false,
 *   "staticResponseUrl": "https://...", "copyFileToDestination": true, "errorCode": "0x80070005" }
 * ```
 *
 * Only `statusCode` is required. Other than 200 it is an application error with that status
 * (and `errorCode`, an HRESULT as in `BITS-Error-Code`). With `staticResponseUrl` the body is
 * ignored. Anything else is unusable (`unreachable`); a thrown error is an app-error 502.
 */
export interface NotificationAnswer {
  statusCode: number;
  body?: string | null;
  isBase64Encoded?: boolean | null;
  staticResponseUrl?: string | null;
  copyFileToDestination?: boolean | null;
  errorCode?: string | null;
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/**
 * Notifies a Lambda function (`lambda:<name or ARN>`) by a synchronous invoke, aborted after
 * `timeoutMs`. SDK errors stay in this file; messages name the function, never the event (its
 * URLs are presigned).
 */
export class LambdaNotifier implements Notifier {
  constructor(private readonly client: LambdaClient) {}

  async notify(request: NotificationRequest): Promise<NotificationResult> {
    if (!request.target.startsWith(LAMBDA_TARGET_PREFIX)) {
      return unreachable("the notification target is not a lambda: target");
    }
    const name = request.target.slice(LAMBDA_TARGET_PREFIX.length);
    const what = `Lambda function ${name}`;
    const budget = deadline(request.timeoutMs);
    let out: InvokeCommandOutput;
    try {
      out = await this.client.send(
        new InvokeCommand({
          FunctionName: name,
          InvocationType: "RequestResponse",
          Payload: new TextEncoder().encode(JSON.stringify(notificationEvent(request))),
        }),
        { abortSignal: budget.signal },
      );
    } catch (error) {
      if (budget.expired) return { kind: "timeout" };
      const code = (error as { name?: string }).name ?? "error";
      const why = code === "ResourceNotFoundException" ? "does not exist" : `failed (${code})`;
      return unreachable(`${what} cannot be invoked: it ${why}`);
    } finally {
      budget.end();
    }
    const text = out.Payload ? new TextDecoder().decode(out.Payload) : "";
    if (out.FunctionError) {
      const message = parse(text)?.errorMessage;
      const detail = typeof message === "string" ? `: ${message.slice(0, 500)}` : "";
      return { kind: "app-error", status: 502, message: `${what} failed${detail}` };
    }
    return interpret(parse(text), request, what);
  }
}

export function notificationEvent(request: NotificationRequest): NotificationEvent {
  const { request: file, response } = request;
  return {
    version: "1",
    type: request.type,
    originalUrl: request.originalUrl,
    sessionId: request.sessionId,
    principal: request.principal,
    request: { bucket: file.bucket, key: file.key, size: file.size, url: file.readUrl },
    response: { bucket: response.bucket, key: response.key, url: response.writeUrl },
  };
}

function parse(text: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(text);
    return value !== null && typeof value === "object" && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}

const optional = (value: unknown, type: "string" | "boolean") =>
  value === undefined || value === null || typeof value === type;

function interpret(
  answer: Record<string, unknown> | undefined,
  request: NotificationRequest,
  what: string,
): NotificationResult {
  const bad = unreachable(`${what} answered something that is not a notification answer`);
  if (!answer) return bad;
  const { statusCode, body, isBase64Encoded, staticResponseUrl, errorCode } = answer;
  const copy = answer.copyFileToDestination;
  if (typeof statusCode !== "number" || !Number.isInteger(statusCode)) return bad;
  if (!optional(body, "string") || !optional(isBase64Encoded, "boolean")) return bad;
  if (!optional(staticResponseUrl, "string") || !optional(copy, "boolean")) return bad;
  if (!optional(errorCode, "string")) return bad;
  if (statusCode !== 200) {
    return {
      kind: "app-error",
      status: statusCode,
      errorCode: parseHresult(errorCode as string | null | undefined),
      message: `${what} answered statusCode ${statusCode}`,
    };
  }
  const copyToDestination = copy === true;
  if (typeof staticResponseUrl === "string") {
    const staticUrl = absoluteHttpUrl(staticResponseUrl);
    if (staticUrl === undefined)
      return unreachable(`${what} answered a relative staticResponseUrl`);
    return { kind: "ok", staticUrl, copyToDestination };
  }
  if (typeof body !== "string") return { kind: "ok", copyToDestination, reply: undefined };
  if (isBase64Encoded === true && !BASE64.test(body.replace(/\s+/g, ""))) {
    return unreachable(`${what} answered a body that is not base64`);
  }
  const reply = Buffer.from(body, isBase64Encoded === true ? "base64" : "utf8");
  if (reply.byteLength > request.maxReplyBytes) {
    return unreachable(`${what} answered a reply over ${request.maxReplyBytes} bytes`);
  }
  return { kind: "ok", copyToDestination, reply };
}

/** A LambdaNotifier with its own client, loaded on demand by entry points that need it. */
export function lambdaNotifier(region: string): LambdaNotifier {
  return new LambdaNotifier(new LambdaClient({ region }));
}
