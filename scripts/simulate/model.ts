/**
 * The fleet simulation's fixed facts: the front doors, the kinds of request it costs, and the
 * limits AWS documents (sources in docs/capacity.md, "The model").
 */

export type FrontDoor = "alb" | "http-api";

/**
 * Largest body each front door hands to Lambda, and the server's per-request maximum
 * (BITS_MAX_FRAGMENT_SIZE) the deployment sets for it. A larger body is refused by the front
 * door itself (413) before the function runs.
 */
export const FRONT_DOORS: Record<
  FrontDoor,
  { readonly bodyLimit: number; readonly serverMaxFragment: number }
> = {
  // ALB with a Lambda target: 1 MB request body.
  alb: { bodyLimit: 1_000_000, serverMaxFragment: 1_000_000 },
  // HTTP API takes 10 MB, but Lambda's 6 MB invoke payload carries the body in base64.
  "http-api": { bodyLimit: 4_400_000, serverMaxFragment: 4 * 1024 * 1024 },
};

/** Kinds of request, each with its own storage calls (profile.json). */
export type RequestClass = "create" | "fragment" | "fragmentPart" | "fragmentFinal" | "close";

export const REQUEST_CLASSES: readonly RequestClass[] = [
  "create",
  "fragment",
  "fragmentPart",
  "fragmentFinal",
  "close",
];

/**
 * A fragment [start, end) of a `total`-byte file: the final one completes the upload, one that
 * reaches a part boundary uploads a part, any other is only staged.
 */
export function fragmentClass(
  start: number,
  end: number,
  total: number,
  partSize: number,
): RequestClass {
  if (end >= total) return "fragmentFinal";
  return Math.floor(end / partSize) > Math.floor(start / partSize) ? "fragmentPart" : "fragment";
}

/** Windows BITS fragments: never below 5 KB, never above 13 MB ([MC-BUP] notes <10>, <16>). */
export const MIN_FRAGMENT = 5 * 1024;
export const MAX_CLIENT_FRAGMENT = 13_000_000;

/** Limits AWS documents; each is cited in docs/capacity.md. */
export const AWS = {
  /** Lambda: a function's concurrency grows by 1,000 execution environments every 10 s. */
  lambdaBurstPer10s: 1_000,
  /** Lambda: default account concurrency per Region. */
  accountConcurrency: 1_000,
  /** DynamoDB: one partition (and so one item) serves 1,000 WCU and 3,000 RCU per second. */
  partitionWcu: 1_000,
  partitionRcu: 3_000,
  /** DynamoDB on demand: a new table takes 4,000 WCU / 12,000 RCU at once, then doubles its peak. */
  onDemandInitialWcu: 4_000,
  onDemandInitialRcu: 12_000,
  /** DynamoDB on demand: up to double the previous peak, reached after 30 minutes. */
  onDemandPeakWindowSeconds: 1_800,
  /** S3: per prefix, 3,500 PUT/COPY/POST/DELETE and 5,500 GET/HEAD requests per second. */
  s3PutPerPrefix: 3_500,
  s3GetPerPrefix: 5_500,
} as const;

/** Milliseconds one storage call takes in AWS, typical (docs/capacity.md, "Latencies"). */
export const LATENCY_MS = {
  dynamodb: 6,
  s3Put: 40,
  s3Get: 20,
  s3Delete: 20,
  /** Handler work outside storage calls: parsing, CRC32C, copying bytes, per MiB of body. */
  cpuPerRequest: 2,
  cpuPerMiB: 4,
  /** S3 PUT of a body: bytes per millisecond from a Lambda function (about 100 MB/s). */
  s3BytesPerMs: 100_000,
} as const;
