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
  reasonPhrase,
} from "../../bits/request.ts";

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

export function toBitsRequest(http: HttpEvent): BitsRequest {
  switch (http.kind) {
    case "v2": {
      const e = http.event;
      return {
        method: e.requestContext.http.method,
        path: e.rawPath,
        headers: headerMap(Object.entries(e.headers ?? {})),
        body: bodyBytes(e.body, e.isBase64Encoded),
      };
    }
    case "alb":
    case "v1": {
      const e = http.event;
      return {
        method: e.httpMethod,
        path: e.path,
        headers: headerMap(headerEntries(e.headers, e.multiValueHeaders)),
        body: bodyBytes(e.body, e.isBase64Encoded),
      };
    }
  }
}

/** Answers in the shape the front door expects; ALB multi-value headers are answered in kind. */
export function toLambdaResult(http: HttpEvent, response: BitsResponse): HttpResult {
  const headers = { ...response.headers };
  if (http.kind === "alb") {
    const statusDescription = `${response.status} ${reasonPhrase(response.status)}`;
    const base = {
      statusCode: response.status,
      statusDescription,
      body: "",
      isBase64Encoded: false,
    };
    if (http.event.multiValueHeaders) {
      const multiValueHeaders = Object.fromEntries(
        Object.entries(headers).map(([name, value]) => [name, [value]]),
      );
      return { ...base, multiValueHeaders };
    }
    return { ...base, headers };
  }
  return { statusCode: response.status, headers, body: "", isBase64Encoded: false };
}
