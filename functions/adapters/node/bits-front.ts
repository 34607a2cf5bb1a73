import type { Server as HttpServer, IncomingMessage, ServerResponse } from "node:http";
import { createServer, type Server, type Socket } from "node:net";
import { Duplex } from "node:stream";
import {
  createServer as createTlsServer,
  type PeerCertificate,
  TLSSocket,
  type TlsOptions,
} from "node:tls";

/** The header that carries the original method past Node's parser. */
export const ORIGINAL_METHOD_HEADER = "x-bits-original-method";

/** The header that names a body the front holds for the request (`heldBody`). */
export const HELD_BODY_HEADER = "x-bits-held-body";

const MAX_HEAD_BYTES = 64 * 1024;
const HEAD_END = Buffer.from("\r\n\r\n");

/**
 * What the front allows a connection before the server has authenticated anything on it
 * (docs/security.md, "The local server").
 */
export interface ConnectionLimits {
  /** Connections open at once; more are closed as they arrive (net.Server `maxConnections`). */
  readonly maxConnections: number;
  /**
   * Time from the first byte of a request head, or from the connection's start for its first
   * request, to the head's end; then 408 and the connection closes.
   */
  readonly headTimeoutMs: number;
  /** Time a connection may wait for its next request after a response (keep-alive). */
  readonly idleTimeoutMs: number;
  /**
   * Bytes of request bodies the front holds at once, over all connections; a body that would
   * pass it gets 503 with Retry-After (a BITS client retries later). Each connection holds at
   * most one body at a time: its next request is read once the server has answered.
   */
  readonly maxHeldBytes: number;
}

export const DEFAULT_LIMITS: ConnectionLimits = {
  maxConnections: 128,
  headTimeoutMs: 20_000,
  idleTimeoutMs: 65_000,
  maxHeldBytes: 64 * 1024 * 1024,
};

export interface BitsFrontOptions {
  readonly tls?: TlsOptions | undefined;
  /**
   * The front keeps the body of a `BITS_POST` or `POST` of up to this many bytes itself (see
   * `heldBody`); larger ones, which the server refuses, and other methods' go to Node's parser.
   */
  readonly maxHeldBodyBytes?: number | undefined;
  /** DEFAULT_LIMITS unless given; `idleTimeoutMs` is Node's `keepAliveTimeout`, set by its owner. */
  readonly limits?: Partial<ConnectionLimits> | undefined;
}

/** The bytes held at once over all of a front's connections. */
interface Budget {
  readonly max: number;
  used: number;
}

/**
 * Node's HTTP parser refuses the request line `BITS_POST / HTTP/1.1` (docs/platform.md, "A local
 * server that accepts `BITS_POST`"). This front sits between the socket and Node's own
 * `http.Server`: at each request boundary it rewrites the method token `BITS_POST` to `POST` and
 * adds a header carrying the original (any such header from the client is dropped). The boundary
 * comes from `Content-Length`, and chunked requests, which BITS clients never send, are refused.
 *
 * A body the server is going to take (a `BITS_POST` or `POST` within `maxHeldBodyBytes`) the
 * front copies straight from the socket into one buffer of the declared length, and hands Node's
 * parser the head alone, with `Content-Length: 0` and a header naming the body: Node's parser
 * would copy every piece of it again, and the server would then join the pieces, a third copy of
 * each byte. The time Node allows for a whole request (`requestTimeout`) then no longer covers the
 * body, so the front enforces it and answers 408 as Node would.
 *
 * Since the front reads every byte before Node's parser does, Node's own limits on heads
 * (`headersTimeout`) do not reach the client either: the front bounds, before anything is
 * authenticated, the time a head may take, the connections open at once and the bodies held in
 * memory, per connection and in total (`ConnectionLimits`, docs/security.md "The local server").
 */
export function createBitsFront(
  http: HttpServer,
  options: BitsFrontOptions = {},
): Server & { destroyConnections(): void } {
  const sockets = new Set<Socket>();
  const limits = { ...DEFAULT_LIMITS, ...options.limits };
  const maxHeldBodyBytes = options.maxHeldBodyBytes ?? 0;
  // Never below one body: a budget smaller than the largest body would refuse it every time.
  const budget: Budget = { max: Math.max(limits.maxHeldBytes, maxHeldBodyBytes), used: 0 };
  const accept = (socket: Socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
    http.emit(
      "connection",
      new RewritingSocket(socket, {
        maxHeldBodyBytes,
        requestTimeoutMs: http.requestTimeout,
        headTimeoutMs: limits.headTimeoutMs,
        budget,
      }),
    );
  };
  // With TLS the rewriting happens on the decrypted stream, after the handshake: a handshake
  // that never ends is bounded by the TLS server's own handshakeTimeout (120 s by default, set
  // here to the head's time).
  const front = options.tls
    ? createTlsServer({ handshakeTimeout: limits.headTimeoutMs, ...options.tls }, accept)
    : createServer(accept);
  front.maxConnections = limits.maxConnections;
  // The body held for a request is let go once the server's answer is out, however it ends;
  // the connection's next request waits for that.
  http.on("request", (req: IncomingMessage, res: ServerResponse) => {
    res.once("close", () => releaseHeldBody(req));
  });
  return Object.assign(front, {
    destroyConnections() {
      for (const socket of sockets) socket.destroy();
    },
  });
}

/**
 * The body the front holds for `req` and the `Content-Length` the client sent with it; undefined
 * when the body came through Node's parser (read it from `req`). The bytes arrive once the last
 * of them has; the promise fails if the connection ends or times out first.
 */
export function heldBody(
  req: IncomingMessage,
): { readonly contentLength: string; readonly bytes: Promise<Uint8Array> } | undefined {
  const id = req.headers[HELD_BODY_HEADER];
  if (typeof id !== "string" || !(req.socket instanceof RewritingSocket)) return undefined;
  return req.socket.takeHeldBody(id);
}

/** Lets go of the body held for `req`, taken or not. */
function releaseHeldBody(req: IncomingMessage): void {
  const id = req.headers[HELD_BODY_HEADER];
  if (typeof id !== "string" || !(req.socket instanceof RewritingSocket)) return;
  req.socket.releaseHeldBody(id);
}

/** A body being received into, or waiting in, the buffer made for it. */
interface Held {
  readonly contentLength: string;
  readonly bytes: Buffer;
  filled: number;
  waiter?: { resolve(bytes: Uint8Array): void; reject(error: Error): void } | undefined;
}

interface SocketOptions {
  readonly maxHeldBodyBytes: number;
  /** Node's requestTimeout: the time a body may take once its head is in. */
  readonly requestTimeoutMs: number;
  readonly headTimeoutMs: number;
  readonly budget: Budget;
}

class RewritingSocket extends Duplex {
  private head: Buffer = Buffer.alloc(0);
  private bodyLeft = 0;
  /** True while the body being read is one the front holds (not Node's parser's). */
  private holding = false;
  private refused = false;
  /**
   * Bodies held for requests Node's parser has seen, by the name in `HELD_BODY_HEADER`, until
   * the server releases them (at most one: see `stalled`).
   */
  private readonly held = new Map<string, Held>();
  /** The held body the next body bytes go into. */
  private filling: Held | undefined;
  private heldCount = 0;
  /**
   * Bytes that arrived after a held request, kept (and the socket paused) until the server has
   * released its body: one body per connection at a time.
   */
  private stalled: Buffer | undefined;
  /** Runs while a request head is awaited or arriving, or while a body is arriving. */
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly socket: Socket,
    private readonly options: SocketOptions,
  ) {
    super();
    // The first request's head is due within the head's time of the connection's start.
    this.startTimer(options.headTimeoutMs);
    socket.on("data", (chunk: Buffer) => this.receive(chunk));
    socket.on("end", () => this.push(null));
    socket.on("error", (error) => this.destroy(error));
    socket.on("close", () => this.destroy());
    socket.on("timeout", () => this.emit("timeout"));
  }

  get remoteAddress() {
    return this.socket.remoteAddress;
  }

  get remotePort() {
    return this.socket.remotePort;
  }

  /** True on a TLS connection. */
  get encrypted(): boolean {
    return this.socket instanceof TLSSocket;
  }

  /** The client certificate of a TLS connection, when it was verified against the trusted CAs. */
  verifiedPeerCertificate(): PeerCertificate | undefined {
    if (!(this.socket instanceof TLSSocket) || !this.socket.authorized) return undefined;
    const certificate = this.socket.getPeerCertificate();
    return certificate && Object.keys(certificate).length > 0 ? certificate : undefined;
  }

  setTimeout(ms: number, callback?: () => void) {
    this.socket.setTimeout(ms);
    if (callback) this.once("timeout", callback);
    return this;
  }

  setNoDelay(noDelay?: boolean) {
    this.socket.setNoDelay(noDelay);
    return this;
  }

  setKeepAlive(enable?: boolean, delay?: number) {
    this.socket.setKeepAlive(enable, delay);
    return this;
  }

  override _read() {
    if (this.stalled === undefined) this.socket.resume();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, done: (error?: Error | null) => void) {
    this.socket.write(chunk, done);
  }

  override _final(done: (error?: Error | null) => void) {
    this.socket.end(done);
  }

  override _destroy(error: Error | null, done: (error?: Error | null) => void) {
    this.socket.destroy(error ?? undefined);
    clearTimeout(this.timer);
    const gone = new Error("the connection ended before the request body arrived");
    for (const [id, held] of this.held) {
      held.waiter?.reject(gone);
      this.releaseHeldBody(id);
    }
    this.filling = undefined;
    this.stalled = undefined;
    done(error);
  }

  /** See `releaseHeldBody`. */
  releaseHeldBody(id: string) {
    const held = this.held.get(id);
    if (held === undefined) return;
    this.held.delete(id);
    this.options.budget.used -= held.bytes.length;
    if (this.filling === held) this.filling = undefined;
    const stalled = this.stalled;
    if (stalled !== undefined && this.held.size === 0 && !this.destroyed) {
      this.stalled = undefined;
      this.socket.resume();
      this.receive(stalled);
    }
  }

  /** Hands over a held body (once). */
  takeHeldBody(id: string): { contentLength: string; bytes: Promise<Uint8Array> } {
    const held = this.held.get(id);
    if (held === undefined) {
      return {
        contentLength: "0",
        bytes: Promise.reject(new Error("the connection ended before the request body arrived")),
      };
    }
    if (held.filled === held.bytes.length) {
      return { contentLength: held.contentLength, bytes: Promise.resolve(held.bytes) };
    }
    return {
      contentLength: held.contentLength,
      bytes: new Promise((resolve, reject) => {
        held.waiter = { resolve, reject };
      }),
    };
  }

  private fill(piece: Buffer) {
    const held = this.filling;
    if (held === undefined) return;
    held.bytes.set(piece, held.filled);
    held.filled += piece.length;
    if (held.filled < held.bytes.length) return;
    this.filling = undefined;
    held.waiter?.resolve(held.bytes);
  }

  /** Refuses the connection with 408 unless `stopTimer` comes first. */
  private startTimer(ms: number) {
    this.stopTimer();
    if (ms <= 0) return;
    this.timer = setTimeout(() => this.refuse("408 Request Timeout"), ms);
    this.timer.unref();
  }

  private stopTimer() {
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  private forward(chunk: Buffer) {
    if (!this.push(chunk)) this.socket.pause();
  }

  private receive(chunk: Buffer) {
    if (this.refused) return;
    if (this.stalled !== undefined) {
      this.stalled = Buffer.concat([this.stalled, chunk]);
      return;
    }
    let rest: Buffer = chunk;
    while (rest.length > 0) {
      if (this.bodyLeft > 0) {
        const take = Math.min(this.bodyLeft, rest.length);
        // A held body released before all of it came (answered early) is read and dropped.
        if (this.filling) this.fill(rest.subarray(0, take));
        else if (!this.holding) this.forward(rest.subarray(0, take));
        this.bodyLeft -= take;
        rest = rest.subarray(take);
        if (this.bodyLeft === 0) this.stopTimer();
        continue;
      }
      if (this.head.length === 0) {
        if (this.held.size > 0) {
          // A held body is not released yet: this request waits, unread, until it is.
          this.stalled = rest;
          this.socket.pause();
          return;
        }
        if (this.timer === undefined) this.startTimer(this.options.headTimeoutMs);
      }
      this.head = this.head.length === 0 ? rest : Buffer.concat([this.head, rest]);
      rest = Buffer.alloc(0);
      const end = this.head.indexOf(HEAD_END);
      if (end < 0) {
        if (this.head.length > MAX_HEAD_BYTES) this.refuse("431 Request Header Fields Too Large");
        return;
      }
      const head = this.head.subarray(0, end);
      rest = this.head.subarray(end + HEAD_END.length);
      this.head = Buffer.alloc(0);
      this.stopTimer();
      const rewritten = this.rewrite(head.toString("latin1"));
      if (rewritten === undefined || this.refused) return;
      // Node's requestTimeout no longer sees the body: the front enforces it, as Node answers it.
      if (this.bodyLeft > 0) this.startTimer(this.options.requestTimeoutMs);
      this.forward(Buffer.from(rewritten, "latin1"));
    }
  }

  /** Rewrites one request head; undefined when the request was refused. */
  private rewrite(head: string): string | undefined {
    const lines = head.replace(/^(\r\n)+/, "").split("\r\n");
    const requestLine = lines[0] ?? "";
    const space = requestLine.indexOf(" ");
    const method = space > 0 ? requestLine.slice(0, space) : requestLine;
    const kept: string[] = [];
    const lengthLines: string[] = [];
    let length = 0;
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(":");
      const name = (colon > 0 ? line.slice(0, colon) : line).trim().toLowerCase();
      if (name === ORIGINAL_METHOD_HEADER || name === HELD_BODY_HEADER) continue;
      if (name === "transfer-encoding") {
        this.refuse("411 Length Required");
        return undefined;
      }
      if (name === "content-length") {
        length = Number(line.slice(colon + 1).trim()) || 0;
        lengthLines.push(line);
      }
      kept.push(line);
    }
    this.bodyLeft = length;
    const line = method === "BITS_POST" ? `POST${requestLine.slice(space)}` : requestLine;
    const added = [`${ORIGINAL_METHOD_HEADER}: ${method}`];
    const held = (method === "BITS_POST" || method === "POST") && this.hold(lengthLines);
    this.holding = typeof held === "string";
    if (this.refused) return undefined;
    // The front's headers come first: Node keeps only the first 2,000 (maxHeadersCount), so a
    // client's could otherwise push them out, and its body would never be released.
    if (held) {
      const others = kept.filter((header) => !lengthLines.includes(header));
      added.push("Content-Length: 0", `${HELD_BODY_HEADER}: ${held}`);
      return [line, ...added, ...others, "", ""].join("\r\n");
    }
    return [line, ...added, ...kept, "", ""].join("\r\n");
  }

  /**
   * Makes the buffer for the coming body and answers its name; undefined when the front leaves
   * the body to Node's parser: no body, one above the limit, or anything but a single
   * well-formed Content-Length (Node's parser then refuses what it must).
   */
  private hold(lengthLines: readonly string[]): string | undefined {
    const declared = /^content-length:[ \t]*(\d{1,16})[ \t]*$/i.exec(lengthLines[0] ?? "")?.[1];
    const length = Number(declared);
    if (lengthLines.length !== 1 || declared === undefined) return undefined;
    if (length === 0 || length > this.options.maxHeldBodyBytes) return undefined;
    const budget = this.options.budget;
    if (budget.used + length > budget.max) {
      // Enough bodies are held already, on all connections together: the client comes back.
      this.refuse("503 Service Unavailable", "Retry-After: 5\r\n");
      return undefined;
    }
    budget.used += length;
    const id = String(++this.heldCount);
    const held: Held = { contentLength: declared, bytes: Buffer.allocUnsafe(length), filled: 0 };
    this.held.set(id, held);
    this.filling = held;
    return id;
  }

  private refuse(status: string, headers = "") {
    if (this.refused) return;
    this.refused = true;
    this.stopTimer();
    // Closed once the answer is out, whatever the client does with its side.
    this.socket.end(
      `HTTP/1.1 ${status}\r\n${headers}Content-Length: 0\r\nConnection: close\r\n\r\n`,
      () => this.socket.destroy(),
    );
    this.head = Buffer.alloc(0);
    this.stalled = undefined;
  }
}
