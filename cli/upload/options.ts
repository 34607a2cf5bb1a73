import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { parseBytes } from "../../functions/config.ts";
import { MIN_FRAGMENT } from "./engine.ts";
import { UsageError } from "./errors.ts";

/**
 * 1 MB: the ALB's body limit for Lambda and the deployed default `maxFragmentSize`, and below
 * the local server's 1 MiB, so an upload to either meets no 413.
 */
export const DEFAULT_MAX_FRAGMENT = 1_000_000;

export const USAGE = `usage: bits-upload FILE URL [options]

Uploads FILE to URL over the BITS upload protocol, as Windows BITS clients do. Interrupted,
it keeps its session in a state file (FILE.bits-upload.json) and the same command resumes it.

  --user USER[:PASSWORD]  Basic credentials, sent when the server asks for them (401); without
                          :PASSWORD it is read from BITS_UPLOAD_PASSWORD
  --reply FILE            upload-reply jobs: write the server's reply to FILE ("-": stdout)
  --method-override       send POST + X-Http-Method-Override: BITS_POST instead of BITS_POST
  --max-fragment SIZE     largest fragment, e.g. 4MB or 512KiB (default 1MB, which both the
                          ALB and the local server take; at least 5KB); a server that answers
                          413 gets smaller ones
  --limit-rate SIZE       send at most SIZE bytes per second, e.g. 2MiB
  --state-dir DIR         keep the state file in DIR instead of beside FILE
  --retries N             retries of a request after network failures and 5xx (default 8)
  --retry-wait SECONDS    the first wait before a retry, doubled each time up to 30 (default 1)
  --timeout SECONDS       abandon a request that sends or receives nothing this long (default 120)
  --ca FILE               trust this CA certificate (PEM) for https
  --cert FILE, --key FILE a client certificate and its key (PEM) for https
  --no-verify             do not fetch the stored object to compare it with FILE
  --json                  progress and the result as JSON lines on stdout
  --help                  this text

Exit codes: 0 stored (and verified where the server serves the object), 1 refused by the
server (the BITS error code is printed), 2 usage, 3 local file unreadable or changed, 4 gave
up after transient failures (run again to resume), 5 stored object differs from FILE,
130 interrupted (run again to resume).
`;

export interface Options {
  readonly help: boolean;
  readonly file: string;
  readonly url: URL;
  readonly credentials?: { readonly user: string; readonly password: string } | undefined;
  readonly reply?: string | undefined;
  readonly methodOverride: boolean;
  readonly maxFragment: number;
  readonly rateLimit?: number | undefined;
  readonly stateDir?: string | undefined;
  readonly retries: number;
  readonly backoffMs: number;
  readonly timeoutMs: number;
  readonly tls: { ca?: Buffer; cert?: Buffer; key?: Buffer };
  readonly verify: boolean;
  readonly json: boolean;
}

/** The command line, checked; every problem is a UsageError (exit 2). */
export function parseOptions(argv: readonly string[], env: NodeJS.ProcessEnv): Options {
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(argv);
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const { values, positionals } = parsed;
  if (values.help) return { help: true } as Options;
  const [file, url, ...extra] = positionals;
  if (file === undefined || url === undefined || extra.length > 0) {
    throw new UsageError("give exactly one FILE and one URL");
  }
  const target = parseUrl(url);
  const credentials = credentialsOf(values.user, target, env);
  if (values.json && values.reply === "-") {
    throw new UsageError("--json and --reply - both want standard output");
  }
  if ((values.cert === undefined) !== (values.key === undefined)) {
    throw new UsageError("--cert and --key go together");
  }
  const maxFragment = size("--max-fragment", values["max-fragment"]) ?? DEFAULT_MAX_FRAGMENT;
  if (maxFragment < MIN_FRAGMENT) throw new UsageError("--max-fragment must be at least 5KB");
  return {
    help: false,
    file,
    url: target,
    credentials,
    reply: values.reply,
    methodOverride: values["method-override"],
    maxFragment,
    rateLimit: size("--limit-rate", values["limit-rate"]),
    stateDir: values["state-dir"],
    retries: whole("--retries", values.retries, 8),
    backoffMs: seconds("--retry-wait", values["retry-wait"], 1),
    timeoutMs: seconds("--timeout", values.timeout, 120),
    tls: {
      ...(values.ca === undefined ? {} : { ca: read("--ca", values.ca) }),
      ...(values.cert === undefined ? {} : { cert: read("--cert", values.cert) }),
      ...(values.key === undefined ? {} : { key: read("--key", values.key) }),
    },
    verify: !values["no-verify"],
    json: values.json,
  };
}

function parse(argv: readonly string[]) {
  return parseArgs({
    args: [...argv],
    allowPositionals: true,
    strict: true,
    options: {
      user: { type: "string" },
      reply: { type: "string" },
      "method-override": { type: "boolean", default: false },
      "max-fragment": { type: "string" },
      "limit-rate": { type: "string" },
      "state-dir": { type: "string" },
      retries: { type: "string" },
      "retry-wait": { type: "string" },
      timeout: { type: "string" },
      ca: { type: "string" },
      cert: { type: "string" },
      key: { type: "string" },
      "no-verify": { type: "boolean", default: false },
      json: { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
  });
}

/** An http(s) URL; a user and password in it become the credentials and leave the URL. */
function parseUrl(text: string): URL {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new UsageError(`${JSON.stringify(text)} is not a URL`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new UsageError("the URL must start with http:// or https://");
  }
  if (url.hash !== "") throw new UsageError("the URL must not have a #fragment");
  return url;
}

function credentialsOf(
  user: string | undefined,
  url: URL,
  env: NodeJS.ProcessEnv,
): Options["credentials"] {
  let pair: { user: string; password?: string | undefined } | undefined;
  if (url.username !== "" || url.password !== "") {
    pair = { user: decodeURIComponent(url.username), password: decodeURIComponent(url.password) };
    url.username = "";
    url.password = "";
  }
  if (user !== undefined) {
    const colon = user.indexOf(":");
    pair = colon < 0 ? { user } : { user: user.slice(0, colon), password: user.slice(colon + 1) };
  }
  if (pair === undefined) return undefined;
  const password = pair.password || env.BITS_UPLOAD_PASSWORD;
  if (pair.user === "" || password === undefined) {
    throw new UsageError("give the user as --user USER and the password in BITS_UPLOAD_PASSWORD");
  }
  return { user: pair.user, password };
}

function size(name: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const bytes = parseBytes(text);
  if (bytes === undefined || bytes <= 0) {
    throw new UsageError(`${name} must be a size like 1048576, 512KiB or 1MB`);
  }
  return bytes;
}

function whole(name: string, text: string | undefined, fallback: number): number {
  if (text === undefined) return fallback;
  const value = Number(text);
  if (!/^\d+$/.test(text.trim()) || !Number.isSafeInteger(value)) {
    throw new UsageError(`${name} must be a whole number`);
  }
  return value;
}

function seconds(name: string, text: string | undefined, fallback: number): number {
  if (text === undefined) return fallback * 1000;
  const value = Number(text);
  if (text.trim() === "" || !Number.isFinite(value) || value <= 0) {
    throw new UsageError(`${name} must be a number of seconds above 0`);
  }
  return Math.round(value * 1000);
}

function read(name: string, path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (error) {
    throw new UsageError(`${name} ${path}: ${(error as Error).message}`);
  }
}
