import { describe, expect, it } from "vitest";
import { DynamoDbSessionStore } from "../../functions/adapters/dynamodb/dynamodb-session-store.ts";
import { createCleanupHandler } from "../../functions/adapters/lambda/cleanup-handler.ts";
import { createLambdaHandler } from "../../functions/adapters/lambda/lambda-handler.ts";
import { MemoryEventSink } from "../../functions/adapters/memory/memory-event-sink.ts";
import { S3ObjectStore } from "../../functions/adapters/s3/s3-object-store.ts";
import { BITS_PROTOCOL_GUID } from "../../functions/bits/constants.ts";
import { jsonRuntime } from "../../functions/wiring.ts";
import { faultyClients } from "../support/faults.ts";
import { freshStorage, serviceOver } from "../support/storage.ts";
import { lambdaEvent } from "../support/transports.ts";

/**
 * Every line the service logs while serving a request carries that request's IDs, the same as
 * its audit line (docs/security.md, "What is logged"), also when requests run at once in one
 * process and interleave on their storage calls; the lines of a storage failure included.
 */

type Line = Record<string, unknown> & { level: string; message: string };

/** The service over the real stand-ins, logging with the deployed runtime's JSON lines. */
async function loggingService(fault?: { at: number }) {
  const storage = await freshStorage();
  const clients = faultyClients(fault && { at: fault.at, kind: "fail" });
  const env = serviceOver(
    new DynamoDbSessionStore(clients.dynamodb, storage.table),
    new S3ObjectStore(clients.s3, storage.bucket),
    { bucket: storage.bucket },
  );
  const lines: Line[] = [];
  env.runtime.log = jsonRuntime("info", (line) => lines.push(JSON.parse(line) as Line)).log;
  return { ...env, clients, lines };
}

/** A Create-Session as API Gateway's HTTP API hands it to the function, with its two IDs. */
function createSessionEvent(path: string, requestId: string) {
  const event = lambdaEvent("v2", {
    method: "BITS_POST",
    path,
    headers: {
      "BITS-Packet-Type": "Create-Session",
      "BITS-Supported-Protocols": BITS_PROTOCOL_GUID,
    },
    body: new Uint8Array(0),
  }) as { requestContext: Record<string, unknown> };
  event.requestContext.requestId = requestId;
  return event;
}

describe("request IDs on every log line", () => {
  it("concurrent requests, one of them failing in storage: each line names its own request", async () => {
    const COUNT = 16;
    // The fifth storage call of all fails: one request, whichever made it, gets a 500.
    const { service, clients, lines } = await loggingService({ at: 5 });
    const handler = createLambdaHandler(service);
    const results = await Promise.all(
      Array.from({ length: COUNT }, (_, i) =>
        handler(createSessionEvent(`/ids/file-${i}.bin`, `req-${i}`), {
          awsRequestId: `inv-${i}`,
        }),
      ),
    );
    clients.destroy();
    expect(clients.injected()?.fault).toBe("fail");
    const statuses = results.map((result) => result.statusCode).sort();
    expect(statuses).toEqual([...Array(COUNT - 1).fill(200), 500]);

    const byRequest = new Map<string, Line[]>();
    for (const line of lines) {
      const id = String(line.requestId);
      expect(line.invocation, JSON.stringify(line)).toBe(id.replace("req-", "inv-"));
      byRequest.set(id, [...(byRequest.get(id) ?? []), line]);
    }
    expect([...byRequest.keys()].sort()).toEqual(
      Array.from({ length: COUNT }, (_, i) => `req-${i}`).sort(),
    );
    let failed = 0;
    for (const [id, own] of byRequest) {
      const audits = own.filter((line) => line.message === "request");
      expect(audits, id).toHaveLength(1);
      const audit = audits[0] as Line;
      expect(audit.path).toBe(`/ids/file-${id.slice(4)}.bin`);
      const others = own.filter((line) => line !== audit).map((line) => line.message);
      if (audit.status === 200) {
        expect(others, id).toEqual(["session created"]);
        expect(own.find((line) => line.message === "session created")?.key).toBe(audit.key);
      } else {
        failed++;
        expect(audit).toMatchObject({ status: 500, level: "warn" });
        expect(others, id).toEqual(["request failed"]);
        expect(own.find((line) => line.message === "request failed")?.level).toBe("error");
      }
    }
    expect(failed).toBe(1);
  });

  it("a line logged outside any request names none; the cleanup function's name its invocation", async () => {
    const { context, runtime, lines } = await loggingService();
    runtime.log("info", "between requests");
    const cleanup = createCleanupHandler(context, async () => new MemoryEventSink());
    await cleanup({}, { getRemainingTimeInMillis: () => 600_000, awsRequestId: "inv-sweep" });
    const [outside, ...sweep] = lines;
    expect(outside).toEqual({ level: "info", message: "between requests" });
    expect(sweep.length).toBeGreaterThan(0);
    for (const line of sweep) expect(line).toMatchObject({ invocation: "inv-sweep" });
    expect(sweep.some((line) => "requestId" in line)).toBe(false);
  });
});
