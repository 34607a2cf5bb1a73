import type { UploadEvent } from "../../bits/upload-event.ts";
import type { EventSink } from "../../ports/event-sink.ts";

/** Keeps every delivery, duplicates included, for tests to read. */
export class MemoryEventSink implements EventSink {
  readonly delivered: UploadEvent[] = [];

  async publish(events: readonly UploadEvent[]): Promise<void> {
    this.delivered.push(...events);
  }
}
