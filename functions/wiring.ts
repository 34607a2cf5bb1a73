import { setTimeout as sleep } from "node:timers/promises";
import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import { S3Client } from "@aws-sdk/client-s3";
import { v4 as uuidv4 } from "uuid";
import { DynamoDbSessionStore } from "./adapters/dynamodb/dynamodb-session-store.ts";
import { JsonLinesSink } from "./adapters/events/json-lines-sink.ts";
import { HttpNotifier } from "./adapters/notify/http-notifier.ts";
import { RoutingNotifier } from "./adapters/notify/notifier.ts";
import { S3ObjectStore } from "./adapters/s3/s3-object-store.ts";
import { FileSecret } from "./adapters/secrets/file-secret.ts";
import { RefreshingSecret } from "./adapters/secrets/refreshing-secret.ts";
import { ANONYMOUS, createAuthenticator } from "./auth/authenticator.ts";
import type { Authenticator, AuthMode } from "./auth/types.ts";
import { MAX_ASSEMBLED_BYTES } from "./bits/constants.ts";
import type { Config, LogLevel, SecretLocation } from "./config.ts";
import type { EventSink } from "./ports/event-sink.ts";
import type { Notifier } from "./ports/notifier.ts";
import type { Runtime } from "./ports/runtime.ts";
import type { SecretText } from "./ports/secrets.ts";
import type { ServiceContext } from "./service/context.ts";
import { currentRequest } from "./service/request-scope.ts";
import { createUploadService } from "./service/upload-service.ts";
import { WarmCache } from "./service/warm-cache.ts";

const RANK: Record<LogLevel, number> = { info: 0, warn: 1, error: 2, silent: 3 };

/**
 * Session IDs as IIS writes them: a braced, upper-case random (v4) GUID (docs/protocol.md,
 * "Session IDs").
 */
export const newSessionId = () => `{${uuidv4().toUpperCase()}}`;

/**
 * Structured JSON lines, one per event, to stdout (CloudWatch picks them up on Lambda). A line
 * written while a request is served carries that request's IDs, the audit line's `requestId` and
 * `invocation` (docs/security.md, "What is logged").
 */
export function jsonRuntime(
  level: LogLevel,
  write: (line: string) => void = (line) => console.log(line),
): Runtime {
  return {
    now: () => Date.now(),
    newSessionId,
    sleep: async (ms) => sleep(ms),
    log(eventLevel, message, fields = {}) {
      if (RANK[eventLevel] < RANK[level]) return;
      write(JSON.stringify({ level: eventLevel, message, ...currentRequest(), ...fields }));
    },
  };
}

export function awsClients(config: Config) {
  const s3 = new S3Client({
    region: config.region,
    // Bodies carry the CRC32C the server computed itself (docs/checksums.md) instead of the
    // SDK's default CRC trailers (s3-object-store.ts).
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

/**
 * Where a secret comes from. The SSM client is loaded only when a parameter is named: it is
 * about 200 KB of bundle that deployments without Basic or signed URLs never pay for at cold
 * start (esbuild splits it into its own chunk).
 */
export async function secretFrom(
  location: SecretLocation,
  config: Config,
  runtime: Runtime,
): Promise<SecretText> {
  let inner: SecretText;
  if (location.kind === "file") {
    inner = new FileSecret(location.path);
  } else {
    const { ssmSecret } = await import("./adapters/secrets/ssm-secret.ts");
    inner = ssmSecret(config.region, location.name);
  }
  return new RefreshingSecret(inner, {
    refreshMs: config.secretsRefreshSeconds * 1000,
    now: runtime.now,
  });
}

/**
 * The authenticator the configuration asks for. Its secrets are read once here, so a missing
 * parameter or a malformed htpasswd file stops the start instead of failing every request.
 */
export async function buildAuthenticator(
  config: Config,
  modes: readonly AuthMode[] | undefined,
  runtime: Runtime = jsonRuntime(config.logLevel),
): Promise<Authenticator> {
  if (modes === undefined || (modes.length === 1 && modes[0] === "anonymous")) return ANONYMOUS;
  const htpasswd = config.htpasswd && (await secretFrom(config.htpasswd, config, runtime));
  const urlKeys = config.urlKeys && (await secretFrom(config.urlKeys, config, runtime));
  const authenticator = createAuthenticator(modes, {
    realm: config.authRealm,
    ...(htpasswd ? { htpasswd } : {}),
    ...(urlKeys ? { urlKeys } : {}),
  });
  if (authenticator.ready) await authenticator.ready();
  return authenticator;
}

/**
 * The notifier, when a path notifies: HTTP(S) applications directly, Lambda functions through
 * the Lambda client, loaded only when a rule names one (like the SSM client).
 */
function notifierFor(config: Config): Notifier | undefined {
  const rules = config.notifications.filter((rule) => rule.type !== "none");
  if (rules.length === 0) return undefined;
  const http = new HttpNotifier();
  if (!rules.some((rule) => rule.url?.startsWith("lambda:"))) return http;
  return new RoutingNotifier({
    http,
    lambda: async () => {
      const { lambdaNotifier } = await import("./adapters/notify/lambda-notifier.ts");
      return lambdaNotifier(config.region);
    },
  });
}

/**
 * Where completion events go. The EventBridge client is loaded on first use, in its own esbuild
 * chunk: only the stream's function publishes, and the upload function never pays for it.
 */
export function eventSinkFor(config: Config): () => Promise<EventSink> {
  const { events } = config;
  let sink: Promise<EventSink> | undefined;
  const build = async (): Promise<EventSink> => {
    switch (events.kind) {
      case "none":
        return { publish: async () => {} };
      case "stdout":
        return JsonLinesSink.stdout(events.source);
      case "file":
        return JsonLinesSink.file(events.source, events.path);
      case "eventbridge": {
        const { eventBridgeSink } = await import("./adapters/events/eventbridge-sink.ts");
        return eventBridgeSink(config.region, events.bus, events.source);
      }
    }
  };
  return () => {
    sink ??= build();
    return sink;
  };
}

/**
 * Builds the service from configuration: the only place adapters meet the core. `standIn`
 * names the local emulation the clients talk to, set only by the local server
 * (functions/local.ts, BITS_STAND_INS); without it the server is written for AWS, and fauxqs's
 * workarounds are never taken (docs/platform.md, "Two emulations").
 */
export function buildContext(
  config: Config,
  runtime: Runtime = jsonRuntime(config.logLevel),
  clients: AwsClients = awsClients(config),
  authenticator: Authenticator = ANONYMOUS,
  options: { maxResponseBody?: number; standIn?: "fauxqs" | "moto" | undefined } = {},
) {
  const context: ServiceContext = {
    sessions: new DynamoDbSessionStore(clients.dynamodb, config.table, {
      counterShards: config.sessionCounterShards,
    }),
    objects: new S3ObjectStore(clients.s3, config.bucket, {
      fauxqsChecksums: options.standIn === "fauxqs",
    }),
    runtime,
    cache: config.warmCacheBytes > 0 ? new WarmCache(config.warmCacheBytes) : undefined,
    settings: {
      keyPrefix: config.keyPrefix,
      uploadPaths: config.uploadPaths,
      stagingPrefix: config.stagingPrefix,
      limits: {
        maxFragmentBytes: config.maxFragmentBytes,
        maxUploadBytes: config.maxUploadBytes,
        partSize: config.partSize,
        maxAssembledBytes: MAX_ASSEMBLED_BYTES,
      },
      allowOverwrite: config.allowOverwrite,
      sessionTimeoutSeconds: config.sessionTimeoutSeconds,
      tombstoneSeconds: config.tombstoneSeconds,
      caps: { perSlot: config.maxSessionsPerPrincipal, total: config.maxSessions },
      maxFragmentsPerMiB: config.maxFragmentsPerMiB,
      // Staging fragments are acknowledged without a record write (docs/durability.md).
      deferStagedRecords: true,
      principalPrefix: config.principalPrefix,
      overwritePrincipals: config.overwritePrincipals,
      joinedModes: config.joinedModes,
      bucket: config.bucket,
      notifications: config.notifications,
      notificationTimeoutMs: config.notificationTimeoutSeconds * 1000,
      maxReplyBytes: config.maxReplyBytes,
      replyPath: config.replyPath,
      publicOrigin: config.publicOrigin,
      maxResponseBody: options.maxResponseBody ?? Number.POSITIVE_INFINITY,
      metrics: config.metrics,
    },
    notifier: notifierFor(config),
  };
  return { context, clients, service: createUploadService(context, authenticator) };
}
