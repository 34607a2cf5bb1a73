import type { Server as HttpServer } from "node:http";
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

const MAX_HEAD_BYTES = 64 * 1024;
const HEAD_END = Buffer.from("\r\n\r\n");

/**
 * Node's HTTP parser refuses the request line `BITS_POST / HTTP/1.1` (docs/platform.md, "A local
 * server that accepts `BITS_POST`"). This front sits between the socket and Node's own
 * `http.Server`: at each request boundary it rewrites the method token `BITS_POST` to `POST` and
 * adds a header carrying the original (any such header from the client is dropped). Bodies pass
 * untouched; the boundary comes from `Content-Length`, and chunked requests, which BITS clients
 * never send, are refused.
 */
export function createBitsFront(
  http: HttpServer,
  tls?: TlsOptions,
): Server & { destroyConnections(): void } {
  const sockets = new Set<Socket>();
  const accept = (socket: Socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
    http.emit("connection", new RewritingSocket(socket));
  };
  // With TLS the rewriting happens on the decrypted stream, after the handshake.
  const front = tls ? createTlsServer(tls, accept) : createServer(accept);
  return Object.assign(front, {
    destroyConnections() {
      for (const socket of sockets) socket.destroy();
    },
  });
}

class RewritingSocket extends Duplex {
  private head: Buffer = Buffer.alloc(0);
  private bodyLeft = 0;
  private refused = false;

  constructor(private readonly socket: Socket) {
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
    done(error);
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
        this.forward(rest.subarray(0, take));
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
    let length = 0;
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(":");
      const name = (colon > 0 ? line.slice(0, colon) : line).trim().toLowerCase();
      if (name === ORIGINAL_METHOD_HEADER) continue;
      if (name === "transfer-encoding") {
        this.refuse("411 Length Required");
        return undefined;
      }
      if (name === "content-length") length = Number(line.slice(colon + 1).trim()) || 0;
      kept.push(line);
    }
    this.bodyLeft = length;
    const line = method === "BITS_POST" ? `POST${requestLine.slice(space)}` : requestLine;
    return [line, ...kept, `${ORIGINAL_METHOD_HEADER}: ${method}`, "", ""].join("\r\n");
  }

  private refuse(status: string) {
    this.refused = true;
    this.socket.end(`HTTP/1.1 ${status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`);
    this.head = Buffer.alloc(0);
  }
}
