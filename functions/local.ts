import { readFileSync } from "node:fs";
import type { TlsOptions } from "node:tls";
import {
  createBucket,
  createSessionTable,
  motoS3,
  standInDynamoDb,
  standInS3,
  startDynamoDbStandIn,
  startMoto,
  startS3StandIn,
} from "../infra/stand-ins.ts";
import { startStreamPoller } from "./adapters/dynamodb/stream-poller.ts";
import { sessionChanges } from "./adapters/dynamodb/stream-records.ts";
import { startLocalServer } from "./adapters/node/local-server.ts";
import { localTarget, localTargetPath, writeLocalTarget } from "./adapters/node/local-target.ts";
import { type Config, ConfigError, loadConfig } from "./config.ts";
import type { Runtime } from "./ports/runtime.ts";
import { handleSessionChanges, sweep } from "./service/cleanup.ts";
import type { ServiceContext } from "./service/context.ts";
import { buildAuthenticator, buildContext, eventSinkFor, jsonRuntime } from "./wiring.ts";

const LOOPBACK_HOSTS = new Set(["127.0.0.1", "::1", "localhost"]);

/** HTTPS for the local server: BITS_TLS_CERT and BITS_TLS_KEY (PEM), BITS_TLS_CA for clients. */
function tlsOptions(env: NodeJS.ProcessEnv): TlsOptions | undefined {
  const cert = env.BITS_TLS_CERT?.trim();
  const key = env.BITS_TLS_KEY?.trim();
  const ca = env.BITS_TLS_CA?.trim();
  if (!cert && !key && !ca) return undefined;
  if (!cert || !key) throw new ConfigError("BITS_TLS_CERT and BITS_TLS_KEY go together");
  const read = (path: string) => readFileSync(path);
  return {
    cert: read(cert),
    key: read(key),
    // A certificate is asked for, not required: clients without one may still use Basic.
    ...(ca ? { ca: read(ca), requestCert: true, rejectUnauthorized: false } : {}),
  };
}

/**
 * `npm start`: the upload server on 127.0.0.1:$PORT. Unless told otherwise it starts its own
 * stand-ins (fauxqs for S3, DynamoDB Local for DynamoDB) and creates the bucket and table;
 * BITS_S3_ENDPOINT / BITS_DYNAMODB_ENDPOINT point it elsewhere (BITS_STAND_INS=external when
 * those are stand-ins run separately), BITS_STAND_INS=moto on one moto_server (its own, or the
 * one both endpoints name), BITS_STAND_INS=none at AWS.
 */
async function main() {
  const env = process.env;
  const config = loadConfig(env, { BITS_BUCKET: "bits-uploads", BITS_TABLE: "bits-sessions" });
  const standIns = (env.BITS_STAND_INS ?? "auto").toLowerCase();
  if (!["auto", "none", "external", "moto"].includes(standIns)) {
    throw new ConfigError("BITS_STAND_INS must be auto, external, moto or none");
  }
  if (standIns === "external" && (!config.s3Endpoint || !config.dynamodbEndpoint)) {
    throw new ConfigError(
      "BITS_STAND_INS=external needs BITS_S3_ENDPOINT and BITS_DYNAMODB_ENDPOINT (stand-ins run elsewhere)",
    );
  }
  const port = Number(env.PORT ?? 8080);
  if (!Number.isInteger(port) || port < 0 || port > 65535)
    throw new ConfigError("PORT must be a port number");
  const host = env.HOST ?? "127.0.0.1";
  const tls = tlsOptions(env);
  // On loopback nobody else can reach the server, so no auth is needed. Anywhere else the
  // operator must choose, and anonymous only when named (docs/security.md).
  if (config.auth === undefined && !LOOPBACK_HOSTS.has(host)) {
    throw new ConfigError(
      `HOST=${host} is reachable from other machines: set BITS_AUTH (basic, signed-url, client-cert), or BITS_AUTH=anonymous to allow anyone`,
    );
  }
  if (config.auth?.includes("basic") && !tls && !LOOPBACK_HOSTS.has(host)) {
    throw new ConfigError(
      "BITS_AUTH=basic off loopback needs TLS: set BITS_TLS_CERT and BITS_TLS_KEY",
    );
  }
  if (config.auth?.includes("client-cert") && !tls?.ca) {
    throw new ConfigError(
      "BITS_AUTH=client-cert needs BITS_TLS_CA (and BITS_TLS_CERT, BITS_TLS_KEY)",
    );
  }
  const runtime = jsonRuntime(config.logLevel);
  const authenticator = await buildAuthenticator(config, config.auth, runtime);

  const stops: (() => Promise<void>)[] = [];
  let clients: ReturnType<typeof buildContext>["clients"] | undefined;
  let effective = config;
  let standIn: "fauxqs" | "moto" | undefined = "fauxqs";
  if (standIns === "moto") {
    // One moto_server for S3 and DynamoDB (docs/platform.md, "Two emulations").
    const own = !config.s3Endpoint || !config.dynamodbEndpoint ? await startMoto() : undefined;
    if (own) stops.push(own.stop);
    const endpoint = own?.endpoint;
    effective = {
      ...config,
      s3Endpoint: endpoint ?? config.s3Endpoint,
      dynamodbEndpoint: endpoint ?? config.dynamodbEndpoint,
    };
    clients = {
      s3: motoS3(effective.s3Endpoint as string),
      dynamodb: standInDynamoDb(effective.dynamodbEndpoint as string),
    };
    standIn = "moto";
    if (own) {
      await createBucket(clients.s3, config.bucket);
      await createSessionTable(clients.dynamodb, config.table);
    }
  } else if (standIns === "auto" && (!config.s3Endpoint || !config.dynamodbEndpoint)) {
    const [s3, dynamodb] = await Promise.all([
      config.s3Endpoint ? undefined : startS3StandIn(),
      config.dynamodbEndpoint ? undefined : startDynamoDbStandIn(),
    ]);
    if (s3) stops.push(s3.stop);
    if (dynamodb) stops.push(dynamodb.stop);
    effective = {
      ...config,
      s3Endpoint: config.s3Endpoint ?? s3?.endpoint,
      dynamodbEndpoint: config.dynamodbEndpoint ?? dynamodb?.endpoint,
    };
    clients = {
      s3: standInS3(effective.s3Endpoint as string),
      dynamodb: standInDynamoDb(effective.dynamodbEndpoint as string),
    };
    if (s3) await createBucket(clients.s3, config.bucket);
    if (dynamodb) await createSessionTable(clients.dynamodb, config.table);
  } else if (standIns === "external") {
    // fauxqs and DynamoDB Local run by someone else: the same clients as for our own, with
    // what they do in place of what fauxqs lacks (docs/platform.md).
    clients = {
      s3: standInS3(config.s3Endpoint as string),
      dynamodb: standInDynamoDb(config.dynamodbEndpoint as string),
    };
  }
  if (clients === undefined) standIn = undefined;
  const built = buildContext(effective, runtime, clients, authenticator, { standIn });
  const { service, context } = built;
  const streamFunction = await startStreamFunction(effective, context, built.clients, runtime, {
    ownTable: clients !== undefined && effective.dynamodbEndpoint !== config.dynamodbEndpoint,
  });
  stops.unshift(streamFunction.stop);
  const server = await startLocalServer(
    {
      service,
      objects: context.objects,
      keyRules: { keyPrefix: config.keyPrefix, reservedPrefix: config.stagingPrefix },
      maxBodyBytes: config.maxFragmentBytes,
      replyPath: config.replyPath,
      tls,
    },
    port,
    host,
  );
  // Where the operator's tools find this server's table and bucket (README, "Operating it"),
  // written before the line that says the server is up.
  const targetPath = localTargetPath(env);
  if (targetPath !== undefined) {
    const remove = writeLocalTarget(
      targetPath,
      localTarget(effective, server.url, clients !== undefined),
    );
    process.once("exit", remove);
  }
  console.log(
    `BITS upload server listening on ${server.url}/ (auth ${config.auth?.join(",") ?? "none, loopback only"}; S3 ${effective.s3Endpoint ?? "AWS"} bucket ${config.bucket}, DynamoDB ${effective.dynamodbEndpoint ?? "AWS"} table ${config.table})`,
  );
  const shutdown = async () => {
    await server.close();
    await Promise.all(stops.map((stop) => stop()));
    process.exit(0);
  };
  process.once("SIGINT", shutdown);
  process.once("SIGTERM", shutdown);
}

/**
 * What the deployed stream function does, in this process: the table's stream announces every
 * session's ending (as JSON lines on stdout unless BITS_EVENTS says otherwise) and releases
 * what TTL removed; a sweep every BITS_SWEEP_INTERVAL seconds ends expired sessions, as the
 * deployed schedule does (docs/events.md). Against a table this process did not create (AWS, or
 * another endpoint) it reads only what is written from now on and sweeps only when asked: the
 * deployed stack does both for its own table.
 */
async function startStreamFunction(
  config: Config,
  context: ServiceContext,
  clients: ReturnType<typeof buildContext>["clients"],
  runtime: Runtime,
  { ownTable }: { ownTable: boolean },
) {
  const raw = process.env.BITS_SWEEP_INTERVAL?.trim() || (ownTable ? "60" : "0");
  const interval = Number(raw);
  if (!Number.isSafeInteger(interval) || interval < 0) {
    throw new ConfigError(`BITS_SWEEP_INTERVAL=${JSON.stringify(raw)} must be whole seconds >= 0`);
  }
  const sink = eventSinkFor(config);
  const report = (what: string) => (error: unknown) =>
    runtime.log("error", what, { error: error instanceof Error ? error.message : String(error) });
  const poller = await startStreamPoller({
    table: config.table,
    dynamodb: clients.dynamodb,
    // The table's own client settings: the same endpoint, region and credentials.
    streams: {
      region: clients.dynamodb.config.region,
      credentials: clients.dynamodb.config.credentials,
      ...(config.dynamodbEndpoint ? { endpoint: config.dynamodbEndpoint } : {}),
    },
    from: ownTable ? "start" : "now",
    handle: async (records) => {
      await handleSessionChanges(context, sessionChanges(records), await sink());
    },
    onError: report("stream batch failed; it is handled again"),
  }).catch((error: unknown) => {
    // A table without a stream still serves uploads; only the announcements are missing.
    runtime.log("warn", "no completion events: the table's stream cannot be read", {
      error: error instanceof Error ? error.message : String(error),
    });
    return undefined;
  });
  // One sweep at a time: runs share the position a sweep saves (docs/cleanup.md).
  let sweeping = false;
  const sweepOnce = () => {
    if (sweeping) return;
    sweeping = true;
    sweep(context)
      .catch(report("sweep failed"))
      .finally(() => {
        sweeping = false;
      });
  };
  const timer = interval > 0 ? setInterval(sweepOnce, interval * 1000) : undefined;
  timer?.unref();
  return {
    stop: async () => {
      if (timer) clearInterval(timer);
      await poller?.stop();
    },
  };
}

main().catch((error: unknown) => {
  console.error(
    error instanceof Error && !(error as { $metadata?: unknown }).$metadata ? error.message : error,
  );
  process.exit(1);
});
