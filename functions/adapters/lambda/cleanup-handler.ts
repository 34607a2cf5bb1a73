import { cleanUpSession, sweep } from "../../service/cleanup.ts";
import type { ServiceContext } from "../../service/context.ts";
import { emfFields } from "../../service/metrics.ts";
import { isStreamEvent, removedSessions } from "./stream.ts";

/**
 * The cleanup function around one context: fed by the session table's stream, it releases the
 * storage of every session that DynamoDB's TTL removed; run on a schedule (any other event), it
 * sweeps for anything the stream missed. A failure throws, so Lambda retries the batch; every
 * step is idempotent.
 */
export function createCleanupHandler(context: ServiceContext) {
  const handle = async (event: unknown) => {
    if (isStreamEvent(event)) {
      const sessions = removedSessions(event);
      for (const record of sessions) await cleanUpSession(context, record, { removed: true });
      return { cleaned: sessions.length };
    }
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
