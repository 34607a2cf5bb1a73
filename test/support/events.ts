import { inject } from "vitest";
import { startStreamPoller } from "../../functions/adapters/dynamodb/stream-poller.ts";
import { sessionChanges } from "../../functions/adapters/dynamodb/stream-records.ts";
import { MemoryEventSink } from "../../functions/adapters/memory/memory-event-sink.ts";
import type { UploadEvent } from "../../functions/bits/upload-event.ts";
import type { EventSink } from "../../functions/ports/event-sink.ts";
import { handleSessionChanges } from "../../functions/service/cleanup.ts";
import type { ServiceContext } from "../../functions/service/context.ts";
import { STAND_IN_CREDENTIALS, STAND_IN_REGION } from "../../infra/stand-ins.ts";
import { standInClients } from "./storage.ts";

/**
 * The stream function of a test's table, as Lambda's event source mapping runs the deployed
 * one: batches of the table's stream, in order, handed to the same code, and handed again when
 * they fail. `drain()` handles everything written so far.
 */
export async function streamFunction(
  table: string,
  context: ServiceContext,
  sink: EventSink = new MemoryEventSink(),
) {
  const { dynamodb } = standInClients();
  const loopErrors: unknown[] = [];
  const poller = await startStreamPoller({
    table,
    dynamodb,
    streams: {
      endpoint: inject("dynamodbEndpoint"),
      region: STAND_IN_REGION,
      credentials: STAND_IN_CREDENTIALS,
    },
    from: "start",
    // The loop is for servers; tests drain explicitly, so it idles.
    intervalMs: 60_000,
    handle: async (records) => {
      await handleSessionChanges(context, sessionChanges(records), sink);
    },
    // The loop's own reads may fail like a drain's; the next drain reads the batch again and
    // reports its failure to the test. Tests that make batches fail read them in `loopErrors`.
    onError: (error) => loopErrors.push(error),
  });
  return {
    /** What failed in the poller's own loop (its first read runs at once, before any drain). */
    loopErrors,
    /** Handles every record written so far; a failing batch stays for the next drain. */
    async drain(): Promise<void> {
      await poller.drain();
    },
    stop: () => poller.stop(),
  };
}

/** Reads a table's whole stream once and answers the events it yields. */
export async function eventsOf(table: string, context: ServiceContext): Promise<UploadEvent[]> {
  const sink = new MemoryEventSink();
  const stream = await streamFunction(table, context, sink);
  try {
    await stream.drain();
  } finally {
    await stream.stop();
  }
  return sink.delivered;
}
