import { appendFile } from "node:fs/promises";
import type { UploadEvent } from "../../bits/upload-event.ts";
import type { EventSink } from "../../ports/event-sink.ts";

/**
 * An event as one JSON line, shaped like the event EventBridge delivers to a rule's target
 * (`detail-type`, `source`, `resources`, `detail`), so what `npm start` prints is what a rule
 * would match after deployment.
 */
export function eventLine(event: UploadEvent, source: string): string {
  return JSON.stringify({
    "detail-type": event.detailType,
    source,
    time: new Date(event.time).toISOString(),
    resources: [event.resource],
    detail: event.detail,
  });
}

/** Events on the server's standard output (the default locally) or appended to a file. */
export class JsonLinesSink implements EventSink {
  constructor(
    private readonly source: string,
    private readonly write: (text: string) => Promise<void> | void,
  ) {}

  static stdout(source: string): JsonLinesSink {
    return new JsonLinesSink(source, (text) => {
      process.stdout.write(text);
    });
  }

  static file(source: string, path: string): JsonLinesSink {
    return new JsonLinesSink(source, (text) => appendFile(path, text));
  }

  async publish(events: readonly UploadEvent[]): Promise<void> {
    if (events.length === 0) return;
    // One write per batch: lines of concurrent batches never interleave mid-line.
    await this.write(events.map((event) => `${eventLine(event, this.source)}\n`).join(""));
  }
}
