import type { AttributeValue } from "@aws-sdk/client-dynamodb";
import type { DynamoDBStreamEvent } from "aws-lambda";
import type { SessionRecord } from "../../bits/session.ts";
import { fromItem } from "../dynamodb/session-item.ts";

export function isStreamEvent(event: unknown): event is DynamoDBStreamEvent {
  const records = (event as { Records?: unknown } | null)?.Records;
  return (
    Array.isArray(records) &&
    records.every((record) => (record as { eventSource?: string }).eventSource === "aws:dynamodb")
  );
}

/**
 * The sessions a DynamoDB stream batch says were removed: REMOVE records of session items,
 * read from their old image. The server never deletes session records itself, so these are
 * TTL expiries (or an operator's deletes), and their storage must go.
 */
export function removedSessions(event: DynamoDBStreamEvent): SessionRecord[] {
  return event.Records.flatMap((record) => {
    const image = record.dynamodb?.OldImage as Record<string, AttributeValue> | undefined;
    if (record.eventName !== "REMOVE" || !image?.pk?.S?.startsWith("S#")) return [];
    return [fromItem(image)];
  });
}
