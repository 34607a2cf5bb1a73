/**
 * A transport-neutral HTTP request: what every front door (ALB, API Gateway v1/v2, the local
 * server) is converted into before the protocol sees it. Header names are lower-case; repeated
 * headers are joined with ", " as RFC 9110 allows for list-valued fields.
 */
export interface BitsRequest {
  readonly method: string;
  /** The path as it arrived, still percent-encoded, without the query string. */
  readonly path: string;
  readonly headers: ReadonlyMap<string, string>;
  readonly body: Uint8Array;
  /** Query parameters, percent-decoded (a signed upload URL carries its signature there). */
  readonly query?: ReadonlyMap<string, string> | undefined;
  /** What the front door knows of the client; absent for requests built in tests. */
  readonly peer?: Peer | undefined;
}

/** The client as the front door saw it. */
export interface Peer {
  /** The client's IP address (behind an ALB: the last `X-Forwarded-For` entry). */
  readonly address?: string | undefined;
  /** True when the request travelled over TLS, or never left the machine (loopback). */
  readonly secure: boolean;
  /** The scheme the client used, for URLs given back to it (the reply URL). */
  readonly scheme?: "http" | "https" | undefined;
  /** The front door's name for the request (API Gateway's request ID, the ALB's trace ID). */
  readonly requestId?: string | undefined;
  /** The function invocation that handled it (Lambda's request ID), where there is one. */
  readonly invocationId?: string | undefined;
  /** A client certificate the front door verified (ALB mutual TLS in verify mode). */
  readonly clientCertificate?:
    | { readonly subject: string; readonly issuer?: string; readonly serial?: string }
    | undefined;
}

/** Builds the lower-cased header map from any list of name/value pairs. */
export function headerMap(entries: Iterable<readonly [string, string | undefined]>) {
  const map = new Map<string, string>();
  for (const [name, value] of entries) {
    if (value === undefined) continue;
    const key = name.toLowerCase();
    const previous = map.get(key);
    map.set(key, previous === undefined ? value : `${previous}, ${value}`);
  }
  return map;
}

/** A response: an Ack, a 401 or 405, or a reply download. */
export interface BitsResponse {
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;
  /** Reply downloads only: an Ack never has a body. */
  readonly body?: ReadableStream<Uint8Array> | Uint8Array | undefined;
}

const REASONS: Record<number, string> = {
  200: "OK",
  206: "Partial Content",
  302: "Found",
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  408: "Request Timeout",
  411: "Length Required",
  413: "Payload Too Large",
  416: "Range Not Satisfiable",
  500: "Internal Server Error",
  501: "Not Implemented",
  502: "Bad Gateway",
  503: "Service Unavailable",
};

export function reasonPhrase(status: number): string {
  return REASONS[status] ?? "Unknown";
}
