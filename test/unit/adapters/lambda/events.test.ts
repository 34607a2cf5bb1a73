import { describe, expect, it } from "vitest";
import {
  classifyEvent,
  type HttpEvent,
  toBitsRequest,
  toLambdaResult,
} from "../../../../functions/adapters/lambda/events.ts";
import { createLambdaHandler } from "../../../../functions/adapters/lambda/lambda-handler.ts";
import type { BitsRequest, BitsResponse } from "../../../../functions/bits/request.ts";
import type { UploadService } from "../../../../functions/service/upload-service.ts";

type Event = Record<string, unknown>;

const ACK: BitsResponse = {
  status: 200,
  headers: { "BITS-Packet-Type": "Ack", "Content-Length": "0", "BITS-Session-Id": "{S}" },
};

/** Every byte value 0-255: invalid as UTF-8, so only a byte-exact decoding keeps them. */
const ALL_BYTES = Uint8Array.from({ length: 256 }, (_, i) => i);
const base64 = (bytes: Uint8Array) => Buffer.from(bytes).toString("base64");

// Typed event factories with overrides, shaped like the documented events.
function albEvent(overrides: Event = {}): Event {
  return {
    requestContext: { elb: { targetGroupArn: "arn:aws:elasticloadbalancing:::targetgroup/t/1" } },
    httpMethod: "BITS_POST",
    path: "/upload/file.txt",
    queryStringParameters: {},
    headers: { "bits-packet-type": "Ping", "content-length": "0" },
    body: "",
    isBase64Encoded: false,
    ...overrides,
  };
}

function albMultiEvent(overrides: Event = {}): Event {
  const { headers: _, ...event } = albEvent();
  return {
    ...event,
    multiValueQueryStringParameters: {},
    multiValueHeaders: { "bits-packet-type": ["Ping"], "content-length": ["0"] },
    ...overrides,
  };
}

function v1Event(overrides: Event = {}): Event {
  return {
    resource: "/{proxy+}",
    path: "/upload/file.txt",
    httpMethod: "POST",
    headers: { "BITS-Packet-Type": "Ping", "Content-Length": "0" },
    multiValueHeaders: { "BITS-Packet-Type": ["Ping"], "Content-Length": ["0"] },
    queryStringParameters: null,
    multiValueQueryStringParameters: null,
    pathParameters: { proxy: "upload/file.txt" },
    stageVariables: null,
    requestContext: { stage: "prod", requestId: "r", httpMethod: "POST", path: "/upload/file.txt" },
    body: null,
    isBase64Encoded: false,
    ...overrides,
  };
}

function v2Event(overrides: Event = {}): Event {
  return {
    version: "2.0",
    routeKey: "$default",
    rawPath: "/upload/file.txt",
    rawQueryString: "",
    headers: { "bits-packet-type": "Ping", "content-length": "0" },
    requestContext: {
      http: { method: "BITS_POST", path: "/upload/file.txt", protocol: "HTTP/1.1" },
      requestId: "r",
      stage: "$default",
    },
    isBase64Encoded: false,
    ...overrides,
  };
}

function classified(event: Event): HttpEvent {
  const http = classifyEvent(event);
  if (http === undefined) throw new Error("event not recognised");
  return http;
}

const requestOf = (event: Event) => toBitsRequest(classified(event));
const bytesOf = (request: BitsRequest) => [...request.body];

/** A tiny fake service: records each request and answers with a fixed response. */
function fakeService(response: BitsResponse = ACK) {
  const requests: BitsRequest[] = [];
  const service: UploadService = {
    async handle(request) {
      requests.push(request);
      return response;
    },
  };
  return { service, requests };
}

describe("classifyEvent: event sources told apart by documented fields (docs/platform.md, Lambda event shapes)", () => {
  it.each([
    ["ALB", albEvent(), "alb"],
    ["ALB multi-value", albMultiEvent(), "alb"],
    ["API Gateway REST (payload v1)", v1Event(), "v1"],
    ["HTTP API payload 1.0", v1Event({ version: "1.0" }), "v1"],
    ["HTTP API / Function URL (payload v2)", v2Event(), "v2"],
  ])("%s is %s", (_, event, kind) => {
    expect(classifyEvent(event)?.kind).toBe(kind);
  });

  it("an ALB event is ALB although it also has httpMethod and path like v1", () => {
    const event = albEvent();
    expect(event.httpMethod).toBeTypeOf("string");
    expect(classifyEvent(event)?.kind).toBe("alb");
  });

  it("keeps the original event", () => {
    const event = v2Event();
    expect(classifyEvent(event)?.event).toBe(event);
  });

  it.each([
    ["undefined", undefined],
    ["null", null],
    ["a string", "BITS_POST /"],
    ["an empty object", {}],
    ["an SQS event", { Records: [{ eventSource: "aws:sqs", body: "x" }] }],
    ["a scheduled event", { source: "aws.events", "detail-type": "Scheduled Event", detail: {} }],
    ["v2 without requestContext.http", { version: "2.0", rawPath: "/", requestContext: {} }],
    ["v1 without a path", { httpMethod: "POST", requestContext: {} }],
  ])("%s is not an HTTP event", (_, event) => {
    expect(classifyEvent(event)).toBeUndefined();
  });
});

describe("toBitsRequest: the edge converts events to request values, the core sees no events", () => {
  it.each([
    ["ALB", albEvent({ body: base64(ALL_BYTES), isBase64Encoded: true })],
    ["ALB multi-value", albMultiEvent({ body: base64(ALL_BYTES), isBase64Encoded: true })],
    ["v1", v1Event({ body: base64(ALL_BYTES), isBase64Encoded: true })],
    ["v2", v2Event({ body: base64(ALL_BYTES), isBase64Encoded: true })],
  ])("%s: a base64 body is decoded to the exact bytes, 0x80-0xFF included", (_, event) => {
    const request = requestOf(event);
    expect(request.body).toBeInstanceOf(Uint8Array);
    expect(request.body.length).toBe(256);
    expect(bytesOf(request)).toEqual([...ALL_BYTES]);
  });

  it("a large binary body survives base64 byte for byte", () => {
    const body = Uint8Array.from({ length: 70_001 }, (_, i) => (i * 131 + 17) % 256);
    const request = requestOf(albEvent({ body: base64(body), isBase64Encoded: true }));
    expect(Buffer.compare(Buffer.from(request.body), Buffer.from(body))).toBe(0);
  });

  it.each([
    ["ALB", albEvent({ body: "héllo ✓" })],
    ["v1", v1Event({ body: "héllo ✓" })],
    ["v2", v2Event({ body: "héllo ✓" })],
  ])("%s: a body that is not base64 is taken as UTF-8 text", (_, event) => {
    expect(bytesOf(requestOf(event))).toEqual([...new TextEncoder().encode("héllo ✓")]);
  });

  it("a base64-looking body not flagged isBase64Encoded is not decoded", () => {
    expect(bytesOf(requestOf(albEvent({ body: "AAEC" })))).toEqual([0x41, 0x41, 0x45, 0x43]);
  });

  it.each([
    ["ALB, empty body", albEvent({ body: "" })],
    ["v1, null body", v1Event({ body: null })],
    ["v2, no body", v2Event()],
    ["v2, empty base64 body", v2Event({ body: "", isBase64Encoded: true })],
  ])("%s: the body is zero bytes", (_, event) => {
    expect(requestOf(event).body.length).toBe(0);
  });

  it.each([
    ["ALB", albEvent(), "BITS_POST"],
    ["v1", v1Event(), "POST"],
    ["v2", v2Event(), "BITS_POST"],
  ])("%s: the method is passed on untouched (methods are not allow-listed)", (_, event, method) => {
    expect(requestOf(event).method).toBe(method);
  });

  it("v2: the path is rawPath, without the query string", () => {
    const event = v2Event({
      rawPath: "/upload/a%20b.txt",
      rawQueryString: "x=1&y=%2F",
      requestContext: { http: { method: "BITS_POST", path: "/upload/a b.txt" } },
    });
    expect(requestOf(event).path).toBe("/upload/a%20b.txt");
  });

  it.each([
    ["ALB", albEvent({ path: "/upload/a%20b.txt", queryStringParameters: { x: "1" } })],
    ["v1", v1Event({ path: "/upload/a%20b.txt", queryStringParameters: { x: "1" } })],
  ])("%s: the path is `path`, without the query string", (_, event) => {
    expect(requestOf(event).path).toBe("/upload/a%20b.txt");
  });

  it("v1: header names are matched case-insensitively (lower-cased in the map)", () => {
    const request = requestOf(
      v1Event({
        headers: { "BITS-Packet-Type": "Fragment", "Content-Range": "bytes 0-0/1" },
        multiValueHeaders: {
          "BITS-Packet-Type": ["Fragment"],
          "Content-Range": ["bytes 0-0/1"],
        },
      }),
    );
    expect(request.headers.get("bits-packet-type")).toBe("Fragment");
    expect(request.headers.get("content-range")).toBe("bytes 0-0/1");
    expect(request.headers.has("BITS-Packet-Type")).toBe(false);
  });

  it("ALB: single-value headers are read when there are no multi-value ones", () => {
    const request = requestOf(albEvent({ headers: { "BITS-Session-Id": "{S}" } }));
    expect([...request.headers]).toEqual([["bits-session-id", "{S}"]]);
  });

  it("ALB multi-value: repeated values are joined with ', ' (RFC 9110 list fields)", () => {
    const request = requestOf(
      albMultiEvent({
        multiValueHeaders: { "x-custom": ["a", "b"], "bits-packet-type": ["Ping"] },
      }),
    );
    expect(request.headers.get("x-custom")).toBe("a, b");
    expect(request.headers.get("bits-packet-type")).toBe("Ping");
  });

  it("v1: multiValueHeaders win over headers, which hold only the last value", () => {
    const request = requestOf(
      v1Event({
        headers: { "X-Custom": "b" },
        multiValueHeaders: { "X-Custom": ["a", "b"] },
      }),
    );
    expect(request.headers.get("x-custom")).toBe("a, b");
  });

  it("names differing only in case are merged into one header", () => {
    const request = requestOf(
      v1Event({ headers: null, multiValueHeaders: { "X-Custom": ["a"], "x-custom": ["b"] } }),
    );
    expect([...request.headers]).toEqual([["x-custom", "a, b"]]);
  });

  it("v1: single-value headers are used when multiValueHeaders is null", () => {
    const request = requestOf(v1Event({ headers: { "X-A": "1" }, multiValueHeaders: null }));
    expect([...request.headers]).toEqual([["x-a", "1"]]);
  });

  it("v2: comma-joined headers are kept as the gateway sent them", () => {
    const request = requestOf(
      v2Event({ headers: { "x-custom": "a,b", "BITS-Session-Id": "{S}" } }),
    );
    expect(request.headers.get("x-custom")).toBe("a,b");
    expect(request.headers.get("bits-session-id")).toBe("{S}");
  });

  it.each([
    ["ALB", albEvent({ headers: undefined })],
    ["v1", v1Event({ headers: null, multiValueHeaders: null })],
    ["v2", v2Event({ headers: undefined })],
  ])("%s: no headers at all gives an empty header map", (_, event) => {
    expect(requestOf(event).headers.size).toBe(0);
  });
});

describe("toLambdaResult: answers in the shape the front door expects", async () => {
  it("ALB: headers, statusDescription `200 OK`, empty body", async () => {
    expect(await toLambdaResult(classified(albEvent()), ACK)).toEqual({
      statusCode: 200,
      statusDescription: "200 OK",
      headers: ACK.headers,
      body: "",
      isBase64Encoded: false,
    });
  });

  it("ALB multi-value: answered with multiValueHeaders and statusDescription `200 OK`", async () => {
    expect(await toLambdaResult(classified(albMultiEvent()), ACK)).toEqual({
      statusCode: 200,
      statusDescription: "200 OK",
      multiValueHeaders: {
        "BITS-Packet-Type": ["Ack"],
        "Content-Length": ["0"],
        "BITS-Session-Id": ["{S}"],
      },
      body: "",
      isBase64Encoded: false,
    });
  });

  it.each([
    [400, "400 Bad Request"],
    [413, "413 Payload Too Large"],
    [416, "416 Range Not Satisfiable"],
    [500, "500 Internal Server Error"],
    [501, "501 Not Implemented"],
  ])("ALB: status %i is described as %j", async (status, description) => {
    const result = await toLambdaResult(classified(albEvent()), { status, headers: {} });
    expect(result).toMatchObject({ statusCode: status, statusDescription: description });
  });

  it.each([
    ["v1", v1Event()],
    ["v2", v2Event()],
  ])("%s: statusCode, headers and an empty body, no statusDescription", async (_, event) => {
    expect(await toLambdaResult(classified(event), ACK)).toEqual({
      statusCode: 200,
      headers: ACK.headers,
      body: "",
      isBase64Encoded: false,
    });
  });

  it("copies the headers instead of sharing the response's object", async () => {
    const result = await toLambdaResult(classified(v2Event()), ACK);
    expect(result.headers).not.toBe(ACK.headers);
  });
});

describe("createLambdaHandler: one handler for ALB, API Gateway v1 and v2", () => {
  it.each([
    ["ALB", albEvent({ body: base64(ALL_BYTES), isBase64Encoded: true }), "BITS_POST"],
    ["v1", v1Event({ body: base64(ALL_BYTES), isBase64Encoded: true }), "POST"],
    ["v2", v2Event({ body: base64(ALL_BYTES), isBase64Encoded: true }), "BITS_POST"],
  ])("%s: passes the converted request to the service exactly once", async (_, event, method) => {
    const { service, requests } = fakeService();
    await createLambdaHandler(service)(event);
    expect(requests).toHaveLength(1);
    const [request] = requests;
    expect(request?.method).toBe(method);
    expect(request?.path).toBe("/upload/file.txt");
    expect(request && bytesOf(request)).toEqual([...ALL_BYTES]);
  });

  it("ALB multi-value: the service's Ack comes back as multiValueHeaders with `200 OK`", async () => {
    const { service, requests } = fakeService();
    const result = await createLambdaHandler(service)(
      albMultiEvent({ multiValueHeaders: { "BITS-Packet-Type": ["Ping"], "X-A": ["1", "2"] } }),
    );
    expect(requests[0]?.headers.get("bits-packet-type")).toBe("Ping");
    expect(requests[0]?.headers.get("x-a")).toBe("1, 2");
    expect(result).toEqual({
      statusCode: 200,
      statusDescription: "200 OK",
      multiValueHeaders: {
        "BITS-Packet-Type": ["Ack"],
        "Content-Length": ["0"],
        "BITS-Session-Id": ["{S}"],
      },
      body: "",
      isBase64Encoded: false,
    });
  });

  it("v2: the service sees rawPath without the query and the answer is a v2 result", async () => {
    const { service, requests } = fakeService({ status: 416, headers: { A: "1" } });
    const result = await createLambdaHandler(service)(
      v2Event({ rawPath: "/upload/x.bin", rawQueryString: "a=b" }),
    );
    expect(requests[0]?.path).toBe("/upload/x.bin");
    expect(result).toEqual({
      statusCode: 416,
      headers: { A: "1" },
      body: "",
      isBase64Encoded: false,
    });
  });

  it.each([
    ["undefined", undefined],
    ["an empty object", {}],
    ["an SQS event", { Records: [] }],
  ])(
    "%s is not an HTTP event: 405 with Allow: BITS_POST, and the service is not called",
    async (_, event) => {
      const { service, requests } = fakeService();
      const result = await createLambdaHandler(service)(event);
      expect(result).toEqual({
        statusCode: 405,
        headers: { Allow: "BITS_POST", "Content-Length": "0" },
        body: "",
      });
      expect(requests).toHaveLength(0);
    },
  );
});

describe("toBitsRequest: what the front door knows of the client (docs/security.md)", () => {
  const mtls = {
    "x-amzn-mtls-clientcert-subject": "CN=host-1,O=Example",
    "x-amzn-mtls-clientcert-issuer": "CN=Fleet CA",
    "x-amzn-mtls-clientcert-serial-number": "0A",
  };

  it("ALB: the client is the last X-Forwarded-For entry, the one the ALB appended", () => {
    const request = requestOf(
      albEvent({
        headers: {
          "bits-packet-type": "Ping",
          "x-forwarded-for": "10.0.0.1, 192.0.2.9, 203.0.113.5",
          "x-forwarded-proto": "https",
          "x-amzn-trace-id": "Root=1-abc",
        },
      }),
    );
    expect(request.peer).toMatchObject({
      address: "203.0.113.5",
      secure: true,
      requestId: "Root=1-abc",
    });
  });

  it("ALB over plain HTTP is not a confidential channel", () => {
    const request = requestOf(albEvent({ headers: { "x-forwarded-proto": "http" } }));
    expect(request.peer?.secure).toBe(false);
  });

  it("ALB: the query string arrives percent-encoded and is decoded once", () => {
    const request = requestOf(
      albEvent({ queryStringParameters: { "bits-prefix": "%2Fdrop%2F", "bits-sub": "a%2Bb" } }),
    );
    expect(request.query?.get("bits-prefix")).toBe("/drop/");
    expect(request.query?.get("bits-sub")).toBe("a+b");
  });

  it("ALB: client-certificate headers are believed only when the listener verifies them", () => {
    const event = albEvent({ headers: { ...mtls, "bits-packet-type": "Ping" } });
    const trusted = toBitsRequest(classified(event), { trustClientCertificates: true });
    expect(trusted.peer?.clientCertificate).toEqual({
      subject: "CN=host-1,O=Example",
      issuer: "CN=Fleet CA",
      serial: "0A",
    });
    expect(toBitsRequest(classified(event)).peer?.clientCertificate).toBeUndefined();
  });

  it("API Gateway: HTTPS, the source IP and request ID from the context; no certificate headers", () => {
    const v2 = toBitsRequest(
      classified(
        v2Event({
          rawQueryString: "bits-sig=abc&x=%20y",
          headers: { ...mtls, "bits-packet-type": "Ping" },
          requestContext: {
            http: {
              method: "BITS_POST",
              path: "/a",
              protocol: "HTTP/1.1",
              sourceIp: "198.51.100.4",
            },
            requestId: "req-2",
            stage: "$default",
          },
        }),
      ),
      { trustClientCertificates: true },
    );
    expect(v2.peer).toEqual({
      address: "198.51.100.4",
      secure: true,
      scheme: "https",
      requestId: "req-2",
    });
    expect(v2.query?.get("x")).toBe(" y");
    const v1 = requestOf(
      v1Event({
        queryStringParameters: { "bits-sub": "a+b" },
        requestContext: { requestId: "req-1", identity: { sourceIp: "198.51.100.5" } },
      }),
    );
    expect(v1.peer).toMatchObject({ address: "198.51.100.5", secure: true, requestId: "req-1" });
    expect(v1.query?.get("bits-sub")).toBe("a+b");
  });
});
