import type { EventSink } from "../../ports/event-sink.ts";
import { handleSessionChanges, sweep } from "../../service/cleanup.ts";
import type { ServiceContext } from "../../service/context.ts";
import { emfFields } from "../../service/metrics.ts";
import { changesOf, isStreamEvent } from "./stream.ts";

/**
 * The function behind the session table's stream, around one context: it announces every
 * ending and releases the storage of sessions that DynamoDB's TTL removed (docs/events.md).
 * Run on a schedule (any other event), it sweeps for anything the stream missed. A failure
 * throws, so Lambda retries the batch; every step is idempotent and events keep their IDs.
 */
export function createCleanupHandler(context: ServiceContext, sink: () => Promise<EventSink>) {
  const handle = async (event: unknown) => {
    if (isStreamEvent(event)) return handleSessionChanges(context, changesOf(event), await sink());
    return sweep(context);
  };
  return async (event: unknown) => {
    try {
      return await handle(event);
    } catch (error) {
      // Counted for the cleanup alarm, then thrown so that Lambda retries (docs/monitoring.md).
      context.runtime.log("error", "cleanup failed", {
        error: error instanceof Error ? `${error.name}: ${error.message}` : String(error),
        ...emfFields(
          context.settings.metrics,
          [{ name: "CleanupFailures", value: 1, unit: "Count" }],
          context.runtime.now(),
        ),
      });
      throw error;
    }
  };
}
