import { readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { basename, dirname, extname, join, resolve } from "node:path";
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
 * With `port`, the server also writes a file of its own beside it (`serverFilePath`), so that
 * two servers in one directory are both found (`findLiveTarget`) whichever wrote last.
 */
export function writeLocalTarget(path: string, target: LocalTarget, port?: number): () => void {
  const paths = port === undefined ? [path] : [serverFilePath(path, port), path];
  for (const each of paths) {
    const partial = `${each}.${process.pid}.tmp`;
    writeFileSync(partial, `${JSON.stringify(target, null, 2)}\n`);
    renameSync(partial, each);
  }
  return () => {
    for (const each of paths) {
      try {
        if (readLocalTarget(each)?.pid === target.pid) rmSync(each, { force: true });
      } catch {
        // Unreadable or gone: not ours to remove.
      }
    }
  };
}

/** The file of the server on `port`: `.bits-local.json` becomes `.bits-local.8080.json`. */
export function serverFilePath(path: string, port: number): string {
  const extension = extname(path);
  return `${path.slice(0, path.length - extension.length)}.${port}${extension}`;
}

/**
 * The running server `path` names, or, when the one that wrote it has stopped (or it is gone),
 * a running one among the servers' own files beside it, the newest first. `others` lists the
 * files of further running servers; `stale` is the pid of a server that wrote `path` and is
 * gone. Undefined `target` when no server runs.
 */
export function findLiveTarget(path: string): {
  readonly target?: LocalTarget | undefined;
  readonly file?: string | undefined;
  readonly others: readonly string[];
  readonly stale?: number | undefined;
} {
  const named = readLocalTarget(path);
  const extension = extname(path);
  const stem = basename(path, extension);
  const pattern = new RegExp(`^${escapeRegExp(stem)}\\.\\d+${escapeRegExp(extension)}$`);
  let siblings: string[] = [];
  try {
    siblings = readdirSync(dirname(path)).filter((name) => pattern.test(name));
  } catch {
    siblings = [];
  }
  const live = siblings
    .map((name) => join(dirname(path), name))
    .flatMap((file) => {
      try {
        const target = readLocalTarget(file);
        return target && isRunning(target.pid)
          ? [{ file, target, at: statSync(file).mtimeMs }]
          : [];
      } catch {
        return [];
      }
    })
    .sort((a, b) => b.at - a.at);
  if (named !== undefined && isRunning(named.pid)) {
    const others = live.filter((each) => each.target.pid !== named.pid).map((each) => each.file);
    return { target: named, file: path, others };
  }
  const [first, ...rest] = live;
  return {
    target: first?.target,
    file: first?.file,
    others: rest.map((each) => each.file),
    stale: named?.pid,
  };
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
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
