import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import { S3Client } from "@aws-sdk/client-s3";
import { v4 as uuidv4 } from "uuid";
import { DynamoDbSessionStore } from "./adapters/dynamodb/dynamodb-session-store.ts";
import { S3ObjectStore } from "./adapters/s3/s3-object-store.ts";
import type { Config, LogLevel } from "./config.ts";
import type { Runtime } from "./ports/runtime.ts";
import type { ServiceContext } from "./service/context.ts";
import { createUploadService } from "./service/upload-service.ts";
import { WarmCache } from "./service/warm-cache.ts";

/**
 * Staged bytes a warm instance keeps to build parts without reading them back: a part's worth
 * for a few concurrent sessions (a Lambda instance serves one request at a time).
 */
const WARM_STAGED_BYTES = 64 * 1024 * 1024;

const RANK: Record<LogLevel, number> = { info: 0, warn: 1, error: 2, silent: 3 };

/** Session IDs as IIS writes them: a braced, upper-case random (v4) GUID (Project decisions). */
export const newSessionId = () => `{${uuidv4().toUpperCase()}}`;

/** Structured JSON lines, one per event, to stdout (CloudWatch picks them up on Lambda). */
export function jsonRuntime(level: LogLevel): Runtime {
  return {
    now: () => Date.now(),
    newSessionId,
    log(eventLevel, message, fields = {}) {
      if (RANK[eventLevel] < RANK[level]) return;
      console.log(JSON.stringify({ level: eventLevel, message, ...fields }));
    },
  };
}

export function awsClients(config: Config) {
  const s3 = new S3Client({
    region: config.region,
    // Bodies carry Content-MD5 instead of the SDK's default CRC trailers (s3-object-store.ts).
    requestChecksumCalculation: "WHEN_REQUIRED",
    responseChecksumValidation: "WHEN_REQUIRED",
    ...(config.s3Endpoint ? { endpoint: config.s3Endpoint, forcePathStyle: true } : {}),
  });
  const dynamodb = new DynamoDBClient({
    region: config.region,
    ...(config.dynamodbEndpoint ? { endpoint: config.dynamodbEndpoint } : {}),
  });
  return { s3, dynamodb };
}

export type AwsClients = ReturnType<typeof awsClients>;

/** Builds the service from configuration: the only place adapters meet the core. */
export function buildContext(
  config: Config,
  runtime: Runtime = jsonRuntime(config.logLevel),
  clients: AwsClients = awsClients(config),
) {
  const context: ServiceContext = {
    sessions: new DynamoDbSessionStore(clients.dynamodb, config.table),
    objects: new S3ObjectStore(clients.s3, config.bucket),
    runtime,
    cache: new WarmCache(WARM_STAGED_BYTES),
    settings: {
      keyPrefix: config.keyPrefix,
      uploadPaths: config.uploadPaths,
      stagingPrefix: config.stagingPrefix,
      limits: {
        maxFragmentBytes: config.maxFragmentBytes,
        maxUploadBytes: config.maxUploadBytes,
        partSize: config.partSize,
      },
      allowOverwrite: config.allowOverwrite,
      sessionTimeoutSeconds: config.sessionTimeoutSeconds,
      tombstoneSeconds: config.tombstoneSeconds,
    },
  };
  return { context, clients, service: createUploadService(context) };
}
