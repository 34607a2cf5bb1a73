import { Agent, request as httpRequest } from "node:http";
import { Agent as HttpsAgent, request as httpsRequest } from "node:https";
import { createLambdaHandler } from "../../functions/adapters/lambda/lambda-handler.ts";
import type { Peer } from "../../functions/bits/request.ts";
import type { UploadService } from "../../functions/service/upload-service.ts";
import { call } from "./calls.ts";

export interface WireRequest {
  readonly method: string;
  readonly path: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: Uint8Array;
}

export interface WireResponse {
  readonly status: number;
  /** Lower-case names. */
  readonly headers: ReadonlyMap<string, string>;
  /** Reply downloads only. */
  readonly body?: Uint8Array;
}

/** An `Authorization` header's value for HTTP Basic (RFC 7617). */
export const basic = (user: string, password: string) =>
  `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`;

/** GETs `url` and answers the body; throws unless the status is `status`. */
export async function download(
  url: string,
  /** The status expected (200), or the Basic user to read as (the local server serves stored objects only to those who may upload them). */
  expected: number | { user: string; password: string; status?: number } = 200,
): Promise<Uint8Array> {
  const status = typeof expected === "number" ? expected : (expected.status ?? 200);
  const headers: Record<string, string> =
    typeof expected === "number" ? {} : { Authorization: basic(expected.user, expected.password) };
  const res = await fetch(url, { headers });
  const body = new Uint8Array(await res.arrayBuffer());
  if (res.status !== status) throw new Error(`GET ${url}: ${res.status}, expected ${status}`);
  return body;
}

/** Sends one request; throws when the connection drops. */
export type Transport = (request: WireRequest) => Promise<WireResponse>;

/**
 * Real HTTP/1.1 with keep-alive, as the Windows client speaks it; over TLS for an `https:` base
 * URL, trusting `ca`.
 */
export function httpTransport(
  baseUrl: string,
  { ca }: { ca?: Buffer } = {},
): Transport & { close(): void } {
  const tls = baseUrl.startsWith("https:");
  const options = { keepAlive: true, maxSockets: 1 };
  const agent = tls ? new HttpsAgent({ ...options, ...(ca ? { ca } : {}) }) : new Agent(options);
  const request = tls ? httpsRequest : httpRequest;
  const send: Transport = (req) =>
    new Promise((resolve, reject) => {
      const url = new URL(req.path, baseUrl);
      const out = request(
        url,
        {
          method: req.method,
          agent,
          headers: { ...req.headers, "Content-Length": String(req.body.length) },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (chunk: Buffer) => chunks.push(chunk));
          res.on("end", () => {
            const headers = new Map<string, string>();
            for (const [name, value] of Object.entries(res.headers)) {
              if (value !== undefined)
                headers.set(name, Array.isArray(value) ? value.join(", ") : value);
            }
            const body = Buffer.concat(chunks);
            resolve({
              status: res.statusCode ?? 0,
              headers,
              ...(body.length > 0 ? { body } : {}),
            });
          });
          res.on("error", reject);
        },
      );
      out.on("error", reject);
      out.end(req.body);
    });
  return Object.assign(send, { close: () => agent.destroy() });
}

/** Straight into the service, as a client at `peer` that adds these headers to every request. */
export function serviceTransport(
  service: UploadService,
  peer: Peer,
  extra: Record<string, string> = {},
): Transport {
  return async (req) => {
    const response = await call(service, {
      path: req.path,
      headers: { ...req.headers, ...extra },
      body: req.body,
      peer,
    });
    return {
      status: response.status,
      headers: new Map(Object.entries(response.headers).map(([k, v]) => [k.toLowerCase(), v])),
    };
  };
}

/** One BITS_POST packet through a transport. */
export const packet = (
  transport: Transport,
  path: string,
  headers: Record<string, string>,
  body: Uint8Array = new Uint8Array(0),
) => transport({ method: "BITS_POST", path, headers, body });

export type EventShape = "alb" | "alb-multi" | "v1" | "v2";

/** Builds the Lambda event a front door would send for this request. */
export function lambdaEvent(shape: EventShape, req: WireRequest): unknown {
  const [path, query = ""] = req.path.split("?");
  const body = Buffer.from(req.body).toString("base64");
  const headers: Record<string, string> = { ...req.headers, host: "uploads.example.com" };
  if (req.headers["Content-Length"] === undefined)
    headers["Content-Length"] = String(req.body.length);
  const lower = Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v]));
  const multi = Object.fromEntries(Object.entries(lower).map(([k, v]) => [k, [v]]));
  // The ALB hands the query over as sent, still percent-encoded (platform: ALB does not decode).
  const rawParams = query
    .split("&")
    .filter((pair) => pair !== "")
    .map((pair) => {
      const equals = pair.indexOf("=");
      return equals < 0 ? [pair, ""] : [pair.slice(0, equals), pair.slice(equals + 1)];
    });
  const queryParams = Object.fromEntries(rawParams);
  switch (shape) {
    case "alb":
      return {
        requestContext: { elb: { targetGroupArn: "arn:aws:elasticloadbalancing:tg" } },
        httpMethod: req.method,
        path,
        queryStringParameters: queryParams,
        headers: lower,
        body,
        isBase64Encoded: true,
      };
    case "alb-multi":
      return {
        requestContext: { elb: { targetGroupArn: "arn:aws:elasticloadbalancing:tg" } },
        httpMethod: req.method,
        path,
        multiValueQueryStringParameters: Object.fromEntries(rawParams.map(([k, v]) => [k, [v]])),
        multiValueHeaders: multi,
        body,
        isBase64Encoded: true,
      };
    case "v1":
      return {
        resource: "/{proxy+}",
        path,
        httpMethod: req.method,
        headers,
        multiValueHeaders: Object.fromEntries(Object.entries(headers).map(([k, v]) => [k, [v]])),
        queryStringParameters: Object.fromEntries(new URLSearchParams(query)),
        multiValueQueryStringParameters: null,
        pathParameters: { proxy: path?.slice(1) },
        stageVariables: null,
        requestContext: { httpMethod: req.method, path, stage: "prod", requestId: "r" },
        body,
        isBase64Encoded: true,
      };
    case "v2":
      return {
        version: "2.0",
        routeKey: "$default",
        rawPath: path,
        rawQueryString: query,
        headers: lower,
        requestContext: {
          http: {
            method: req.method,
            path,
            protocol: "HTTP/1.1",
            sourceIp: "127.0.0.1",
            userAgent: "",
          },
          requestId: "r",
          routeKey: "$default",
          stage: "$default",
        },
        body,
        isBase64Encoded: true,
      };
  }
}

/** Drives the Lambda handler with the events of one front door. */
export function lambdaTransport(
  service: UploadService,
  shape: EventShape,
  options: { trustClientCertificates?: boolean } = {},
): Transport {
  const handler = createLambdaHandler(service, options);
  return async (req) => {
    const method = shape === "v2" && req.method === "BITS_POST" ? "POST" : req.method;
    const headers =
      shape === "v2" && req.method === "BITS_POST"
        ? { ...req.headers, "X-Http-Method-Override": "BITS_POST" }
        : req.headers;
    const result = (await handler(lambdaEvent(shape, { ...req, method, headers }))) as {
      statusCode: number;
      headers?: Record<string, string>;
      multiValueHeaders?: Record<string, string[]>;
      body?: string;
    };
    const out = new Map<string, string>();
    if (shape === "alb-multi") {
      if (result.headers !== undefined)
        throw new Error("multi-value event answered with single headers");
      for (const [k, v] of Object.entries(result.multiValueHeaders ?? {}))
        out.set(k.toLowerCase(), v.join(", "));
    } else {
      for (const [k, v] of Object.entries(result.headers ?? {})) out.set(k.toLowerCase(), v);
    }
    if (result.body && req.method !== "GET") throw new Error("an Ack must not have a body");
    if (result.body && Buffer.from(result.body, "base64").length > 1024 * 1024) {
      throw new Error("a Lambda response through an ALB is at most 1 MB");
    }
    return {
      status: result.statusCode,
      headers: out,
      ...(result.body ? { body: Buffer.from(result.body, "base64") } : {}),
    };
  };
}
