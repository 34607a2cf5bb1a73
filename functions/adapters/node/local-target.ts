import { readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { resolve } from "node:path";
import type { Config } from "../../config.ts";

/**
 * Where the local server's bucket and table are, for the operator's tools on the same machine
 * (`bits-sessions`, docs/client.md): `npm start` picks free ports for its stand-ins, so
 * it writes them down while it runs and removes the file when it stops.
 */
export interface LocalTarget {
  /** The server's process, so a file left by a killed server is recognised as stale. */
  readonly pid: number;
  /** The server's own URL. */
  readonly url: string;
  /** True when the endpoints are stand-ins this server started (they take any credentials). */
  readonly standIns: boolean;
  /**
   * The settings a tool needs to act on the server's sessions as the server would, spelled as
   * the server's environment variables (docs/configuration.md).
   */
  readonly env: Readonly<Record<string, string>>;
}

export const DEFAULT_LOCAL_FILE = ".bits-local.json";

/** `BITS_LOCAL_FILE`, against the working directory; undefined when set to `none`. */
export function localTargetPath(env: NodeJS.ProcessEnv, cwd = process.cwd()): string | undefined {
  const raw = env.BITS_LOCAL_FILE?.trim() || DEFAULT_LOCAL_FILE;
  return raw.toLowerCase() === "none" ? undefined : resolve(cwd, raw);
}

/** What a running server writes: its effective configuration, endpoints included. */
export function localTarget(config: Config, url: string, standIns: boolean): LocalTarget {
  const env: Record<string, string> = {
    BITS_BUCKET: config.bucket,
    BITS_TABLE: config.table,
    AWS_REGION: config.region,
    BITS_KEY_PREFIX: config.keyPrefix,
    BITS_STAGING_PREFIX: config.stagingPrefix,
    BITS_SESSION_TIMEOUT: String(config.sessionTimeoutSeconds),
    BITS_TOMBSTONE_TTL: String(config.tombstoneSeconds),
  };
  if (config.s3Endpoint) env.BITS_S3_ENDPOINT = config.s3Endpoint;
  if (config.dynamodbEndpoint) env.BITS_DYNAMODB_ENDPOINT = config.dynamodbEndpoint;
  return { pid: process.pid, url, standIns, env };
}

/**
 * Writes the file whole (another process never reads half of it) and answers how to remove it:
 * only while it is still this process's own, since a server started later may have replaced it.
 */
export function writeLocalTarget(path: string, target: LocalTarget): () => void {
  const partial = `${path}.${process.pid}.tmp`;
  writeFileSync(partial, `${JSON.stringify(target, null, 2)}\n`);
  renameSync(partial, path);
  return () => {
    try {
      if (readLocalTarget(path)?.pid === target.pid) rmSync(path, { force: true });
    } catch {
      // Unreadable or gone: not ours to remove.
    }
  };
}

/** The file as written; undefined when there is none. Throws when it is not one of ours. */
export function readLocalTarget(path: string): LocalTarget | undefined {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    if ((error as { code?: string }).code === "ENOENT") return undefined;
    throw error;
  }
  const value = JSON.parse(text) as Partial<LocalTarget>;
  const env = value.env ?? {};
  const strings = Object.values(env).every((item) => typeof item === "string");
  if (typeof value.pid !== "number" || typeof value.url !== "string" || !strings) {
    throw new Error(`${path} is not a file the local server wrote`);
  }
  return { pid: value.pid, url: value.url, standIns: value.standIns === true, env };
}

/** Whether the process that wrote the file still runs. */
export function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: it runs, as another user.
    return (error as { code?: string }).code === "EPERM";
  }
}
