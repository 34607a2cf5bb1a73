import { randomUUID } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { Readable } from "node:stream";
import type { PeerCertificate, TlsOptions } from "node:tls";
import { ack } from "../../bits/ack.ts";
import {
  type BitsRequest,
  type BitsResponse,
  headerMap,
  type Peer,
  reasonPhrase,
} from "../../bits/request.ts";
import type { ObjectStore } from "../../ports/object-store.ts";
import type { ReadAccess, UploadService } from "../../service/upload-service.ts";
import {
  type ConnectionLimits,
  createBitsFront,
  DEFAULT_LIMITS,
  HELD_BODY_HEADER,
  heldBody,
  ORIGINAL_METHOD_HEADER,
} from "./bits-front.ts";

export interface LocalServerOptions {
  readonly service: UploadService;
  /**
   * Serves `GET <path>` with the completed object, so people and tests can check it, to those
   * `authorizeRead` lets read it.
   */
  readonly objects: ObjectStore;
  /** Who may read which stored object: the upload service's `authorizeRead`. */
  readonly authorizeRead: (request: BitsRequest) => Promise<ReadAccess>;
  /** Larger bodies get 413 before they are read, as an ALB answers above 1 MB. */
  readonly maxBodyBytes: number;
  /** Reply downloads of upload-reply sessions, served by the service under this path. */
  readonly replyPath?: string | undefined;
  /**
   * Serve HTTPS. With `ca` and `requestCert`, clients may present certificates signed by those
   * CAs; a verified one is reported to the service as the ALB's mutual TLS would report it.
   */
  readonly tls?: TlsOptions | undefined;
  /** Limits on connections before authentication; DEFAULT_LIMITS unless given. */
  readonly limits?: Partial<ConnectionLimits> | undefined;
}

export interface RunningServer {
  readonly url: string;
  readonly port: number;
  close(): Promise<void>;
}

/**
 * The service behind a local HTTP/1.1 server that accepts BITS_POST on keep-alive connections.
 */
export async function startLocalServer(
  options: LocalServerOptions,
  port: number,
  host = "127.0.0.1",
): Promise<RunningServer> {
  const limits = { ...DEFAULT_LIMITS, ...options.limits };
  const keepAliveTimeout = limits.idleTimeoutMs;
  const http = createServer({ maxHeaderSize: 64 * 1024, keepAliveTimeout }, (req, res) => {
    serve(options, req, res).catch((error: unknown) => {
      if (!res.headersSent) {
        send(res, { status: 500, headers: { "Content-Length": "0" } });
      } else {
        res.destroy(error as Error);
      }
    });
  });
  const front = createBitsFront(http, {
    tls: options.tls,
    maxHeldBodyBytes: options.maxBodyBytes,
    limits,
  });
  await new Promise<void>((resolve, reject) => {
    front.once("error", reject);
    front.listen(port, host, resolve);
  });
  const address = front.address() as AddressInfo;
  const scheme = options.tls ? "https" : "http";
  return {
    url: `${scheme}://${host.includes(":") ? `[${host}]` : host}:${address.port}`,
    port: address.port,
    close: () =>
      new Promise<void>((resolve) => {
        front.close(() => resolve());
        front.destroyConnections();
      }),
  };
}

async function serve(options: LocalServerOptions, req: IncomingMessage, res: ServerResponse) {
  const method =
    req.method === "POST" && req.headers[ORIGINAL_METHOD_HEADER] === "BITS_POST"
      ? "BITS_POST"
      : (req.method ?? "GET");
  const [path = "/", search = ""] = (req.url ?? "/").split("?");
  const reply = options.replyPath !== undefined && path.startsWith(`${options.replyPath}/`);
  const declared = Number(req.headers["content-length"] ?? 0);
  if (declared > options.maxBodyBytes) {
    // Refused before reading, like the ALB; the client shrinks its fragments ([MC-BUP] 3.1.5.2.4).
    res.shouldKeepAlive = false;
    return send(res, ack(413));
  }
  // The front holds the bodies of BITS_POST and POST (bits-front.ts). Other methods' come
  // through Node's parser; the service uses none of them, so they are read and dropped, never
  // kept in memory before authentication.
  const held = heldBody(req);
  const body = held
    ? await held.bytes
    : method === "POST"
      ? await readBody(req, options.maxBodyBytes)
      : await drain(req);
  const headers = headerMap(
    Object.entries(req.headers)
      .filter(([name]) => name !== ORIGINAL_METHOD_HEADER && name !== HELD_BODY_HEADER)
      .map(([name, value]): [string, string | undefined] => [
        name,
        Array.isArray(value) ? value.join(", ") : value,
      ]),
  );
  // Node's parser saw `Content-Length: 0` for a held body; the service sees what the client sent.
  if (held) headers.set("content-length", held.contentLength);
  const request: BitsRequest = {
    method,
    path,
    headers,
    body,
    query: new Map(new URLSearchParams(search)),
    peer: peerOf(req),
  };
  if ((method === "GET" || method === "HEAD") && !reply) return download(options, request, res);
  send(res, await options.service.handle(request));
}

/** Reads a body to its end and keeps none of it. */
async function drain(req: IncomingMessage): Promise<Uint8Array> {
  for await (const _ of req as AsyncIterable<Buffer>) {
    // Dropped.
  }
  return new Uint8Array(0);
}

const LOOPBACK = /^(127\.|::1$|::ffff:127\.)/;

/**
 * The client as this server sees it. A connection is confidential over TLS, or when it never
 * leaves the machine (loopback), which is what lets `npm start` take Basic credentials locally.
 */
function peerOf(req: IncomingMessage): Peer {
  const socket = req.socket as unknown as {
    remoteAddress?: string;
    encrypted?: boolean;
    verifiedPeerCertificate?: () => PeerCertificate | undefined;
  };
  const address = socket.remoteAddress;
  const certificate = socket.verifiedPeerCertificate?.();
  return {
    address,
    secure: socket.encrypted === true || (address !== undefined && LOOPBACK.test(address)),
    scheme: socket.encrypted === true ? "https" : "http",
    requestId: randomUUID(),
    clientCertificate: certificate && {
      subject: distinguishedName(certificate.subject),
      issuer: distinguishedName(certificate.issuer),
      serial: certificate.serialNumber,
    },
  };
}

/** Node's parsed name as the RFC 2253 string the ALB sends (most specific part first). */
function distinguishedName(name: PeerCertificate["subject"] | undefined): string {
  const escaped = (value: string) => value.replace(/([,+"\\<>;])/g, "\\$1");
  return Object.entries(name ?? {})
    .reverse()
    .flatMap(([type, value]) =>
      (Array.isArray(value) ? value : [value]).map((v) => `${type}=${escaped(String(v))}`),
    )
    .join(",");
}

async function readBody(req: IncomingMessage, limit: number): Promise<Uint8Array> {
  const chunks: Buffer[] = [];
  let length = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    length += chunk.length;
    if (length > limit) throw new Error("body above the limit");
    chunks.push(chunk);
  }
  return chunks.length === 1 && chunks[0] ? chunks[0] : Buffer.concat(chunks);
}

/** The stored object, to a client that may read it (`authorizeRead`); nothing to others. */
async function download(options: LocalServerOptions, request: BitsRequest, res: ServerResponse) {
  const access = await options.authorizeRead(request);
  if (access.kind === "refused") return send(res, access.response);
  const object = await options.objects.readStream(access.key);
  if (object === undefined) return send(res, { status: 404, headers: { "Content-Length": "0" } });
  res.writeHead(200, {
    "Content-Length": String(object.size),
    "Content-Type": "application/octet-stream",
  });
  if (request.method === "HEAD") {
    await object.stream.cancel();
    res.end();
    return;
  }
  Readable.fromWeb(object.stream as import("node:stream/web").ReadableStream).pipe(res);
}

function send(res: ServerResponse, response: BitsResponse) {
  res.writeHead(response.status, reasonPhrase(response.status), response.headers);
  const body = response.body;
  if (body === undefined) {
    res.end();
  } else if (body instanceof Uint8Array) {
    res.end(body);
  } else {
    Readable.fromWeb(body as import("node:stream/web").ReadableStream).pipe(res);
  }
}
