import type { Counts } from "./meter.ts";

/** AWS list prices, us-east-1, on demand (docs/platform.md, "Prices"; Lambda arm64). */
export const PRICES = {
  s3PutPer1000: 0.005,
  s3GetPer1000: 0.0004,
  dynamodbWritePerMillion: 0.625,
  dynamodbReadPerMillion: 0.125,
  lambdaRequestPerMillion: 0.2,
  lambdaArmGbSecond: 0.0000133334,
} as const;

const GB = 1e9;

/**
 * Dollars per GB uploaded: the S3 and DynamoDB requests counted for one upload, plus Lambda
 * requests and GB-seconds (handler time at the configured memory), scaled from the file's size
 * to 1 GB. The front door (ALB LCUs) is not included: see docs/costs.md.
 */
export function usdPerGB(
  counts: Counts,
  uploadedBytes: number,
  lambda: { requests: number; handlerSeconds: number; memoryMB: number },
): number {
  const dollars =
    (counts.s3Put / 1000) * PRICES.s3PutPer1000 +
    (counts.s3Get / 1000) * PRICES.s3GetPer1000 +
    (counts.dynamodbWriteUnits / 1e6) * PRICES.dynamodbWritePerMillion +
    (counts.dynamodbReadUnits / 1e6) * PRICES.dynamodbReadPerMillion +
    (lambda.requests / 1e6) * PRICES.lambdaRequestPerMillion +
    lambda.handlerSeconds * (lambda.memoryMB / 1024) * PRICES.lambdaArmGbSecond;
  return (dollars * GB) / uploadedBytes;
}
