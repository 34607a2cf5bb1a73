import { request as httpRequest, type IncomingMessage } from "node:http";
import { request as httpsRequest } from "node:https";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { ReadableStream as NodeReadableStream } from "node:stream/web";
import type { NotificationRequest, NotificationResult, Notifier } from "../../ports/notifier.ts";
import { absoluteHttpUrl, deadline, parseHresult, unreachable } from "./notifier.ts";

/**
 * `s3://bucket/key`, with `%` and every character that is not printable ASCII percent-encoded
 * (UTF-8): header values must be ASCII, and `decodeURIComponent` gives the key back exactly.
 */
export function s3Uri(bucket: string, key: string): string {
  return `s3://${bucket}/${key.replace(/[^\x21-\x24\x26-\x7e]/gu, (c) => encodeURIComponent(c))}`;
}

/** Thrown when our own copy of the upload cannot be read: not the application's fault. */
export class UploadReadError extends Error {}

/**
 * Notifies an HTTP(S) application ([MC-BUP] 3.3): a POST carrying the file (by value, streamed
 * from storage, never held whole) or naming it (by reference). `node:http` rather than `fetch`:
 * Node 20's fetch neither cancels a streamed request body nor closes the socket when aborted.
 * The whole exchange, reply included, is bounded by `timeoutMs`; when it ends, whatever is still
 * in flight (an upload the application answered before reading, an unread reply) is destroyed.
 * Messages name the target's origin only: its query string may carry a token.
 */
export class HttpNotifier implements Notifier {
  async notify(request: NotificationRequest): Promise<NotificationResult> {
    const url = absoluteHttpUrl(request.target);
    if (url === undefined) {
      return unreachable("the notification URL is not an absolute http(s) URL");
    }
    const target = new URL(url);
    const budget = deadline(request.timeoutMs);
    let sourceError: unknown;
    const failed = (error: unknown) => {
      sourceError ??= error;
    };
    try {
      const body =
        request.type === "value"
          ? watch(
              await request.request.open().catch((error: unknown) => {
                failed(error);
                throw error;
              }),
              failed,
            )
          : undefined;
      const response = await post(target, requestHeaders(request), body, budget.signal);
      const result = await answer(response, request, target.origin);
      // An answer that came while our own copy of the file failed to stream is not an answer to
      // the file: the upload was not delivered whole.
      if (sourceError !== undefined) {
        throw new UploadReadError("the upload could not be read", { cause: sourceError });
      }
      return result;
    } catch (error) {
      if (error instanceof UploadReadError) throw error;
      if (budget.expired) return { kind: "timeout" };
      if (sourceError !== undefined) {
        throw new UploadReadError("the upload could not be read", { cause: sourceError });
      }
      return unreachable(`${target.origin}: ${describe(error)}`);
    } finally {
      budget.end();
    }
  }
}

function requestHeaders(request: NotificationRequest): Record<string, string> {
  const headers: Record<string, string> = {
    "User-Agent": "bits-upload-server",
    Accept: "*/*",
    "BITS-Original-Request-URL": request.originalUrl,
  };
  if (request.type === "value") {
    headers["Content-Length"] = String(request.request.size);
    return headers;
  }
  const { request: file, response } = request;
  headers["Content-Length"] = "0";
  headers["BITS-Request-DataFile-Name"] = s3Uri(file.bucket, file.key);
  headers["BITS-Response-DataFile-Name"] = s3Uri(response.bucket, response.key);
  headers["BITS-Request-DataFile-Url"] = file.readUrl;
  headers["BITS-Response-DataFile-Url"] = response.writeUrl;
  return headers;
}

/** Sends the POST, streaming `body`; resolves once the response's headers arrive. */
function post(
  url: URL,
  headers: Record<string, string>,
  body: ReadableStream<Uint8Array> | undefined,
  signal: AbortSignal,
): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    const send = url.protocol === "https:" ? httpsRequest : httpRequest;
    // agent: false: one connection per notification, closed with it, never left in a pool.
    const req = send(url, { method: "POST", headers, signal, agent: false });
    req.on("error", reject); // also a later error, once settled: nothing is left unhandled
    req.once("response", (res: IncomingMessage) => {
      res.on("error", () => {}); // reading it reports errors; an unread one is just destroyed
      resolve(res);
    });
    // An aborted request destroys the source (cancelling the storage stream); a failing source
    // destroys the request. Either way req's "error" reports it.
    if (body) pipeline(Readable.fromWeb(body as NodeReadableStream), req).catch(() => {});
    else req.end();
  });
}

function header(response: IncomingMessage, name: string): string | undefined {
  const value = response.headers[name.toLowerCase()];
  return Array.isArray(value) ? value.join(", ") : value;
}

async function answer(
  response: IncomingMessage,
  request: NotificationRequest,
  where: string,
): Promise<NotificationResult> {
  const status = response.statusCode ?? 0;
  if (status !== 200) {
    return {
      kind: "app-error",
      status,
      errorCode: parseHresult(header(response, "BITS-Error-Code")),
      message: `${where} answered ${status} ${response.statusMessage ?? ""}`.trim(),
    };
  }
  const copyToDestination = header(response, "BITS-Copy-File-To-Destination") !== undefined;
  const staticHeader = header(response, "BITS-Static-Response-URL");
  if (staticHeader !== undefined) {
    const staticUrl = absoluteHttpUrl(staticHeader.trim());
    if (staticUrl === undefined) {
      return unreachable(`${where} answered a BITS-Static-Response-URL that is not absolute`);
    }
    return { kind: "ok", staticUrl, copyToDestination };
  }
  // By reference the application wrote its reply to the response location: a body means nothing.
  if (request.type === "reference") return { kind: "ok", copyToDestination, reply: undefined };
  const reply = await readAtMost(response, request.maxReplyBytes);
  if (reply === undefined) {
    return unreachable(`${where} answered a reply over ${request.maxReplyBytes} bytes`);
  }
  return { kind: "ok", copyToDestination, reply };
}

/** The body to EOF (with or without Content-Length), or undefined past `max` bytes. */
async function readAtMost(response: IncomingMessage, max: number): Promise<Uint8Array | undefined> {
  if (Number(header(response, "Content-Length") ?? 0) > max) return undefined;
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of response) {
    total += (chunk as Buffer).byteLength;
    if (total > max) return undefined;
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks, total);
}

/** The same stream, telling `onError` when the source (storage) fails rather than the network. */
function watch(
  source: ReadableStream<Uint8Array>,
  onError: (error: unknown) => void,
): ReadableStream<Uint8Array> {
  const reader = source.getReader();
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      const chunk = await reader.read().catch((error: unknown) => {
        onError(error);
        throw error;
      });
      if (chunk.done) controller.close();
      else controller.enqueue(chunk.value);
    },
    cancel: (reason) => reader.cancel(reason),
  });
}

/** Network failures by their code (ECONNREFUSED, ENOTFOUND...): never a header's value. */
function describe(error: unknown): string {
  const code = (error as { code?: unknown }).code;
  const inner = (error as { errors?: { code?: unknown }[] }).errors?.[0]?.code;
  const found = typeof code === "string" ? code : typeof inner === "string" ? inner : undefined;
  if (found?.startsWith("ERR_")) return `the request could not be sent (${found})`;
  if (found) return `connection failed (${found})`;
  return `request failed (${(error as { name?: string }).name ?? "error"})`;
}
