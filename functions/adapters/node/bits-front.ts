import type { Server as HttpServer, IncomingMessage } from "node:http";
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

export interface BitsFrontOptions {
  readonly tls?: TlsOptions | undefined;
  /**
   * The front keeps the body of a `BITS_POST` or `POST` of up to this many bytes itself (see
   * `heldBody`); larger ones, which the server refuses, and other methods' go to Node's parser.
   */
  readonly maxHeldBodyBytes?: number | undefined;
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
 * body, so the front enforces it for the bodies it holds and answers 408 as Node would.
 */
export function createBitsFront(
  http: HttpServer,
  options: BitsFrontOptions = {},
): Server & { destroyConnections(): void } {
  const sockets = new Set<Socket>();
  const accept = (socket: Socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
    http.emit(
      "connection",
      new RewritingSocket(socket, options.maxHeldBodyBytes ?? 0, http.requestTimeout),
    );
  };
  // With TLS the rewriting happens on the decrypted stream, after the handshake.
  const front = options.tls ? createTlsServer(options.tls, accept) : createServer(accept);
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

/** A body being received into, or waiting in, the buffer made for it. */
interface Held {
  readonly contentLength: string;
  readonly bytes: Buffer;
  filled: number;
  timer?: NodeJS.Timeout | undefined;
  waiter?: { resolve(bytes: Uint8Array): void; reject(error: Error): void } | undefined;
}

class RewritingSocket extends Duplex {
  private head: Buffer = Buffer.alloc(0);
  private bodyLeft = 0;
  private refused = false;
  /** Bodies held for requests Node's parser has seen, by the name in `HELD_BODY_HEADER`. */
  private readonly held = new Map<string, Held>();
  /** The held body the next body bytes go into. */
  private filling: Held | undefined;
  private heldCount = 0;

  constructor(
    private readonly socket: Socket,
    private readonly maxHeldBodyBytes: number,
    private readonly requestTimeoutMs: number,
  ) {
    super();
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
    this.socket.resume();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, done: (error?: Error | null) => void) {
    this.socket.write(chunk, done);
  }

  override _final(done: (error?: Error | null) => void) {
    this.socket.end(done);
  }

  override _destroy(error: Error | null, done: (error?: Error | null) => void) {
    this.socket.destroy(error ?? undefined);
    const gone = new Error("the connection ended before the request body arrived");
    for (const held of this.held.values()) {
      clearTimeout(held.timer);
      held.waiter?.reject(gone);
    }
    this.held.clear();
    this.filling = undefined;
    done(error);
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
      this.held.delete(id);
      return { contentLength: held.contentLength, bytes: Promise.resolve(held.bytes) };
    }
    return {
      contentLength: held.contentLength,
      bytes: new Promise((resolve, reject) => {
        held.waiter = {
          resolve: (bytes) => {
            this.held.delete(id);
            resolve(bytes);
          },
          reject,
        };
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
    clearTimeout(held.timer);
    held.waiter?.resolve(held.bytes);
  }

  private forward(chunk: Buffer) {
    if (!this.push(chunk)) this.socket.pause();
  }

  private receive(chunk: Buffer) {
    if (this.refused) return;
    let rest: Buffer = chunk;
    while (rest.length > 0) {
      if (this.bodyLeft > 0) {
        const take = Math.min(this.bodyLeft, rest.length);
        if (this.filling) this.fill(rest.subarray(0, take));
        else this.forward(rest.subarray(0, take));
        this.bodyLeft -= take;
        rest = rest.subarray(take);
        continue;
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
      const rewritten = this.rewrite(head.toString("latin1"));
      if (rewritten === undefined || this.refused) return;
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
    if (held) {
      const others = kept.filter((header) => !lengthLines.includes(header));
      added.push("Content-Length: 0", `${HELD_BODY_HEADER}: ${held}`);
      return [line, ...others, ...added, "", ""].join("\r\n");
    }
    return [line, ...kept, ...added, "", ""].join("\r\n");
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
    if (length === 0 || length > this.maxHeldBodyBytes) return undefined;
    const id = String(++this.heldCount);
    const held: Held = { contentLength: declared, bytes: Buffer.allocUnsafe(length), filled: 0 };
    if (this.requestTimeoutMs > 0) {
      // Node's requestTimeout, which no longer sees this body: answered as Node answers it.
      held.timer = setTimeout(() => this.refuse("408 Request Timeout"), this.requestTimeoutMs);
      held.timer.unref();
    }
    this.held.set(id, held);
    this.filling = held;
    return id;
  }

  private refuse(status: string) {
    if (this.refused) return;
    this.refused = true;
    // Closed once the answer is out, whatever the client does with its side.
    this.socket.end(`HTTP/1.1 ${status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`, () =>
      this.socket.destroy(),
    );
    this.head = Buffer.alloc(0);
  }
}
