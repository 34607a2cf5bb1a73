import { createServer, type ServerResponse } from "node:http";
import { SSMClient } from "@aws-sdk/client-ssm";
import { STAND_IN_CREDENTIALS, STAND_IN_REGION } from "../../infra/stand-ins.ts";
import { answerJson11 as answer, listenLocally } from "./listen.ts";

export interface SsmStandIn {
  readonly endpoint: string;
  /** Requests received so far, any target. */
  readonly requests: number;
  /** The last GetParameter body, to check what the SDK sent. */
  readonly lastBody: { Name?: string; WithDecryption?: boolean } | undefined;
  put(name: string, value: string): void;
  /** Answer AccessDeniedException for this name, as SSM does when the role lacks permission. */
  deny(name: string): void;
  close(): Promise<void>;
}

/**
 * Just enough of SSM's AWS JSON 1.1 protocol (`AmazonSSM.GetParameter`) for the real SDK client
 * to talk to it over HTTP on 127.0.0.1. No signature checks, no KMS: values are stored plain.
 */
export async function startSsmStandIn(): Promise<SsmStandIn> {
  const parameters = new Map<string, { value: string; version: number }>();
  const denied = new Set<string>();
  let requests = 0;
  let lastBody: SsmStandIn["lastBody"];
  const fail = (res: ServerResponse, status: number, type: string, message: string) =>
    answer(res, status, { __type: type, message }, type);

  const server = createServer(async (req, res) => {
    requests++;
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const target = req.headers["x-amz-target"];
    if (req.method !== "POST" || target !== "AmazonSSM.GetParameter") {
      return fail(res, 400, "InvalidAction", `unsupported ${req.method} ${String(target)}`);
    }
    lastBody = JSON.parse(Buffer.concat(chunks).toString("utf8") || "{}");
    const name = lastBody?.Name ?? "";
    if (denied.has(name)) return fail(res, 400, "AccessDeniedException", `denied: ${name}`);
    const found = parameters.get(name);
    if (!found) return fail(res, 400, "ParameterNotFound", `Parameter ${name} not found.`);
    answer(res, 200, {
      Parameter: { Name: name, Type: "SecureString", Value: found.value, Version: found.version },
    });
  });
  const listening = await listenLocally(server);

  return {
    endpoint: listening.url,
    get requests() {
      return requests;
    },
    get lastBody() {
      return lastBody;
    },
    put(name, value) {
      parameters.set(name, { value, version: (parameters.get(name)?.version ?? 0) + 1 });
    },
    deny(name) {
      denied.add(name);
    },
    close: listening.close,
  };
}

/** A real SSMClient aimed at the stand-in. */
export function standInSsm(endpoint: string): SSMClient {
  return new SSMClient({
    endpoint,
    region: STAND_IN_REGION,
    credentials: STAND_IN_CREDENTIALS,
    maxAttempts: 1,
  });
}
