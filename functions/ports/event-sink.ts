import type { UploadEvent } from "../bits/upload-event.ts";

/**
 * Where completion events go (docs/events.md): EventBridge when deployed, JSON lines locally.
 * `publish` resolves once every event is accepted and throws otherwise; the caller then
 * delivers the whole batch again, which is safe because each event carries a stable ID.
 */
export interface EventSink {
  publish(events: readonly UploadEvent[]): Promise<void>;
}
