import { createServer } from "node:http";
import { answerJson11 as answer, listenLocally } from "./listen.ts";

/** One entry as the SDK sent it (`AWSEvents.PutEvents`, AWS JSON 1.1). */
export interface PutEntry {
  readonly EventBusName?: string;
  readonly Source?: string;
  readonly DetailType?: string;
  readonly Detail?: string;
  readonly Resources?: string[];
  readonly Time?: number;
}

export interface EventBridgeStandIn {
  readonly endpoint: string;
  /** Every PutEvents call, in order, with its entries. */
  readonly calls: PutEntry[][];
  /** Entries accepted so far. */
  readonly accepted: PutEntry[];
  /** Refuse the next `count` entries (any calls) with this error code, as under throttling. */
  refuseNext(count: number, code?: string): void;
  close(): Promise<void>;
}

/**
 * Just enough of EventBridge's PutEvents for the real SDK client over HTTP on 127.0.0.1: it
 * keeps what it accepts, refuses entries when told (EventBridge answers 200 with per-entry
 * error codes and a FailedEntryCount), and enforces the 10-entry limit of one call.
 */
export async function startEventBridgeStandIn(): Promise<EventBridgeStandIn> {
  const calls: PutEntry[][] = [];
  const accepted: PutEntry[] = [];
  let refusals: { left: number; code: string } = { left: 0, code: "" };
  let sequence = 0;
  const server = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    if (req.method !== "POST" || req.headers["x-amz-target"] !== "AWSEvents.PutEvents") {
      return answer(res, 400, { __type: "InvalidAction" }, "InvalidAction");
    }
    const body = JSON.parse(Buffer.concat(chunks).toString("utf8") || "{}") as {
      Entries?: PutEntry[];
    };
    const entries = body.Entries ?? [];
    calls.push(entries);
    if (entries.length < 1 || entries.length > 10) {
      const message = "Entries must have between 1 and 10 items";
      return answer(res, 400, { __type: "ValidationException", message }, "ValidationException");
    }
    let failed = 0;
    const results = entries.map((entry) => {
      if (refusals.left > 0) {
        refusals = { ...refusals, left: refusals.left - 1 };
        failed += 1;
        return { ErrorCode: refusals.code, ErrorMessage: "refused by the stand-in" };
      }
      accepted.push(entry);
      sequence += 1;
      return { EventId: `event-${sequence}` };
    });
    answer(res, 200, { FailedEntryCount: failed, Entries: results });
  });
  const listening = await listenLocally(server);
  return {
    endpoint: listening.url,
    calls,
    accepted,
    refuseNext(count, code = "ThrottlingException") {
      refusals = { left: count, code };
    },
    close: listening.close,
  };
}
