import { createServer, type ServerResponse } from "node:http";
import { LambdaClient } from "@aws-sdk/client-lambda";
import { STAND_IN_CREDENTIALS, STAND_IN_REGION } from "../../infra/stand-ins.ts";
import { listenLocally } from "./listen.ts";

export type LambdaHandler = (event: unknown) => Promise<unknown>;

export interface Invocation {
  readonly functionName: string;
  /** `X-Amz-Invocation-Type` as sent (the SDK omits it only if the caller did). */
  readonly invocationType: string | undefined;
  readonly event: unknown;
}

export interface LambdaStandIn {
  readonly endpoint: string;
  /** Requests received so far, any path. */
  readonly requests: number;
  readonly invocations: readonly Invocation[];
  register(name: string, handler: LambdaHandler): void;
  close(): Promise<void>;
}

const INVOKE = /^\/2015-03-31\/functions\/([^/]+)\/invocations$/;

function fail(res: ServerResponse, status: number, type: string, message: string) {
  res.writeHead(status, { "content-type": "application/json", "x-amzn-errortype": type });
  res.end(JSON.stringify({ Type: "User", message }));
}

/** `arn:aws:lambda:<region>:<account>:function:<name>[:<qualifier>]` or a plain name. */
function functionName(nameOrArn: string): string {
  const arn = /^arn:[^:]+:lambda:[^:]*:[^:]*:function:([^:]+)/.exec(nameOrArn);
  return arn?.[1] ?? nameOrArn.split(":")[0] ?? nameOrArn;
}

/**
 * Just enough of Lambda's Invoke REST API for the real SDK client, over HTTP on 127.0.0.1: the
 * registered handler gets the JSON event and its result is the JSON payload; a throw answers
 * like an unhandled function error (`X-Amz-Function-Error: Unhandled`). No signature checks.
 */
export async function startLambdaStandIn(): Promise<LambdaStandIn> {
  const handlers = new Map<string, LambdaHandler>();
  const invocations: Invocation[] = [];
  let requests = 0;

  const server = createServer(async (req, res) => {
    requests++;
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const path = new URL(req.url ?? "/", "http://stand-in").pathname;
    const match = INVOKE.exec(path);
    if (req.method !== "POST" || !match?.[1]) {
      return fail(res, 400, "InvalidRequestContentException", `unsupported ${req.method} ${path}`);
    }
    const name = functionName(decodeURIComponent(match[1]));
    const handler = handlers.get(name);
    if (!handler) return fail(res, 404, "ResourceNotFoundException", `Function not found: ${name}`);
    let event: unknown;
    try {
      event = JSON.parse(Buffer.concat(chunks).toString("utf8") || "null");
    } catch {
      return fail(res, 400, "InvalidRequestContentException", "Could not parse request body");
    }
    const invocationType = req.headers["x-amz-invocation-type"];
    invocations.push({ functionName: name, invocationType: invocationType as string, event });
    const headers = { "content-type": "application/json", "x-amz-executed-version": "$LATEST" };
    try {
      const result = await handler(event);
      res.writeHead(200, headers);
      res.end(JSON.stringify(result ?? null));
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      res.writeHead(200, { ...headers, "x-amz-function-error": "Unhandled" });
      res.end(JSON.stringify({ errorType: "Error", errorMessage: message, trace: [] }));
    }
  });
  const listening = await listenLocally(server);

  return {
    endpoint: listening.url,
    get requests() {
      return requests;
    },
    invocations,
    register(name, handler) {
      handlers.set(name, handler);
    },
    close: listening.close,
  };
}

/** A real LambdaClient aimed at the stand-in, with no retries so counts are exact. */
export function standInLambda(endpoint: string): LambdaClient {
  return new LambdaClient({
    endpoint,
    region: STAND_IN_REGION,
    credentials: STAND_IN_CREDENTIALS,
    maxAttempts: 1,
  });
}
