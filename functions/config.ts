import { MiB, S3_MAX_OBJECT_SIZE, S3_MIN_PART_SIZE } from "./bits/constants.ts";

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
}

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

  const keyPrefix = read("BITS_KEY_PREFIX")?.trim() ?? "";
  if (keyPrefix.startsWith("/")) problems.push("BITS_KEY_PREFIX must not start with /");
  const stagingPrefix = text("BITS_STAGING_PREFIX", ".bits-staging/");
  if (!stagingPrefix.endsWith("/")) problems.push("BITS_STAGING_PREFIX must end with /");
  if (keyPrefix.startsWith(stagingPrefix)) {
    problems.push("BITS_KEY_PREFIX must not lie inside BITS_STAGING_PREFIX");
  }
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

  const config: Config = {
    bucket: text("BITS_BUCKET"),
    table: text("BITS_TABLE"),
    keyPrefix,
    uploadPaths: Object.freeze(uploadPaths),
    stagingPrefix,
    // 5 KB is the smallest fragment Windows sends ([MC-BUP] note <10>).
    // Both at most 2 GiB, so a part (a staged tail plus whole fragments) stays under S3's 5 GiB.
    maxFragmentBytes: bytes("BITS_MAX_FRAGMENT_SIZE", MiB, 5 * 1024, 2048 * MiB),
    maxUploadBytes: bytes("BITS_MAX_UPLOAD_SIZE", S3_MAX_OBJECT_SIZE, 0, S3_MAX_OBJECT_SIZE),
    partSize: bytes("BITS_PART_SIZE", 8 * MiB, S3_MIN_PART_SIZE, 2048 * MiB),
    allowOverwrite: flag("BITS_ALLOW_OVERWRITE", false),
    sessionTimeoutSeconds: seconds("BITS_SESSION_TIMEOUT", 1_209_600),
    tombstoneSeconds: seconds("BITS_TOMBSTONE_TTL", 86_400),
    region: read("AWS_REGION")?.trim() || "us-east-1",
    s3Endpoint: optional("BITS_S3_ENDPOINT"),
    dynamodbEndpoint: optional("BITS_DYNAMODB_ENDPOINT"),
    logLevel,
  };
  if (problems.length > 0) {
    throw new ConfigError(`invalid configuration:\n  - ${problems.join("\n  - ")}`);
  }
  return Object.freeze(config);
}
