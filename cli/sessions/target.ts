import { functionEnvironment } from "../../functions/adapters/lambda/function-environment.ts";
import { findLiveTarget, localTargetPath } from "../../functions/adapters/node/local-target.ts";
import { type Config, loadConfig } from "../../functions/config.ts";
import { type AwsClients, awsClients } from "../../functions/wiring.ts";

/** serverless.yml's `service`: the stack names its table and functions after it and the stage. */
export const SERVICE = "bits-upload-server";

/** The session table (infra/storage.yml) and the upload function of a deployed stage. */
export function stackNames(stage: string) {
  return { table: `${SERVICE}-${stage}-sessions`, uploadFunction: `${SERVICE}-${stage}-upload` };
}

/** Where the operator pointed `bits-sessions`. */
export interface TargetOptions {
  readonly local: boolean;
  readonly table?: string | undefined;
  readonly stage?: string | undefined;
  readonly region?: string | undefined;
  readonly bucket?: string | undefined;
}

/** A table (and bucket) to act on, with the settings the server uses there. */
export interface Target {
  readonly config: Config;
  readonly clients: AwsClients;
  /** Whether the bucket is known: cancelling needs it, reading sessions does not. */
  readonly hasBucket: boolean;
  /** Where, in a few words, for messages. */
  readonly where: string;
  /** What the operator should know about how the target was found (printed on stderr). */
  readonly warnings: readonly string[];
}

/** The target cannot be used; the message says why and what to give instead. */
export class TargetError extends Error {
  override name = "TargetError";
}

/** Stands for a bucket nobody named: never sent anywhere (`hasBucket` is false). */
const NO_BUCKET = "-";

type Env = Readonly<Record<string, string | undefined>>;

/**
 * Resolves where to act, in this order: `--stage` or `--table` (a deployed table, or the one
 * the BITS_* variables point at); without them, BITS_TABLE when set, as the server reads it;
 * otherwise, or with `--local`, the local server `npm start` runs, from the file it writes.
 */
export async function resolveTarget(
  options: TargetOptions,
  env: Env,
  readFunctionEnv: typeof functionEnvironment = functionEnvironment,
): Promise<Target> {
  const deployed = options.table !== undefined || options.stage !== undefined;
  if (options.local && deployed) throw new TargetError("--local goes without --table and --stage");
  if (deployed) return named(options, env, readFunctionEnv);
  if (!options.local && env.BITS_TABLE?.trim()) return named(options, env, readFunctionEnv);
  if (options.bucket !== undefined || options.region !== undefined) {
    throw new TargetError("--bucket and --region go with --table or --stage");
  }
  return local(env);
}

/** The local server's stand-ins (or whatever it uses), from the file it writes while it runs. */
async function local(env: Env): Promise<Target> {
  const path = localTargetPath(env);
  // The server that wrote the file, or another one still running in this directory.
  const live = path === undefined ? undefined : findLiveTarget(path);
  const found = live?.target;
  if (live?.stale !== undefined && found === undefined) {
    throw new TargetError(
      `the local server that wrote ${path} (pid ${live.stale}) is not running: start it again with \`npm start\``,
    );
  }
  if (path === undefined || found === undefined) {
    throw new TargetError(
      `no local server found (${path ?? "BITS_LOCAL_FILE=none"}): start one with \`npm start\` in this directory, or name a table with --table or --stage`,
    );
  }
  const warnings =
    live === undefined || live.others.length === 0
      ? []
      : [
          `several local servers run here: using ${found.url} (${live.file}); for another, set BITS_LOCAL_FILE to one of ${live.others.join(", ")}`,
        ];
  const config = configFrom(found.env);
  const clients = found.standIns ? await standInClients(config) : awsClients(config);
  return {
    config,
    clients,
    hasBucket: true,
    where: `the local server at ${found.url} (table ${config.table} on ${config.dynamodbEndpoint ?? `DynamoDB ${config.region}`})`,
    warnings,
  };
}

/**
 * A table by name or by stage. The rest of the settings (staging prefix, session timeout) are
 * the deployed upload function's when it can be read, else the BITS_* variables'.
 */
async function named(
  options: TargetOptions,
  env: Env,
  readFunctionEnv: typeof functionEnvironment,
): Promise<Target> {
  const region = options.region ?? (env.AWS_REGION?.trim() || "us-east-1");
  const warnings: string[] = [];
  let deployed: Record<string, string> = {};
  if (options.stage !== undefined) {
    const { uploadFunction } = stackNames(options.stage);
    try {
      deployed = await readFunctionEnv(region, uploadFunction);
    } catch (error) {
      warnings.push(
        `the settings of ${uploadFunction} could not be read (${error instanceof Error ? error.message : String(error)}); using the BITS_* variables and defaults instead, and no bucket unless --bucket names it`,
      );
    }
  }
  const table =
    options.table ??
    (options.stage === undefined ? undefined : stackNames(options.stage).table) ??
    env.BITS_TABLE;
  const bucket = options.bucket ?? deployed.BITS_BUCKET ?? env.BITS_BUCKET;
  const config = configFrom({
    ...env,
    ...deployed,
    AWS_REGION: region,
    BITS_TABLE: table,
    BITS_BUCKET: bucket?.trim() ? bucket : NO_BUCKET,
  });
  return {
    config,
    clients: awsClients(config),
    hasBucket: config.bucket !== NO_BUCKET,
    where: `table ${config.table} (${config.dynamodbEndpoint ?? `DynamoDB ${config.region}`})`,
    warnings,
  };
}

/** The server's own configuration, read once; a tool keeps nothing warm between requests. */
function configFrom(env: Env): Config {
  return loadConfig({ ...env, BITS_WARM_CACHE_SIZE: "0" });
}

/** The stand-ins take any credentials; the SDK wants some (infra/stand-ins.ts). */
async function standInClients(config: Config): Promise<AwsClients> {
  // Loaded only here: the stand-ins' module brings in fauxqs and DynamoDB Local's launcher.
  const { standInDynamoDb, standInS3 } = await import("../../infra/stand-ins.ts");
  const { s3Endpoint, dynamodbEndpoint } = config;
  if (!s3Endpoint || !dynamodbEndpoint)
    throw new TargetError("the local server named no endpoints");
  return { s3: standInS3(s3Endpoint), dynamodb: standInDynamoDb(dynamodbEndpoint) };
}
