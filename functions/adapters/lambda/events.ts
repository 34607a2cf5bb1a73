import type {
  ALBEvent,
  ALBResult,
  APIGatewayProxyEvent,
  APIGatewayProxyEventV2,
  APIGatewayProxyResult,
  APIGatewayProxyStructuredResultV2,
} from "aws-lambda";
import {
  type BitsRequest,
  type BitsResponse,
  headerMap,
  type Peer,
  reasonPhrase,
} from "../../bits/request.ts";

export interface EventOptions {
  /**
   * Trust the client-certificate headers of ALB events: only when the listener does mutual TLS
   * in verify mode, which the stack sets up whenever `client-cert` auth is on
   * (docs/security.md). API Gateway events never carry them.
   */
  readonly trustClientCertificates?: boolean;
  /** The invocation's ID, used when the front door gives none. */
  readonly invocationId?: string | undefined;
}

/** The three HTTP event shapes one handler serves, told apart by documented fields. */
export type HttpEvent =
  | { readonly kind: "alb"; readonly event: ALBEvent }
  | { readonly kind: "v1"; readonly event: APIGatewayProxyEvent }
  | { readonly kind: "v2"; readonly event: APIGatewayProxyEventV2 };

export type HttpResult = ALBResult | APIGatewayProxyResult | APIGatewayProxyStructuredResultV2;

export function classifyEvent(event: unknown): HttpEvent | undefined {
  if (typeof event !== "object" || event === null) return undefined;
  const e = event as Record<string, unknown>;
  const context = e.requestContext as Record<string, unknown> | undefined;
  if (e.version === "2.0" && typeof context?.http === "object") {
    return { kind: "v2", event: event as APIGatewayProxyEventV2 };
  }
  if (typeof context?.elb === "object") return { kind: "alb", event: event as ALBEvent };
  if (typeof e.httpMethod === "string" && typeof e.path === "string") {
    return { kind: "v1", event: event as APIGatewayProxyEvent };
  }
  return undefined;
}

type Headers = Record<string, string | undefined> | null | undefined;
type MultiHeaders = Record<string, string[] | undefined> | null | undefined;

function headerEntries(single: Headers, multi: MultiHeaders): [string, string][] {
  // Prefer multi-value headers where the front door sends them: they keep repeated headers.
  if (multi) {
    return Object.entries(multi).flatMap(([name, values]) =>
      (values ?? []).map((value): [string, string] => [name, value]),
    );
  }
  return Object.entries(single ?? {}).flatMap(([name, value]) =>
    value === undefined ? [] : [[name, value] as [string, string]],
  );
}

/** Bodies are bytes: base64 is decoded to bytes, never through a string. */
function bodyBytes(body: string | null | undefined, base64: boolean): Uint8Array {
  if (!body) return new Uint8Array(0);
  return base64 ? Buffer.from(body, "base64") : Buffer.from(body, "utf8");
}

/** Decodes one query component as a browser would: `+` is a space, bad escapes stay as sent. */
function decodeQuery(text: string): string {
  const spaced = text.replaceAll("+", " ");
  try {
    return decodeURIComponent(spaced);
  } catch {
    return spaced;
  }
}

type Query = Record<string, string | undefined> | null | undefined;
type MultiQuery = Record<string, string[] | undefined> | null | undefined;

function queryMap(single: Query, multi: MultiQuery, encoded: boolean): Map<string, string> {
  const decode = encoded ? decodeQuery : (text: string) => text;
  const entries = multi
    ? Object.entries(multi).map(([name, values]) => [name, values?.[0]] as const)
    : Object.entries(single ?? {});
  const map = new Map<string, string>();
  for (const [name, value] of entries) {
    if (value !== undefined && !map.has(decode(name))) map.set(decode(name), decode(value));
  }
  return map;
}

export function toBitsRequest(http: HttpEvent, options: EventOptions = {}): BitsRequest {
  switch (http.kind) {
    case "v2": {
      const e = http.event;
      const query = new Map<string, string>();
      for (const [name, value] of new URLSearchParams(e.rawQueryString ?? "")) {
        if (!query.has(name)) query.set(name, value);
      }
      return {
        method: e.requestContext.http.method,
        path: e.rawPath,
        headers: headerMap(Object.entries(e.headers ?? {})),
        body: bodyBytes(e.body, e.isBase64Encoded),
        query,
        // API Gateway and Function URLs are reached over HTTPS only.
        peer: {
          address: e.requestContext.http.sourceIp,
          secure: true,
          scheme: "https",
          requestId: e.requestContext.requestId ?? options.invocationId,
          invocationId: options.invocationId,
        },
      };
    }
    case "v1": {
      const e = http.event;
      return {
        method: e.httpMethod,
        path: e.path,
        headers: headerMap(headerEntries(e.headers, e.multiValueHeaders)),
        body: bodyBytes(e.body, e.isBase64Encoded),
        query: queryMap(e.queryStringParameters, e.multiValueQueryStringParameters, false),
        peer: {
          address: e.requestContext?.identity?.sourceIp,
          secure: true,
          scheme: "https",
          requestId: e.requestContext?.requestId ?? options.invocationId,
          invocationId: options.invocationId,
        },
      };
    }
    case "alb": {
      const e = http.event;
      const headers = headerMap(headerEntries(e.headers, e.multiValueHeaders));
      // The ALB passes the query string as the client sent it, still percent-encoded.
      const query = queryMap(e.queryStringParameters, e.multiValueQueryStringParameters, true);
      return {
        method: e.httpMethod,
        path: e.path,
        headers,
        body: bodyBytes(e.body, e.isBase64Encoded),
        query,
        peer: albPeer(headers, options),
      };
    }
  }
}

/**
 * What the ALB says of the client. It appends the address it saw to `X-Forwarded-For`, so the
 * last entry is the only one a client cannot forge; `X-Forwarded-Proto` says whether the
 * client used TLS; `X-Amzn-Trace-Id` names the request in the ALB's access log.
 */
function albPeer(headers: ReadonlyMap<string, string>, options: EventOptions): Peer {
  const forwarded = headers.get("x-forwarded-for")?.split(",");
  const subject = headers.get("x-amzn-mtls-clientcert-subject");
  const issuer = headers.get("x-amzn-mtls-clientcert-issuer");
  const serial = headers.get("x-amzn-mtls-clientcert-serial-number");
  const secure = headers.get("x-forwarded-proto")?.toLowerCase() === "https";
  return {
    address: forwarded?.[forwarded.length - 1]?.trim() || undefined,
    secure,
    scheme: secure ? "https" : "http",
    requestId: headers.get("x-amzn-trace-id") ?? options.invocationId,
    invocationId: options.invocationId,
    clientCertificate:
      options.trustClientCertificates && subject
        ? {
            subject,
            ...(issuer ? { issuer } : {}),
            ...(serial ? { serial } : {}),
          }
        : undefined,
  };
}

/** Answers in the shape the front door expects; ALB multi-value headers are answered in kind. */
export async function toLambdaResult(http: HttpEvent, response: BitsResponse): Promise<HttpResult> {
  const headers = { ...response.headers };
  // Only reply downloads have a body; the service keeps them under the front door's limit.
  const bytes = response.body === undefined ? undefined : await bodyOf(response.body);
  const body = bytes === undefined ? "" : Buffer.from(bytes).toString("base64");
  const isBase64Encoded = bytes !== undefined;
  if (http.kind === "alb") {
    const statusDescription = `${response.status} ${reasonPhrase(response.status)}`;
    const base = { statusCode: response.status, statusDescription, body, isBase64Encoded };
    if (http.event.multiValueHeaders) {
      const multiValueHeaders = Object.fromEntries(
        Object.entries(headers).map(([name, value]) => [name, [value]]),
      );
      return { ...base, multiValueHeaders };
    }
    return { ...base, headers };
  }
  return { statusCode: response.status, headers, body, isBase64Encoded };
}

async function bodyOf(body: ReadableStream<Uint8Array> | Uint8Array): Promise<Uint8Array> {
  if (body instanceof Uint8Array) return body;
  const chunks: Uint8Array[] = [];
  for await (const chunk of body as unknown as AsyncIterable<Uint8Array>) chunks.push(chunk);
  return Buffer.concat(chunks);
}
