import { readFileSync } from "node:fs";
import { createServer } from "node:net";
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
import { type ConnectionLimits, DEFAULT_LIMITS } from "./adapters/node/bits-front.ts";
import { startLocalServer } from "./adapters/node/local-server.ts";
import { localTarget, localTargetPath, writeLocalTarget } from "./adapters/node/local-target.ts";
import { type Config, ConfigError, loadConfig } from "./config.ts";
import type { Runtime } from "./ports/runtime.ts";
import { handleSessionChanges, sweep } from "./service/cleanup.ts";
import type { ServiceContext } from "./service/context.ts";
import { authorizeRead } from "./service/upload-service.ts";
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
 *
 * The process owns what it starts (docs/local-server.md, "Starting and stopping"): everything
 * it starts is stopped on SIGINT and SIGTERM, when its parent is gone, and when the start fails
 * (a port already taken fails before anything starts); DynamoDB Local
 * also ends by itself when this process is gone (infra/stand-ins.ts).
 */
async function main(owned: Owned) {
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
  const limits = connectionLimits(env);
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
  await portAvailable(port, host);
  const runtime = jsonRuntime(config.logLevel);
  const authenticator = await buildAuthenticator(config, config.auth, runtime);

  let clients: ReturnType<typeof buildContext>["clients"] | undefined;
  let effective = config;
  let standIn: "fauxqs" | "moto" | undefined = "fauxqs";
  if (standIns === "moto") {
    // One moto_server for S3 and DynamoDB (docs/platform.md, "Two emulations").
    const own = !config.s3Endpoint || !config.dynamodbEndpoint ? await startMoto() : undefined;
    if (own) owned.add(own.stop);
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
    const starting = [
      config.s3Endpoint ? undefined : startS3StandIn(),
      config.dynamodbEndpoint ? undefined : startDynamoDbStandIn(),
    ];
    // Each one is owned as soon as it runs, even when the other fails to start.
    for (const started of starting) started?.then((running) => owned.add(running.stop), noop);
    const [s3, dynamodb] = await Promise.all(starting);
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
  owned.add(streamFunction.stop);
  const server = await startLocalServer(
    {
      service,
      objects: context.objects,
      maxBodyBytes: config.maxFragmentBytes,
      replyPath: config.replyPath,
      tls,
      limits,
      authorizeRead: (request) => authorizeRead(context, authenticator, request),
    },
    port,
    host,
  );
  owned.add(server.close);
  // Where the operator's tools find this server's table and bucket (docs/local-server.md),
  // written before the line that says the server is up.
  const targetPath = localTargetPath(env);
  if (targetPath !== undefined) {
    const remove = writeLocalTarget(
      targetPath,
      localTarget(effective, server.url, clients !== undefined),
      server.port,
    );
    owned.add(async () => remove());
    process.once("exit", remove);
  }
  console.log(
    `BITS upload server listening on ${server.url}/ (auth ${config.auth?.join(",") ?? "none, loopback only"}; S3 ${effective.s3Endpoint ?? "AWS"} bucket ${config.bucket}, DynamoDB ${effective.dynamodbEndpoint ?? "AWS"} table ${config.table})`,
  );
}

const noop = () => {};

/**
 * Fails with the listen error (EADDRINUSE) when the port is taken, before the stand-ins take
 * their time to start; the server's own listen later is what holds the port.
 */
async function portAvailable(port: number, host: string) {
  if (port === 0) return;
  await new Promise<void>((resolve, reject) => {
    const probe = createServer();
    probe.once("error", reject);
    probe.listen(port, host, () => probe.close(() => resolve()));
  });
}

/** What this process started, stopped in the reverse order, once. */
class Owned {
  readonly #stops: (() => Promise<void>)[] = [];
  #stopping: Promise<void> | undefined;

  add(stop: () => Promise<void>) {
    this.#stops.unshift(stop);
  }

  /** Stops everything (each at most once, failures reported), then exits with `code`. */
  exit(code: number): Promise<void> {
    this.#stopping ??= (async () => {
      // Bounded: a stop that hangs must not keep the process, and what it owns, alive.
      const deadline = setTimeout(() => process.exit(code === 0 ? 1 : code), STOP_DEADLINE_MS);
      deadline.unref();
      for (const stop of this.#stops.splice(0)) {
        await stop().catch((error: unknown) =>
          console.error(`while stopping: ${error instanceof Error ? error.message : error}`),
        );
      }
      process.exit(code);
    })();
    return this.#stopping;
  }
}

/**
 * Stops when the process that started this one is gone. `npm start` passes a SIGTERM to the
 * shell that runs the script, and the shell dies of it without passing it on: this process is
 * then handed to another parent, which `process.ppid` shows within a second.
 */
function stopWhenOrphaned(owned: Owned) {
  const parent = process.ppid;
  setInterval(() => {
    if (process.ppid !== parent) void owned.exit(0);
  }, 1000).unref();
}

/** How long stopping may take before the process exits anyway. */
const STOP_DEADLINE_MS = 10_000;

/**
 * The front's limits on connections before authentication (docs/security.md, "The local
 * server"): BITS_LOCAL_MAX_CONNECTIONS, BITS_LOCAL_HEAD_TIMEOUT and BITS_LOCAL_IDLE_TIMEOUT
 * (seconds), BITS_LOCAL_HELD_BYTES (bytes of request bodies held at once, all connections).
 */
function connectionLimits(env: NodeJS.ProcessEnv): ConnectionLimits {
  const read = (name: string, fallback: number, scale: number) => {
    const raw = env[name]?.trim();
    if (!raw) return fallback * scale;
    const value = Number(raw);
    if (!Number.isSafeInteger(value) || value <= 0) {
      throw new ConfigError(`${name}=${JSON.stringify(raw)} must be a whole number above 0`);
    }
    return value * scale;
  };
  return {
    maxConnections: read("BITS_LOCAL_MAX_CONNECTIONS", DEFAULT_LIMITS.maxConnections, 1),
    headTimeoutMs: read("BITS_LOCAL_HEAD_TIMEOUT", DEFAULT_LIMITS.headTimeoutMs / 1000, 1000),
    idleTimeoutMs: read("BITS_LOCAL_IDLE_TIMEOUT", DEFAULT_LIMITS.idleTimeoutMs / 1000, 1000),
    maxHeldBytes: read("BITS_LOCAL_HELD_BYTES", DEFAULT_LIMITS.maxHeldBytes, 1),
  };
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

// The AWS SDK warns, on every start, that its releases from 2027 need Node 22; this project
// supports Node 20.19 and later (package.json "engines"). The SDK's documented switch
// (aws/aws-sdk-js-v3#7983) silences it, unless the operator set it otherwise.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true";

const owned = new Owned();
// Not SIGHUP: `nohup npm start` must survive its terminal. Without nohup, a closed terminal's
// SIGHUP ends this process, and DynamoDB Local follows (docs/local-server.md, "Stopping").
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  // `on`, not `once`: a signal repeated while stopping (npm passes one on, the terminal sent
  // one) must not end the process before what it owns is stopped.
  process.on(signal, () => void owned.exit(0));
}
stopWhenOrphaned(owned);
main(owned).catch((error: unknown) => {
  console.error(
    error instanceof Error && !(error as { $metadata?: unknown }).$metadata ? error.message : error,
  );
  return owned.exit(1);
});
