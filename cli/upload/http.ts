import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from "node:http";
import { Agent as HttpsAgent, request as httpsRequest } from "node:https";
import { TlsError } from "./errors.ts";

/** What a request needs besides its URL: how long it may stall, and TLS material. */
export interface HttpOptions {
  /** A request that sends or receives nothing for this long is abandoned. */
  readonly idleTimeoutMs: number;
  /** Extra CAs to trust (PEM), for a server with a private certificate. */
  readonly ca?: Buffer | undefined;
  /** A client certificate and its key (PEM), for servers that ask for one. */
  readonly cert?: Buffer | undefined;
  readonly key?: Buffer | undefined;
}

export interface HttpResponse {
  readonly status: number;
  /** Lower-case names; repeated headers joined with ", ". */
  readonly headers: ReadonlyMap<string, string>;
}

/** Takes an answer's body, chunk by chunk, or declines it (undefined). */
export type BodyConsumer = (
  response: HttpResponse,
) => ((chunk: Buffer) => void | Promise<void>) | undefined;

/** The connection failed, dropped, or stalled past the idle timeout: worth another try. */
export class NetworkError extends Error {
  constructor(
    message: string,
    readonly code?: string,
  ) {
    super(message);
    this.name = "NetworkError";
  }
}

/**
 * One keep-alive connection per scheme, as a BITS client keeps one connection per job: packets
 * go one at a time, so one socket serves them all.
 */
export class HttpClient {
  private readonly http = new HttpAgent({ keepAlive: true, maxSockets: 1 });
  private readonly https: HttpsAgent;

  constructor(private readonly options: HttpOptions) {
    this.https = new HttpsAgent({
      keepAlive: true,
      maxSockets: 1,
      ...(options.ca ? { ca: options.ca } : {}),
      ...(options.cert ? { cert: options.cert } : {}),
      ...(options.key ? { key: options.key } : {}),
    });
  }

  /** Sends a request with a body held in memory (one fragment at most); drains the answer. */
  async send(
    method: string,
    url: URL,
    headers: Record<string, string>,
    body: Uint8Array = new Uint8Array(0),
  ): Promise<HttpResponse> {
    const { response } = await this.open(method, url, headers, body);
    response.resume();
    await finished(response);
    return toResponse(response);
  }

  /**
   * Sends a bodiless request. When the final answer arrives, `consumer` may return a function
   * that takes its body chunk by chunk (never held whole); otherwise the body is discarded.
   * Redirects are followed, up to 5; credentials are not sent to another origin.
   */
  async fetch(
    method: "GET" | "HEAD",
    url: URL,
    headers: Record<string, string>,
    consumer: BodyConsumer = () => undefined,
  ): Promise<HttpResponse> {
    let target = url;
    let sent = headers;
    for (let hop = 0; ; hop++) {
      const { response } = await this.open(method, target, sent, new Uint8Array(0));
      const status = response.statusCode ?? 0;
      const location = response.headers.location;
      if (status >= 300 && status < 400 && location !== undefined && hop < 5) {
        response.resume();
        await finished(response);
        const next = new URL(location, target);
        if (next.origin !== target.origin) {
          const { Authorization: _, ...rest } = sent;
          sent = rest;
        }
        target = next;
        continue;
      }
      const answer = toResponse(response);
      const take = method === "GET" ? consumer(answer) : undefined;
      if (take === undefined) {
        response.resume();
        await finished(response);
        return answer;
      }
      const chunks = (response as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
      for (;;) {
        let next: IteratorResult<Buffer>;
        try {
          next = await chunks.next();
        } catch (error) {
          const { message, code } = error as NodeJS.ErrnoException;
          throw error instanceof NetworkError ? error : new NetworkError(message, code);
        }
        if (next.done) break;
        await take(next.value); // the consumer's own errors (a full disk) are not the network's
      }
      if (!response.complete) throw new NetworkError("the answer ended early", "ECONNRESET");
      return answer;
    }
  }

  close() {
    this.http.destroy();
    this.https.destroy();
  }

  private open(
    method: string,
    url: URL,
    headers: Record<string, string>,
    body: Uint8Array,
  ): Promise<{ response: IncomingMessage }> {
    const secure = url.protocol === "https:";
    const request = secure ? httpsRequest : httpRequest;
    return new Promise((resolve, reject) => {
      let answered = false;
      const out = request(
        url,
        {
          method,
          agent: secure ? this.https : this.http,
          headers: { ...headers, "Content-Length": String(body.length) },
        },
        (response) => {
          answered = true;
          // The same idle timeout covers the answer's body.
          response.setTimeout?.(this.options.idleTimeoutMs, () =>
            response.destroy(new NetworkError("the answer stalled", "ETIMEDOUT")),
          );
          resolve({ response });
        },
      );
      out.setTimeout(this.options.idleTimeoutMs, () =>
        out.destroy(new NetworkError("no answer within the timeout", "ETIMEDOUT")),
      );
      out.on("error", (error: NodeJS.ErrnoException) => {
        // A server that answers before reading the whole body (a 413) may reset the connection
        // while the body is still being written; the answer it gave still counts.
        if (answered) return;
        if (secure && TLS_FAILURE.test(error.code ?? "")) {
          const hint = "--ca FILE trusts a private CA; --cert and --key give a client certificate";
          reject(new TlsError(`TLS: ${error.message} (${error.code}); ${hint}`));
          return;
        }
        reject(error instanceof NetworkError ? error : new NetworkError(error.message, error.code));
      });
      out.end(body);
    });
  }
}

/** Certificate and handshake failures (OpenSSL's and Node's codes): not worth retrying. */
const TLS_FAILURE = /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|UNABLE_TO_GET_ISSUER|^ERR_TLS_|^ERR_SSL_/;

function finished(response: IncomingMessage): Promise<void> {
  if (response.complete || response.destroyed) return Promise.resolve();
  return new Promise((resolve, reject) => {
    response.once("end", resolve);
    response.once("close", resolve);
    response.once("error", (error: NodeJS.ErrnoException) =>
      reject(error instanceof NetworkError ? error : new NetworkError(error.message, error.code)),
    );
  });
}

function toResponse(response: IncomingMessage): HttpResponse {
  const headers = new Map<string, string>();
  for (const [name, value] of Object.entries(response.headers)) {
    if (value !== undefined) headers.set(name, Array.isArray(value) ? value.join(", ") : value);
  }
  return { status: response.statusCode ?? 0, headers };
}
