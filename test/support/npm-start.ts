import { type ChildProcess, spawn } from "node:child_process";
import { resolve } from "node:path";
import { inject } from "vitest";
import { freshStorage } from "./storage.ts";

const ROOT = resolve(import.meta.dirname, "../..");

export interface Started {
  readonly child: ChildProcess;
  readonly url: string;
  readonly lines: string[];
}

/**
 * Where a server started by a test keeps its data: unless `env` names its storage, the run's
 * stand-ins (BITS_STAND_INS=external) with a bucket and table of its own, so one set of stand-ins
 * serves every server instead of each starting DynamoDB Local. `ownStandIns` keeps `npm start`'s
 * default: it starts its own stand-ins and makes the default bucket and table in them.
 */
async function storageOf(env: Record<string, string>, ownStandIns: boolean) {
  const named = ["BITS_STAND_INS", "BITS_S3_ENDPOINT", "BITS_DYNAMODB_ENDPOINT"].some(
    (name) => name in env,
  );
  if (ownStandIns || named) return {};
  const { bucket, table } = await freshStorage();
  return {
    BITS_STAND_INS: "external",
    BITS_S3_ENDPOINT: inject("s3Endpoint"),
    BITS_DYNAMODB_ENDPOINT: inject("dynamodbEndpoint"),
    BITS_BUCKET: bucket,
    BITS_TABLE: table,
  };
}

/** `npm start` as a user runs it (`tsx functions/local.ts`). */
export async function start(
  env: Record<string, string>,
  { ownStandIns = false }: { ownStandIns?: boolean } = {},
): Promise<Started> {
  const storage = await storageOf(env, ownStandIns);
  const child = spawn(process.execPath, ["--import", "tsx", "functions/local.ts"], {
    cwd: ROOT,
    env: {
      ...process.env,
      PORT: "0",
      BITS_LOG_LEVEL: "info",
      NODE_NO_WARNINGS: "1",
      ...storage,
      ...env,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const lines: string[] = [];
  let errors = "";
  child.stderr?.on("data", (chunk: Buffer) => {
    errors += chunk.toString();
  });
  return new Promise((resolvePromise, reject) => {
    const timer = setTimeout(() => reject(new Error(`no start within 120 s: ${errors}`)), 120_000);
    // A pipe hands over what was written so far, not whole lines: under load a long line
    // arrives in two chunks, and the half not yet ended waits for the rest.
    let partial = "";
    child.stdout?.setEncoding("utf8");
    child.stdout?.on("data", (chunk: string) => {
      const text = partial + chunk;
      const complete = text.split("\n");
      partial = complete.pop() ?? "";
      for (const line of complete) {
        if (line === "") continue;
        lines.push(line);
        const match = /listening on (\S+)\//.exec(line);
        if (match?.[1]) {
          clearTimeout(timer);
          resolvePromise({ child, url: match[1], lines });
        }
      }
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`exited with ${code}: ${errors}`));
    });
  });
}

/** Runs the server expecting it to refuse to start; answers what it printed. */
export function refusal(
  env: Record<string, string>,
): Promise<{ code: number | null; errors: string }> {
  const child = spawn(process.execPath, ["--import", "tsx", "functions/local.ts"], {
    cwd: ROOT,
    env: { ...process.env, PORT: "0", NODE_NO_WARNINGS: "1", ...env },
    stdio: ["ignore", "ignore", "pipe"],
  });
  let errors = "";
  child.stderr?.on("data", (chunk: Buffer) => {
    errors += chunk.toString();
  });
  return new Promise((resolvePromise) => {
    const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
    child.once("exit", (code) => {
      clearTimeout(timer);
      resolvePromise({ code, errors });
    });
  });
}

/** Stops a started server and waits for it to exit. */
export async function stop(server: Started | undefined): Promise<void> {
  if (server === undefined || server.child.exitCode !== null) return;
  const exited = new Promise((done) => server.child.once("exit", done));
  server.child.kill("SIGTERM");
  await exited;
}

export interface EventLine {
  readonly "detail-type": string;
  readonly source: string;
  readonly time: string;
  readonly resources: string[];
  readonly detail: Record<string, unknown>;
}

/** What `npm start` logged at warn or error level: the message of an assertion on its events. */
export function warnings(server: Started): string {
  const logged = server.lines.filter((line) => /^\{"level":"(warn|error)"/.test(line));
  return logged.length === 0 ? "the server logged no warning or error" : logged.join("\n");
}

/** The event lines `npm start` printed for one key. */
export function eventsFor(server: Started, key: string): EventLine[] {
  return server.lines
    .filter((line) => line.startsWith('{"detail-type"'))
    .map((line) => JSON.parse(line) as EventLine)
    .filter((event) => event.detail.key === key);
}

/** Waits, boundedly (40 s), until `count` events for `key` were printed. */
export async function awaitEvents(server: Started, key: string, count = 1): Promise<EventLine[]> {
  for (let i = 0; i < 400 && eventsFor(server, key).length < count; i++) {
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return eventsFor(server, key);
}
