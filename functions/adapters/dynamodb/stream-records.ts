import type { AttributeValue } from "@aws-sdk/client-dynamodb";
import type { SessionChange } from "../../bits/upload-event.ts";
import { fromItem } from "./session-item.ts";

/**
 * A stream record as both Lambda's event and the DynamoDB Streams API give it: the images are
 * the same attribute-value maps the table holds (view type NEW_AND_OLD_IMAGES).
 */
export interface StreamRecordLike {
  readonly eventName?: string | undefined;
  readonly dynamodb?:
    | {
        readonly OldImage?: Record<string, unknown> | undefined;
        readonly NewImage?: Record<string, unknown> | undefined;
      }
    | undefined;
}

type Item = Record<string, AttributeValue>;

const sessionImage = (image: Record<string, unknown> | undefined) => {
  const item = image as Item | undefined;
  return item?.pk?.S?.startsWith("S#") ? fromItem(item) : undefined;
};

/** The changes of session records in a batch, in stream order; other items are skipped. */
export function sessionChanges(records: readonly StreamRecordLike[]): SessionChange[] {
  return records.flatMap((record) => {
    const before = sessionImage(record.dynamodb?.OldImage);
    const after =
      record.eventName === "REMOVE" ? undefined : sessionImage(record.dynamodb?.NewImage);
    return before === undefined && after === undefined ? [] : [{ before, after }];
  });
}
