import type { DynamoDBStreamEvent } from "aws-lambda";
import type { SessionChange } from "../../bits/upload-event.ts";
import { sessionChanges } from "../dynamodb/stream-records.ts";

export function isStreamEvent(event: unknown): event is DynamoDBStreamEvent {
  const records = (event as { Records?: unknown } | null)?.Records;
  return (
    Array.isArray(records) &&
    records.every((record) => (record as { eventSource?: string }).eventSource === "aws:dynamodb")
  );
}

/** The session changes of a stream batch: every write and every removal (TTL expiries). */
export function changesOf(event: DynamoDBStreamEvent): SessionChange[] {
  return sessionChanges(event.Records);
}
