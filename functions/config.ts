import { AUTH_MODES, type AuthMode } from "./auth/types.ts";
import { MiB, S3_MAX_OBJECT_SIZE, S3_MIN_PART_SIZE } from "./bits/constants.ts";
import { normalizePrefix } from "./bits/key.ts";
import { isRelativeTarget, type NotificationRule } from "./bits/notification.ts";

export interface Config {
  readonly bucket: string;
  readonly table: string;
  readonly keyPrefix: string;
  readonly uploadPaths: readonly string[];
  readonly stagingPrefix: string;
  readonly maxFragmentBytes: number;
  readonly maxUploadBytes: number;
  readonly partSize: number;
  readonly allowOverwrite: boolean;
  readonly sessionTimeoutSeconds: number;
  readonly tombstoneSeconds: number;
  readonly region: string;
  readonly s3Endpoint: string | undefined;
  readonly dynamodbEndpoint: string | undefined;
  readonly logLevel: LogLevel;
  /** Enabled auth modes; undefined when none was chosen (only the local server allows that). */
  readonly auth: readonly AuthMode[] | undefined;
  readonly authRealm: string;
  /** Where the htpasswd text and the URL signing keys come from, when their mode is on. */
  readonly htpasswd: SecretLocation | undefined;
  readonly urlKeys: SecretLocation | undefined;
  readonly secretsRefreshSeconds: number;
  /** Template of the key prefix each principal is confined to (`{principal}`); "" for none. */
  readonly principalPrefix: string;
  readonly overwritePrincipals: readonly string[];
  /**
   * Modes whose principals are the Basic user of the same name (docs/security.md,
   * "Principals"); undefined when none is (the default: every mode's principals are its own).
   */
  readonly joinedModes: readonly AuthMode[] | undefined;
  readonly maxSessionsPerPrincipal: number;
  readonly maxSessions: number;
  /**
   * Items the count of all open sessions is spread over (1 to 100): each create and close
   * writes one of them, so a single item is not every session's bottleneck. Each shard is
   * capped at its share of maxSessions (docs/capacity.md, "Counters"). Unset: one item.
   */
  readonly sessionCounterShards: number | undefined;
  readonly maxFragmentsPerMiB: number;
  /** Bytes a warm instance keeps of what it staged. */
  readonly warmCacheBytes: number;
  /** Upload-reply: which paths notify which application (docs/upload-reply.md). */
  readonly notifications: readonly NotificationRule[];
  readonly notificationTimeoutSeconds: number;
  readonly maxReplyBytes: number;
  readonly replyPath: string;
  /** `https://host[:port]` clients reach the server at (BITS_PUBLIC_ORIGIN); undefined if unset. */
  readonly publicOrigin: string | undefined;
  /** CloudWatch metrics in the log lines; off unless BITS_METRICS_STAGE names the stage. */
  readonly metrics: { readonly namespace: string; readonly stage: string } | undefined;
  /** Where completion events go (docs/events.md). */
  readonly events: EventsConfig;
}

export type EventsConfig =
  | { readonly kind: "none" }
  | { readonly kind: "stdout"; readonly source: string }
  | { readonly kind: "file"; readonly source: string; readonly path: string }
  | { readonly kind: "eventbridge"; readonly source: string; readonly bus: string };

export type SecretLocation =
  | { readonly kind: "file"; readonly path: string }
  | { readonly kind: "ssm"; readonly name: string };

export type LogLevel = "info" | "warn" | "error" | "silent";

export class ConfigError extends Error {
  override name = "ConfigError";
}

type Env = Readonly<Record<string, string | undefined>>;

const UNITS: Record<string, number> = {
  "": 1,
  b: 1,
  kb: 1e3,
  kib: 1024,
  mb: 1e6,
  mib: MiB,
  gb: 1e9,
  gib: 1024 * MiB,
  tb: 1e12,
  tib: 1024 ** 4,
};

/** Bytes, as a whole number or with a unit: "1048576", "1 MiB", "4MB", "5TiB". */
export function parseBytes(text: string): number | undefined {
  const match = /^\s*(\d+)(?:\.(\d+))?\s*([a-z]*)\s*$/i.exec(text);
  const factor = match?.[3] !== undefined ? UNITS[match[3].toLowerCase()] : undefined;
  if (!match?.[1] || factor === undefined) return undefined;
  // Exact decimal arithmetic: "4.1 MB" is 4,100,000 bytes, not 4099999.9999999995.
  const fraction = match[2] ?? "";
  const scaled = BigInt(match[1] + fraction) * BigInt(factor);
  const divisor = 10n ** BigInt(fraction.length);
  if (scaled % divisor !== 0n) return undefined;
  const value = Number(scaled / divisor);
  return Number.isSafeInteger(value) ? value : undefined;
}

/**
 * Reads the configuration once, strictly: every problem is collected and reported together, so
 * a bad deployment stops at cold start with a message naming each variable.
 */
export function loadConfig(env: Env, defaults: Partial<Record<string, string>> = {}): Config {
  const problems: string[] = [];
  const read = (name: string) => env[name] ?? defaults[name];

  const text = (name: string, fallback?: string): string => {
    const value = read(name) ?? fallback;
    if (value === undefined || value.trim() === "") {
      problems.push(`${name} is required`);
      return "";
    }
    return value.trim();
  };
  const bytes = (name: string, fallback: number, min: number, max: number): number => {
    const raw = read(name);
    if (raw === undefined || raw.trim() === "") return fallback;
    const value = parseBytes(raw);
    if (value === undefined || value < min || value > max) {
      problems.push(`${name}=${JSON.stringify(raw)} must be a byte size from ${min} to ${max}`);
      return fallback;
    }
    return value;
  };
  const seconds = (name: string, fallback: number): number => {
    const raw = read(name);
    if (raw === undefined || raw.trim() === "") return fallback;
    const value = Number(raw);
    if (!Number.isSafeInteger(value) || value < 1) {
      problems.push(`${name}=${JSON.stringify(raw)} must be a whole number of seconds >= 1`);
      return fallback;
    }
    return value;
  };
  const flag = (name: string, fallback: boolean): boolean => {
    const raw = read(name)?.trim().toLowerCase();
    if (raw === undefined || raw === "") return fallback;
    if (["true", "1", "yes"].includes(raw)) return true;
    if (["false", "0", "no"].includes(raw)) return false;
    problems.push(`${name}=${JSON.stringify(raw)} must be true or false`);
    return fallback;
  };
  const optional = (name: string): string | undefined => {
    const raw = read(name)?.trim();
    if (raw === undefined || raw === "") return undefined;
    if (!/^https?:\/\/[^\s]+$/.test(raw))
      problems.push(`${name}=${JSON.stringify(raw)} must be a URL`);
    return raw;
  };

  // Prefixes are whole path segments: "uploads" and "uploads/" are the same prefix.
  const prefix = (name: string, fallback: string) => {
    const raw = read(name) ?? fallback;
    const value = normalizePrefix(raw);
    if (value === undefined) {
      problems.push(`${name}=${JSON.stringify(raw)} must be path segments (no empty, . or ..)`);
    }
    return value;
  };
  const keyPrefix = prefix("BITS_KEY_PREFIX", "") ?? "";
  const stagingPrefix = prefix("BITS_STAGING_PREFIX", ".bits-staging/");
  if (stagingPrefix === "") problems.push("BITS_STAGING_PREFIX is required");
  if (stagingPrefix && keyPrefix.startsWith(stagingPrefix)) {
    problems.push("BITS_KEY_PREFIX must not lie inside BITS_STAGING_PREFIX");
  }
  if (keyPrefix !== "" && stagingPrefix?.startsWith(keyPrefix)) {
    problems.push("BITS_STAGING_PREFIX must not lie inside BITS_KEY_PREFIX");
  }
  const count = (name: string, fallback: number): number => {
    const raw = read(name);
    if (raw === undefined || raw.trim() === "") return fallback;
    const value = Number(raw);
    if (!Number.isSafeInteger(value) || value < 1) {
      problems.push(`${name}=${JSON.stringify(raw)} must be a whole number >= 1`);
      return fallback;
    }
    return value;
  };
  // One BatchGetItem reads every shard of the count of all: at most 100 keys.
  const shardsSet = (read("BITS_SESSION_COUNTER_SHARDS") ?? "").trim() !== "";
  const counterShards = shardsSet ? count("BITS_SESSION_COUNTER_SHARDS", 1) : undefined;
  if ((counterShards ?? 1) > 100) {
    problems.push("BITS_SESSION_COUNTER_SHARDS must be at most 100");
  }
  const list = (name: string) =>
    (read(name) ?? "")
      .split(",")
      .map((item) => item.trim())
      .filter((item) => item !== "");
  const uploadPaths = (read("BITS_UPLOAD_PATHS") ?? "/")
    .split(",")
    .map((path) => path.trim())
    .filter((path) => path !== "");
  if (uploadPaths.length === 0 || uploadPaths.some((path) => !path.startsWith("/"))) {
    problems.push("BITS_UPLOAD_PATHS must be a comma-separated list of paths starting with /");
  }
  const logLevel = (read("BITS_LOG_LEVEL")?.trim().toLowerCase() ?? "info") as LogLevel;
  if (!["info", "warn", "error", "silent"].includes(logLevel)) {
    problems.push("BITS_LOG_LEVEL must be info, warn, error or silent");
  }

  const auth = authModes(read("BITS_AUTH"), problems);
  const secret = (mode: AuthMode, file: string, parameter: string): SecretLocation | undefined => {
    const path = read(file)?.trim() || undefined;
    const name = read(parameter)?.trim() || undefined;
    if (!auth?.includes(mode)) return undefined;
    if (path !== undefined && name !== undefined)
      problems.push(`set ${file} or ${parameter}, not both`);
    if (path !== undefined) return { kind: "file", path };
    if (name !== undefined) return { kind: "ssm", name };
    problems.push(`BITS_AUTH=${mode} needs ${file} (a file) or ${parameter} (an SSM parameter)`);
    return undefined;
  };
  const realm = read("BITS_AUTH_REALM")?.trim() || "BITS uploads";
  // It goes inside a quoted string of WWW-Authenticate.
  if (!/^[\x20-\x7e]{1,100}$/.test(realm) || /["\\]/.test(realm)) {
    problems.push("BITS_AUTH_REALM must be printable ASCII without quotes or backslashes");
  }
  const principalPrefix = read("BITS_PRINCIPAL_PREFIX")?.trim() ?? "";
  if (principalPrefix !== "" && !principalPrefix.includes("{principal}")) {
    problems.push("BITS_PRINCIPAL_PREFIX must contain {principal}");
  }

  const notifications = notificationRules(read, problems);
  const replyPath = read("BITS_REPLY_PATH")?.trim() || "/.bits-replies";
  if (!/^\/[A-Za-z0-9._~-]+(\/[A-Za-z0-9._~-]+)*$/.test(replyPath)) {
    problems.push("BITS_REPLY_PATH must be a path like /.bits-replies");
  }

  const publicOrigin = originSetting(read("BITS_PUBLIC_ORIGIN"), problems);
  const relative = notifications.find(
    (rule) => rule.url !== undefined && isRelativeTarget(rule.url),
  );
  if (relative !== undefined && publicOrigin === undefined) {
    // Resolved against the client's Host header it would let any client choose where the
    // server sends the upload (docs/security.md, "No request target from the request").
    problems.push(
      `the relative notification URL ${JSON.stringify(relative.url)} needs BITS_PUBLIC_ORIGIN`,
    );
  }

  const config: Config = {
    bucket: text("BITS_BUCKET"),
    table: text("BITS_TABLE"),
    keyPrefix,
    uploadPaths: Object.freeze(uploadPaths),
    stagingPrefix: stagingPrefix ?? "",
    // 5 KB is the smallest fragment Windows sends ([MC-BUP] note <10>).
    // Both at most 2 GiB, so a part (a staged tail plus whole fragments) stays under S3's 5 GiB.
    maxFragmentBytes: bytes("BITS_MAX_FRAGMENT_SIZE", MiB, 5 * 1024, 2048 * MiB),
    // 10 GiB by default, not S3's 5 TiB: what one client may make the operator store and pay
    // for is a choice to make knowingly (docs/security.md).
    maxUploadBytes: bytes("BITS_MAX_UPLOAD_SIZE", 10 * 1024 * MiB, 0, S3_MAX_OBJECT_SIZE),
    partSize: bytes("BITS_PART_SIZE", 8 * MiB, S3_MIN_PART_SIZE, 2048 * MiB),
    allowOverwrite: flag("BITS_ALLOW_OVERWRITE", false),
    sessionTimeoutSeconds: seconds("BITS_SESSION_TIMEOUT", 1_209_600),
    tombstoneSeconds: seconds("BITS_TOMBSTONE_TTL", 86_400),
    region: read("AWS_REGION")?.trim() || "us-east-1",
    s3Endpoint: optional("BITS_S3_ENDPOINT"),
    dynamodbEndpoint: optional("BITS_DYNAMODB_ENDPOINT"),
    logLevel,
    auth,
    authRealm: realm,
    htpasswd: secret("basic", "BITS_HTPASSWD", "BITS_HTPASSWD_PARAMETER"),
    urlKeys: secret("signed-url", "BITS_URL_KEYS", "BITS_URL_KEYS_PARAMETER"),
    secretsRefreshSeconds: seconds("BITS_SECRETS_REFRESH", 300),
    principalPrefix,
    overwritePrincipals: Object.freeze(list("BITS_OVERWRITE_PRINCIPALS")),
    joinedModes: joinedModes(list("BITS_JOIN_PRINCIPALS"), problems),
    maxSessionsPerPrincipal: count("BITS_MAX_SESSIONS_PER_PRINCIPAL", 50),
    maxSessions: count("BITS_MAX_SESSIONS", 10_000),
    sessionCounterShards: counterShards,
    maxFragmentsPerMiB: count("BITS_MAX_FRAGMENTS_PER_MIB", 512),
    warmCacheBytes: bytes("BITS_WARM_CACHE_SIZE", 64 * MiB, 0, 1024 * MiB),
    notifications,
    // Below the ALB's 60 s idle timeout and the function's 60 s timeout, with room to complete
    // the file before and store the reply after (docs/upload-reply.md, Timeouts).
    notificationTimeoutSeconds: seconds("BITS_NOTIFICATION_TIMEOUT", 40),
    maxReplyBytes: bytes("BITS_MAX_REPLY_SIZE", 64 * MiB, 0, 5 * 1024 * MiB),
    replyPath: replyPath.replace(/\/$/, ""),
    publicOrigin,
    metrics: metricsSettings(read),
    events: eventsConfig(read, problems),
  };
  if (problems.length > 0) {
    throw new ConfigError(`invalid configuration:\n  - ${problems.join("\n  - ")}`);
  }
  return Object.freeze(config);
}

/**
 * `BITS_AUTH`: a comma-separated list of modes. Unset means "not chosen", which only the local
 * server on loopback accepts; `anonymous` cannot be combined (it would make the others moot).
 */
function authModes(raw: string | undefined, problems: string[]): readonly AuthMode[] | undefined {
  if (raw === undefined || raw.trim() === "") return undefined;
  const modes = raw
    .split(",")
    .map((mode) => mode.trim().toLowerCase())
    .filter((mode) => mode !== "");
  const unknown = modes.filter((mode) => !(AUTH_MODES as readonly string[]).includes(mode));
  if (unknown.length > 0 || modes.length === 0) {
    problems.push(`BITS_AUTH=${JSON.stringify(raw)} must list modes from ${AUTH_MODES.join(", ")}`);
    return undefined;
  }
  if (modes.includes("anonymous") && modes.length > 1) {
    problems.push("BITS_AUTH=anonymous cannot be combined with other modes");
  }
  return Object.freeze([...new Set(modes)] as AuthMode[]);
}

const NOTIFICATION_TYPES = ["none", "reference", "value"];

/**
 * `BITS_NOTIFICATION_TYPE` and `BITS_NOTIFICATION_URL` for the whole server, and
 * `BITS_NOTIFICATION_PATHS` for paths that differ: a JSON list of `{ "path", "type", "url" }`
 * (like IIS's per-virtual-directory settings). The longest matching path wins.
 */
function notificationRules(
  read: (name: string) => string | undefined,
  problems: string[],
): readonly NotificationRule[] {
  const rules: NotificationRule[] = [];
  const add = (where: string, path: string, type: unknown, url: unknown) => {
    if (typeof type !== "string" || !NOTIFICATION_TYPES.includes(type)) {
      problems.push(`${where}: type must be none, reference or value`);
      return;
    }
    if (typeof path !== "string" || !path.startsWith("/")) {
      problems.push(`${where}: path must start with /`);
      return;
    }
    if (type !== "none" && (typeof url !== "string" || !validTarget(url))) {
      problems.push(`${where}: url must be an http(s) URL, a relative path or lambda:<function>`);
      return;
    }
    rules.push({
      path,
      type: type as NotificationRule["type"],
      url: type === "none" ? undefined : (url as string),
    });
  };
  const type = read("BITS_NOTIFICATION_TYPE")?.trim().toLowerCase() || "none";
  add(
    "BITS_NOTIFICATION_TYPE/BITS_NOTIFICATION_URL",
    "/",
    type,
    read("BITS_NOTIFICATION_URL")?.trim(),
  );
  const paths = read("BITS_NOTIFICATION_PATHS")?.trim();
  if (paths) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(paths);
    } catch {
      parsed = undefined;
    }
    if (!Array.isArray(parsed)) {
      problems.push('BITS_NOTIFICATION_PATHS must be a JSON list of {"path","type","url"}');
    } else {
      for (const [i, entry] of parsed.entries()) {
        const e = (entry ?? {}) as Record<string, unknown>;
        add(`BITS_NOTIFICATION_PATHS[${i}]`, e.path as string, e.type, e.url);
      }
    }
  }
  return Object.freeze(rules);
}

function validTarget(url: string): boolean {
  if (url.length === 0 || url.length > 2200) return false;
  if (url.startsWith("lambda:")) return /^lambda:[A-Za-z0-9:_/.-]{1,170}$/.test(url);
  if (/^https?:\/\//i.test(url)) return URL.canParse(url);
  // Relative to the remote name's directory, as IIS resolves it.
  return !/^[a-z][a-z0-9+.-]*:/i.test(url) && !url.startsWith("//");
}

/**
 * `BITS_PUBLIC_ORIGIN`: `https://uploads.example.com` (a port may follow), nothing else: no
 * path, query, fragment or credentials.
 */
function originSetting(raw: string | undefined, problems: string[]): string | undefined {
  const text = raw?.trim();
  if (text === undefined || text === "") return undefined;
  const url = URL.canParse(text) ? new URL(text) : undefined;
  const bare = url !== undefined && /^https?:$/.test(url.protocol) && url.username === "";
  if (!bare || url.password !== "" || `${url.origin}/` !== url.href.replace(/\/?$/, "/")) {
    problems.push(`BITS_PUBLIC_ORIGIN=${JSON.stringify(text)} must be https://host[:port]`);
    return undefined;
  }
  return url.origin;
}

function metricsSettings(read: (name: string) => string | undefined) {
  const stage = read("BITS_METRICS_STAGE")?.trim();
  if (!stage) return undefined;
  return { namespace: read("BITS_METRICS_NAMESPACE")?.trim() || "BitsUploadServer", stage };
}

/**
 * `BITS_EVENTS`: `stdout` (the default: one JSON line per event), `file:<path>`, `eventbridge`
 * (on `BITS_EVENT_BUS`, the default bus unless named) or `none`. `BITS_EVENT_SOURCE` is the
 * events' `source`, which rules match on.
 */
function eventsConfig(
  read: (name: string) => string | undefined,
  problems: string[],
): EventsConfig {
  const raw = read("BITS_EVENTS")?.trim() || "stdout";
  const source = read("BITS_EVENT_SOURCE")?.trim() || "bits.upload";
  // EventBridge: 1-256 characters; "aws." is reserved for AWS services.
  if (source.length > 256 || /^aws\./i.test(source) || /[\s"]/.test(source)) {
    problems.push(`BITS_EVENT_SOURCE=${JSON.stringify(source)} must be a name not starting aws.`);
  }
  if (raw === "none") return { kind: "none" };
  if (raw === "stdout") return { kind: "stdout", source };
  if (raw.startsWith("file:") && raw.length > 5)
    return { kind: "file", source, path: raw.slice(5) };
  if (raw === "eventbridge") {
    const bus = read("BITS_EVENT_BUS")?.trim() || "default";
    if (!/^(arn:aws[\w-]*:events:[\w-]+:\d{12}:event-bus\/)?[\w.\-/]{1,256}$/.test(bus)) {
      problems.push(`BITS_EVENT_BUS=${JSON.stringify(bus)} must be an event bus name or ARN`);
    }
    return { kind: "eventbridge", source, bus };
  }
  problems.push(
    `BITS_EVENTS=${JSON.stringify(raw)} must be stdout, file:<path>, eventbridge or none`,
  );
  return { kind: "none" };
}

/** The modes that may join Basic (`BITS_JOIN_PRINCIPALS`): those whose principals have names. */
const JOINABLE: readonly AuthMode[] = ["signed-url", "client-cert"];

function joinedModes(
  names: readonly string[],
  problems: string[],
): readonly AuthMode[] | undefined {
  const modes = JOINABLE.filter((mode) => names.includes(mode));
  const other = names.filter((name) => !JOINABLE.some((mode) => mode === name));
  if (other.length > 0) {
    problems.push(
      `BITS_JOIN_PRINCIPALS may list signed-url and client-cert, not ${other.join(", ")}`,
    );
  }
  return modes.length === 0 ? undefined : Object.freeze(modes);
}
