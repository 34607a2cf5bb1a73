import {
  EventBridgeClient,
  PutEventsCommand,
  type PutEventsRequestEntry,
} from "@aws-sdk/client-eventbridge";
import type { UploadEvent } from "../../bits/upload-event.ts";
import type { EventSink } from "../../ports/event-sink.ts";

/** PutEvents takes at most 10 entries per call. */
const BATCH = 10;
const ATTEMPTS = 4;

/** EventBridge's refusal of some entries of a batch; the batch is delivered again. */
export class EventsNotAcceptedError extends Error {
  override name = "EventsNotAcceptedError";
}

/**
 * Events on an EventBridge bus. PutEvents may accept some entries of a call and refuse
 * others (throttling, an internal error): the refused ones are sent again a few times, then
 * the publish fails, so the stream delivers the batch again (docs/events.md).
 */
export class EventBridgeSink implements EventSink {
  constructor(
    private readonly client: Pick<EventBridgeClient, "send">,
    private readonly bus: string,
    private readonly source: string,
    private readonly wait = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms)),
  ) {}

  async publish(events: readonly UploadEvent[]): Promise<void> {
    for (let start = 0; start < events.length; start += BATCH) {
      await this.putBatch(events.slice(start, start + BATCH).map((event) => this.entry(event)));
    }
  }

  private entry(event: UploadEvent): PutEventsRequestEntry {
    return {
      EventBusName: this.bus,
      Source: this.source,
      DetailType: event.detailType,
      Time: new Date(event.time),
      Resources: [event.resource],
      Detail: JSON.stringify(event.detail),
    };
  }

  private async putBatch(entries: PutEventsRequestEntry[]) {
    let pending = entries;
    for (let attempt = 1; ; attempt++) {
      const out = await this.client.send(new PutEventsCommand({ Entries: pending }));
      if (!out.FailedEntryCount) return;
      // Results come in the order of the entries; a failed one has an ErrorCode.
      const failed = pending.filter((_, i) => out.Entries?.[i]?.ErrorCode !== undefined);
      if (attempt >= ATTEMPTS) {
        const codes = [...new Set(out.Entries?.map((e) => e.ErrorCode).filter(Boolean))];
        throw new EventsNotAcceptedError(
          `EventBridge refused ${failed.length} event(s): ${codes.join(", ")}`,
        );
      }
      pending = failed.length > 0 ? failed : pending;
      await this.wait(100 * 2 ** attempt);
    }
  }
}

export function eventBridgeSink(region: string, bus: string, source: string): EventBridgeSink {
  return new EventBridgeSink(new EventBridgeClient({ region }), bus, source);
}
