import type { EventSink } from "../../ports/event-sink.ts";
import { redactIds } from "../../service/call.ts";
import { handleSessionChanges, sweep } from "../../service/cleanup.ts";
import type { ServiceContext } from "../../service/context.ts";
import { emfFields } from "../../service/metrics.ts";
import { inRequest } from "../../service/request-scope.ts";
import { changesOf, isStreamEvent } from "./stream.ts";

/**
 * Time a sweep leaves before the function's timeout (900 s, serverless.yml): enough to finish
 * the page it is on and save its position (docs/cleanup.md).
 */
export const SWEEP_MARGIN_MS = 30_000;

/** What the handler uses of Lambda's context object. */
export interface LambdaTime {
  getRemainingTimeInMillis(): number;
  /** The invocation's ID, which every line it logs carries. */
  readonly awsRequestId?: string;
}

/**
 * The function behind the session table's stream, around one context: it announces every
 * ending and releases the storage of sessions that DynamoDB's TTL removed (docs/events.md).
 * Run on a schedule (any other event), it sweeps for anything the stream missed, until shortly
 * before its timeout; the next run resumes where it stopped. A failure
 * throws, so Lambda retries the batch; every step is idempotent and events keep their IDs.
 */
export function createCleanupHandler(context: ServiceContext, sink: () => Promise<EventSink>) {
  const handle = async (event: unknown, lambda: LambdaTime | undefined) => {
    if (isStreamEvent(event)) return handleSessionChanges(context, changesOf(event), await sink());
    const remainingMs = lambda && (() => lambda.getRemainingTimeInMillis() - SWEEP_MARGIN_MS);
    return sweep(context, { remainingMs });
  };
  return (event: unknown, lambda?: LambdaTime) =>
    inRequest({ invocation: lambda?.awsRequestId }, async () => {
      try {
        return await handle(event, lambda);
      } catch (error) {
        // Counted for the cleanup alarm, then thrown so that Lambda retries (docs/monitoring.md).
        context.runtime.log("error", "cleanup failed", {
          error: redactIds(
            error instanceof Error ? `${error.name}: ${error.message}` : String(error),
          ),
          ...emfFields(
            context.settings.metrics,
            [{ name: "CleanupFailures", value: 1, unit: "Count" }],
            context.runtime.now(),
          ),
        });
        throw error;
      }
    });
}
