import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { join, relative, resolve } from "node:path";
import lockfile from "proper-lockfile";

/**
 * `osls package` of serverless.yml with a set of `--param`s, run once per variant and shared by
 * every test file (the template's checks, cfn-lint, the IAM simulation): the result is kept in
 * node_modules/.cache/bits-package/<key>, where the key is the parameters and the content of
 * every file that shapes the package (serverless.yml, infra/, functions/, the build script,
 * package.json). A change to any of them is a new key, so a cached result is never stale. One
 * lock (proper-lockfile) serialises packaging across test workers: the build rewrites dist/,
 * which another packaging run would be zipping.
 */

const ROOT = resolve(import.meta.dirname, "../..");
const CACHE = join(ROOT, "node_modules", ".cache", "bits-package");
/** osls's command (its package.json "bin"), as `npx osls` runs it. */
const OSLS = join(ROOT, "node_modules", "osls", "bin", "serverless.js");
export const UPDATE_TEMPLATE = "cloudformation-template-update-stack.json";
export const CREATE_TEMPLATE = "cloudformation-template-create-stack.json";

export type PackageParams = Readonly<Record<string, string>>;

export interface Packaged {
  /** The directory osls wrote (templates, upload.zip, cleanup.zip); undefined when it failed. */
  readonly dir: string | undefined;
  /** What osls printed (stdout then stderr). */
  readonly output: string;
}

/**
 * osls leaves development dependencies out of a package by asking `npm ls --dev` and `npm ls
 * --prod` for every package it makes: two npm processes that read all of node_modules, about a
 * third of a packaging run's time. Their answer depends on node_modules and package.json alone,
 * the same for every variant. The packaging runs therefore find first on their PATH an `npm`
 * that hands every command to npm and keeps what `npm ls` printed (and its exit code), keyed
 * by its directory, its arguments, package.json and node_modules/.package-lock.json, for the
 * next run to print. What osls packages is the same, byte for byte.
 */
function npmLsKeeper(): string {
  const npm = execFileSync("sh", ["-c", "command -v npm"], { encoding: "utf8" }).trim();
  const kept = join(CACHE, "npm-ls");
  const text = `#!/bin/sh
if [ "$1" = ls ]; then
  key=$( { pwd -P; printf '%s\\n' "$@"; cat package.json node_modules/.package-lock.json; } 2>/dev/null | sha256sum | cut -c1-24)
  kept="${kept}/$key"
  if [ -f "$kept.out" ]; then cat "$kept.out"; exit "$(cat "$kept.code")"; fi
  "${npm}" "$@" > "$kept.$$"
  code=$?
  cat "$kept.$$"
  echo "$code" > "$kept.code"
  mv "$kept.$$" "$kept.out"
  exit "$code"
fi
exec "${npm}" "$@"
`;
  const dir = join(
    CACHE,
    `npm-bin-${createHash("sha256").update(text).digest("hex").slice(0, 16)}`,
  );
  const script = join(dir, "npm");
  if (existsSync(script)) return dir;
  mkdirSync(kept, { recursive: true });
  mkdirSync(dir, { recursive: true });
  writeFileSync(`${script}.${process.pid}`, text, { mode: 0o755 });
  renameSync(`${script}.${process.pid}`, script);
  return dir;
}

/** The environment of a packaging run: no AWS credentials, no telemetry. */
export function packagingEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    SLS_TELEMETRY_DISABLED: "1",
    SLS_NOTIFICATIONS_MODE: "off",
    PATH: `${npmLsKeeper()}:${process.env.PATH ?? ""}`,
  };
  for (const name of [
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
  ]) {
    delete env[name];
  }
  return env;
}

function files(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((entry) => entry.isFile())
    .map((entry) => relative(ROOT, join(entry.parentPath, entry.name)))
    .sort();
}

let sourcesHash: string | undefined;

/** One hash of everything a package is made from. */
function sources(): string {
  if (sourcesHash) return sourcesHash;
  const hash = createHash("sha256");
  const inputs = [
    "serverless.yml",
    "package.json",
    "scripts/build.ts",
    ...files(join(ROOT, "infra")),
    ...files(join(ROOT, "functions")),
  ];
  for (const file of inputs) {
    hash
      .update(file)
      .update("\0")
      .update(readFileSync(join(ROOT, file)))
      .update("\0");
  }
  sourcesHash = hash.digest("hex");
  return sourcesHash;
}

const keyOf = (params: PackageParams) =>
  createHash("sha256")
    .update(sources())
    .update(JSON.stringify(Object.entries(params).sort()))
    .digest("hex")
    .slice(0, 24);

function readResult(entry: string): Packaged {
  const output = readFileSync(join(entry, "output.txt"), "utf8");
  const dir = join(entry, "package");
  return { dir: existsSync(join(dir, UPDATE_TEMPLATE)) ? dir : undefined, output };
}

let built = false;

function runPackaging(params: PackageParams, entry: string) {
  const run = (command: string, args: string[]) =>
    execFileSync(command, args, {
      cwd: ROOT,
      env: packagingEnv(),
      encoding: "utf8",
      stdio: "pipe",
      timeout: 180_000,
    });
  // `npm run build` and `npx osls`, without npm's own start (about half a second each).
  if (!built) {
    run(process.execPath, ["--import", "tsx", "scripts/build.ts"]);
    built = true;
  }
  const staging = mkdtempSync(join(CACHE, "tmp-"));
  const flags = Object.entries(params).map(([key, value]) => `--param=${key}=${value}`);
  let output: string;
  try {
    output = run(process.execPath, [
      OSLS,
      "package",
      ...flags,
      "--package",
      join(staging, "package"),
    ]);
  } catch (error) {
    const e = error as { stdout?: string; stderr?: string };
    output = `${e.stdout ?? ""}${e.stderr ?? ""}`;
  }
  writeFileSync(join(staging, "output.txt"), output);
  rmSync(entry, { recursive: true, force: true });
  renameSync(staging, entry);
}

/**
 * The package for these parameters, made now or taken from the cache. Packaging that fails is
 * cached as well (with no directory): its output is what a test about a refusal reads.
 */
export function packaged(params: PackageParams): Packaged {
  mkdirSync(CACHE, { recursive: true });
  const entry = join(CACHE, keyOf(params));
  if (existsSync(join(entry, "output.txt"))) return readResult(entry);
  const release = lockSync();
  try {
    if (!existsSync(join(entry, "output.txt"))) runPackaging(params, entry);
  } finally {
    release();
  }
  return readResult(entry);
}

/** The cache's lock, waited for (proper-lockfile's lockSync does not retry). */
function lockSync(): () => void {
  const deadline = Date.now() + 600_000;
  for (;;) {
    try {
      return lockfile.lockSync(CACHE, { stale: 300_000, realpath: false });
    } catch (error) {
      if ((error as { code?: string }).code !== "ELOCKED" || Date.now() > deadline) throw error;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 250);
    }
  }
}

/** The package for these parameters; throws with osls's output when packaging failed. */
export function packagedDir(params: PackageParams): string {
  const result = packaged(params);
  if (result.dir === undefined) {
    throw new Error(`packaging ${JSON.stringify(params)} failed:\n${result.output}`);
  }
  return result.dir;
}

/** A package's update template, parsed. */
export function packagedTemplate<T = unknown>(params: PackageParams): T {
  return JSON.parse(readFileSync(join(packagedDir(params), UPDATE_TEMPLATE), "utf8")) as T;
}

/** A copy of a package in a directory of the caller's (for tests that write next to it). */
export function copyPackage(params: PackageParams, to: string) {
  cpSync(packagedDir(params), to, { recursive: true });
  return to;
}
