import type { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import type { S3Client } from "@aws-sdk/client-s3";

/** What the server asked of S3 and DynamoDB, counted by middleware on the SDK clients. */
export interface Counts {
  /** S3 requests billed in the PUT/COPY/POST/LIST class. */
  s3Put: number;
  /** S3 requests billed in the GET/HEAD class. */
  s3Get: number;
  /** S3 DELETE requests (free). */
  s3Delete: number;
  s3BytesWritten: number;
  s3BytesRead: number;
  dynamodbRequests: number;
  /** On-demand read request units (4 KB each, strongly consistent). */
  dynamodbReadUnits: number;
  /** On-demand write request units (1 KB each). */
  dynamodbWriteUnits: number;
  /** Milliseconds spent waiting on S3 calls, summed (calls made in parallel add up). */
  s3Ms: number;
  /** Milliseconds spent waiting on DynamoDB calls, summed. */
  dynamodbMs: number;
}

export const noCounts = (): Counts => ({
  s3Put: 0,
  s3Get: 0,
  s3Delete: 0,
  s3BytesWritten: 0,
  s3BytesRead: 0,
  dynamodbRequests: 0,
  dynamodbReadUnits: 0,
  dynamodbWriteUnits: 0,
  s3Ms: 0,
  dynamodbMs: 0,
});

/** Adds `more` to `into`, field by field. */
export function addCounts(into: Counts, more: Counts): void {
  for (const key of Object.keys(into) as (keyof Counts)[]) into[key] += more[key];
}

const S3_GET_CLASS = new Set(["GetObjectCommand", "HeadObjectCommand"]);
const S3_FREE = new Set([
  "DeleteObjectCommand",
  "DeleteObjectsCommand",
  "AbortMultipartUploadCommand",
]);

/** Approximate DynamoDB item size: attribute names plus values, as DynamoDB bills it. */
function itemBytes(item: Record<string, Record<string, unknown>> | undefined): number {
  let bytes = 0;
  for (const [name, value] of Object.entries(item ?? {})) {
    bytes += name.length;
    for (const inner of Object.values(value)) bytes += String(inner).length;
  }
  return bytes;
}

// biome-ignore lint/suspicious/noExplicitAny: one middleware serves both clients' stacks.
type Middleware = (next: any, context: { commandName?: string }) => (args: any) => Promise<any>;

export interface Meter {
  readonly counts: Counts;
  reset(): void;
}

/** Adds counting middleware to the clients the service uses. */
export function meter(s3: S3Client, dynamodb: DynamoDBClient): Meter {
  let counts = noCounts();
  const s3Counter: Middleware = (next, context) => async (args) => {
    const name = context.commandName ?? "";
    const input = args.input as { Body?: Uint8Array };
    if (S3_GET_CLASS.has(name)) counts.s3Get += 1;
    else if (S3_FREE.has(name)) counts.s3Delete += 1;
    else counts.s3Put += 1;
    if (input.Body instanceof Uint8Array) counts.s3BytesWritten += input.Body.length;
    const started = performance.now();
    const result = await next(args).finally(() => {
      counts.s3Ms += performance.now() - started;
    });
    if (name === "GetObjectCommand") {
      counts.s3BytesRead += (result.output as { ContentLength?: number }).ContentLength ?? 0;
    }
    return result;
  };
  const dynamodbCounter: Middleware = (next, context) => async (args) => {
    const name = context.commandName ?? "";
    const input = args.input as {
      Item?: Record<string, Record<string, unknown>>;
      RequestItems?: Record<string, unknown[] | { Keys?: unknown[] }>;
    };
    counts.dynamodbRequests += 1;
    const started = performance.now();
    const result = await next(args).finally(() => {
      counts.dynamodbMs += performance.now() - started;
    });
    if (name === "GetItemCommand") {
      const item = (result.output as { Item?: Record<string, Record<string, unknown>> }).Item;
      counts.dynamodbReadUnits += Math.max(1, Math.ceil(itemBytes(item) / 4096));
    } else if (name === "PutItemCommand") {
      counts.dynamodbWriteUnits += Math.max(1, Math.ceil(itemBytes(input.Item) / 1024));
    } else if (name === "BatchWriteItemCommand" || name === "BatchGetItemCommand") {
      for (const requests of Object.values(input.RequestItems ?? {})) {
        const n = Array.isArray(requests) ? requests.length : (requests.Keys?.length ?? 0);
        if (name === "BatchWriteItemCommand") counts.dynamodbWriteUnits += n;
        else counts.dynamodbReadUnits += n;
      }
    }
    return result;
  };
  s3.middlewareStack.add(s3Counter, { step: "initialize", name: "benchMeter" });
  dynamodb.middlewareStack.add(dynamodbCounter as never, {
    step: "initialize",
    name: "benchMeter",
  });
  return {
    get counts() {
      return counts;
    },
    reset() {
      counts = noCounts();
    },
  };
}
