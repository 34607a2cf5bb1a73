import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes as cryptoRandomBytes } from "node:crypto";
import {
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { createServer } from "node:http";
import { get as httpsGet } from "node:https";
import { type AddressInfo, connect, createServer as createNetServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import bcrypt from "bcryptjs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { signUploadUrl } from "../../functions/auth/signed-url.ts";
import { makeCertificates } from "../support/certificates.ts";
import { sdkCrc32c, sha256 } from "../support/checks.ts";
import { listenLocally } from "../support/listen.ts";
import { type Started, start, stop } from "../support/npm-start.ts";
import { startReplyApp } from "../support/reply-app.ts";
import { download } from "../support/transports.ts";
import { randomBytes } from "../support/windows-client.ts";

/**
 * `bits-upload` (cli/bin/bits-upload.mjs, the package's `bin`) as a user runs it: a child process
 * against `npm start`'s server. Every upload is compared with the file, byte for byte.
 */

const BIN = resolve(import.meta.dirname, "../../cli/bin/bits-upload.mjs");
const KiB = 1024;
const MiB = 1024 * KiB;

interface Run {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
  /** stdout's JSON lines (with --json). */
  readonly records: Record<string, unknown>[];
}

function launch(args: string[], env: Record<string, string> = {}): ChildProcess {
  return spawn(process.execPath, [BIN, ...args], {
    env: { ...process.env, NODE_NO_WARNINGS: "1", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
}

/** Runs the command to its end (killed after 90 s, so a hang fails the test instead). */
function run(args: string[], env: Record<string, string> = {}): Promise<Run> {
  const child = launch(args, env);
  let stdout = "";
  let stderr = "";
  child.stdout?.on("data", (chunk: Buffer) => {
    stdout += chunk.toString();
  });
  child.stderr?.on("data", (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  return new Promise((done) => {
    const timer = setTimeout(() => child.kill("SIGKILL"), 90_000);
    child.once("close", (code) => {
      clearTimeout(timer);
      const records = stdout
        .split("\n")
        .filter((line) => line.startsWith("{"))
        .map((line) => JSON.parse(line) as Record<string, unknown>);
      done({ code, stdout, stderr, records });
    });
  });
}

const resultOf = (outcome: Run) => outcome.records.find((record) => record.event === "result");
const eventsOf = (outcome: Run, event: string) =>
  outcome.records.filter((record) => record.event === event);

function newFile(dir: string, name: string, bytes: number, seed: number) {
  const path = join(dir, name);
  const data = randomBytes(bytes, seed);
  writeFileSync(path, data);
  return { path, data };
}

/** The audit lines of the server (JSON lines with message "request"). */
const audit = (server: Started) =>
  server.lines
    .filter((line) => line.startsWith("{"))
    .map((line) => JSON.parse(line) as Record<string, unknown>)
    .filter((entry) => entry.message === "request");

describe("bits-upload against npm start", () => {
  let dir: string;
  let server: Started;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "bits-upload-"));
    server = await start({});
  }, 90_000);

  afterAll(async () => {
    await stop(server);
    rmSync(dir, { recursive: true, force: true });
  });

  it("uploads a file, checks the stored copy and removes its state file", async () => {
    const { path, data } = newFile(dir, "plain.bin", 3 * MiB + 17, 1);
    const url = `${server.url}/cli/plain.bin`;
    const outcome = await run([path, url, "--json"]);
    expect(outcome.code, outcome.stderr).toBe(0);
    const result = resultOf(outcome);
    expect(result).toMatchObject({
      ok: true,
      bytes: data.length,
      sha256: sha256(data),
      verified: true,
      restarts: 0,
    });
    expect(result?.resumedFrom).toBeUndefined();
    // Both checks were made: the CRC32C of the Close-Session Ack, and a GET of the URL.
    expect(result?.verifyNote).toContain(
      `the server reports the file's CRC32C (${await sdkCrc32c(data)})`,
    );
    expect(result?.verifyNote).toContain("a GET of the URL returned the same SHA-256");
    const progress = eventsOf(outcome, "progress");
    expect(progress.at(-1)).toMatchObject({ bytes: data.length, total: data.length });
    expect(eventsOf(outcome, "session")[0]?.sessionId).toBe(result?.sessionId);
    expect(sha256(await download(url))).toBe(sha256(data));
    expect(existsSync(`${path}.bits-upload.json`)).toBe(false);
  });

  it("prints plain lines when standard error is not a terminal", async () => {
    const { path, data } = newFile(dir, "lines.bin", 600 * KiB, 2);
    const url = `${server.url}/cli/lines.bin`;
    const outcome = await run([path, url]);
    expect(outcome.code, outcome.stderr).toBe(0);
    expect(outcome.stdout).toBe("");
    expect(outcome.stderr).toContain("bits-upload: session {");
    expect(outcome.stderr).toMatch(/600\.0 KiB of 600\.0 KiB \(100%\)/);
    expect(outcome.stderr).toContain(`bits-upload: sha256   ${sha256(data)}`);
    expect(outcome.stderr).toContain("bits-upload: verified yes");
    expect(sha256(await download(url))).toBe(sha256(data));
  });

  it("killed halfway, resumes the same session from its state file", async () => {
    const { path, data } = newFile(dir, "killed.bin", 4 * MiB, 3);
    const url = `${server.url}/cli/killed.bin`;
    const stateDir = join(dir, "state");
    const args = [path, url, "--json", "--state-dir", stateDir];
    // About 4 s at 1 MiB/s: long enough to be killed halfway.
    const first = launch([...args, "--limit-rate", "1MiB", "--max-fragment", "128KiB"]);
    const exited = new Promise((done) => first.once("close", done));
    const saved = await stateWhen(
      () => stateFileIn(stateDir),
      (state) => state.offset > 0,
    );
    first.kill("SIGKILL");
    await exited;
    expect(saved, `no progress in a state file in ${stateDir}`).toBeDefined();
    if (saved === undefined) return;
    expect(saved.offset).toBeLessThan(data.length);
    expect(saved.size).toBe(data.length);

    const second = await run(args);
    expect(second.code, second.stderr).toBe(0);
    const result = resultOf(second);
    expect(eventsOf(second, "session")[0]).toMatchObject({
      resumed: true,
      sessionId: saved.sessionId,
    });
    expect(result).toMatchObject({
      sessionId: saved.sessionId,
      resumedFrom: saved.offset,
      sha256: sha256(data),
      verified: true,
    });
    expect(Number(result?.bytesSent)).toBeLessThan(data.length);
    expect(sha256(await download(url))).toBe(sha256(data));
    expect(stateFileIn(stateDir)).toBeUndefined();
  });

  it("a second run for the same file and URL while the first runs is refused; the first completes", async () => {
    const { path, data } = newFile(dir, "twice.bin", 2 * MiB, 14);
    const url = `${server.url}/cli/twice.bin`;
    const first = launch([path, url, "--limit-rate", "512KiB"]);
    const exited = new Promise<number | null>((done) => first.once("close", done));
    const saved = await stateWhen(
      () => `${path}.bits-upload.json`,
      (state) => state.offset > 0,
    );
    expect(saved).toBeDefined();
    const second = await run([path, url]);
    expect(second.code).toBe(3);
    expect(second.stderr).toContain(`another bits-upload (process ${first.pid})`);
    expect(await exited).toBe(0);
    expect(existsSync(`${path}.bits-upload.json.lock`)).toBe(false);
    expect(sha256(await download(url))).toBe(sha256(data));
  });

  it("Ctrl+C (SIGINT) keeps the state file, exits 130, and the same command resumes", async () => {
    const { path, data } = newFile(dir, "interrupted.bin", 2 * MiB, 13);
    const url = `${server.url}/cli/interrupted.bin`;
    const first = launch([path, url, "--limit-rate", "512KiB"]);
    let stderr = "";
    first.stderr?.on("data", (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    const exited = new Promise<number | null>((done) => first.once("close", done));
    const saved = await stateWhen(
      () => `${path}.bits-upload.json`,
      (state) => state.offset > 0,
    );
    first.kill("SIGINT");
    expect(await exited).toBe(130);
    expect(stderr).toContain("interrupted; run the same command again to resume");
    expect(existsSync(`${path}.bits-upload.json`)).toBe(true);

    const second = await run([path, url, "--json"]);
    expect(second.code, second.stderr).toBe(0);
    expect(resultOf(second)).toMatchObject({ sessionId: saved?.sessionId, sha256: sha256(data) });
    expect(sha256(await download(url))).toBe(sha256(data));
  });

  it("a file that changed since the interruption is uploaded from the start", async () => {
    const { path } = newFile(dir, "changed.bin", 2 * MiB, 4);
    const url = `${server.url}/cli/changed.bin`;
    const first = launch([path, url, "--json", "--limit-rate", "512KiB"]);
    const exited = new Promise((done) => first.once("close", done));
    const old = await stateWhen(
      () => `${path}.bits-upload.json`,
      (state) => state.offset > 0,
    );
    first.kill("SIGKILL");
    await exited;
    expect(old).toBeDefined();
    const data = randomBytes(2 * MiB, 5);
    writeFileSync(path, data);
    utimesSync(path, new Date(), new Date(Date.now() + 5000));

    const second = await run([path, url, "--json"]);
    expect(second.code, second.stderr).toBe(0);
    expect(eventsOf(second, "restart")[0]?.reason).toMatch(/file changed/);
    const result = resultOf(second);
    expect(result?.sessionId).not.toBe(old?.sessionId);
    expect(result?.resumedFrom).toBeUndefined();
    expect(sha256(await download(url))).toBe(sha256(data));
  });

  it("a connection that drops mid-fragment is retried and the upload goes on", async () => {
    // A TCP relay to the server that cuts each of its first two connections after 700 KiB.
    const target = new URL(server.url);
    let cuts = 0;
    const relay = createNetServer((client) => {
      const upstream = connect(Number(target.port), target.hostname);
      let forwarded = 0;
      const cut = cuts < 2;
      if (cut) cuts += 1;
      client.on("data", (chunk: Buffer) => {
        forwarded += chunk.length;
        if (cut && forwarded > 700 * KiB) {
          client.destroy();
          upstream.destroy();
          return;
        }
        upstream.write(chunk);
      });
      upstream.pipe(client);
      client.on("error", () => upstream.destroy());
      upstream.on("error", () => client.destroy());
      client.on("close", () => upstream.destroy());
    });
    await new Promise<void>((done) => relay.listen(0, "127.0.0.1", done));
    const { port } = relay.address() as AddressInfo;
    try {
      const { path, data } = newFile(dir, "dropped.bin", 3 * MiB, 9);
      const outcome = await run([
        path,
        `http://127.0.0.1:${port}/cli/dropped.bin`,
        "--json",
        "--retry-wait",
        "0.05",
        "--no-verify",
      ]);
      expect(outcome.code, outcome.stderr).toBe(0);
      expect(cuts).toBe(2);
      const retries = eventsOf(outcome, "retry");
      expect(retries.length).toBeGreaterThanOrEqual(2);
      expect(retries.every((retry) => retry.attempt === 1)).toBe(true);
      expect(resultOf(outcome)).toMatchObject({ sha256: sha256(data), verified: null });
      expect(sha256(await download(`${server.url}/cli/dropped.bin`))).toBe(sha256(data));
    } finally {
      await new Promise((done) => relay.close(done));
    }
  });

  it("sends POST with X-Http-Method-Override: BITS_POST when asked", async () => {
    const { path, data } = newFile(dir, "override.bin", 300 * KiB, 6);
    const url = `${server.url}/cli/override.bin`;
    const outcome = await run([path, url, "--json", "--method-override"]);
    expect(outcome.code, outcome.stderr).toBe(0);
    expect(resultOf(outcome)).toMatchObject({ verified: true, sha256: sha256(data) });
    const fragments = audit(server).filter(
      (entry) => entry.key === "cli/override.bin" && entry.packet === "fragment",
    );
    expect(fragments.length).toBeGreaterThan(0);
    for (const entry of fragments) expect(entry.method).toBe("POST");
    expect(sha256(await download(url))).toBe(sha256(data));
  });

  it("a refusal exits 1 with the BITS error code and its meaning, and leaves no state", async () => {
    const { path } = newFile(dir, "again.bin", 10 * KiB, 7);
    const url = `${server.url}/cli/plain.bin`; // stored by the first test; overwrite is off
    const outcome = await run([path, url]);
    expect(outcome.code).toBe(1);
    expect(outcome.stderr).toContain("0x80070005 E_ACCESSDENIED: access denied");
    expect(outcome.stderr).toContain("HTTP 403 to Create-Session");
    expect(existsSync(`${path}.bits-upload.json`)).toBe(false);

    const json = await run([path, `${server.url}/cli/dir/`, "--json"]);
    expect(json.code).toBe(1);
    expect(eventsOf(json, "error")[0]).toMatchObject({
      ok: false,
      exitCode: 1,
      status: 400,
      code: "0x80070057",
    });
  });

  it("usage errors exit 2, an unreadable file 3", async () => {
    const usage = await run(["only-a-file"]);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toContain("give exactly one FILE and one URL");
    const help = await run(["--help"]);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain("usage: bits-upload FILE URL");
    const missing = await run([join(dir, "missing.bin"), `${server.url}/cli/missing.bin`]);
    expect(missing.code).toBe(3);
    expect(missing.stderr).toContain("cannot read");
  });

  it("a refusal says why, in the server's words", async () => {
    const { path, data } = newFile(dir, "why.bin", 10 * KiB, 30);
    const url = `${server.url}/cli/why.bin`;
    expect((await run([path, url])).code).toBe(0);
    const again = await run([path, url]);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain(
      "0x80070005 E_ACCESSDENIED: access denied: destination exists and overwrite is off (HTTP 403 to Create-Session)",
    );
    expect(sha256(await download(url))).toBe(sha256(data));
  });

  it("a server that cannot be reached is reported within seconds, exit 4", async () => {
    const closed = await listenLocally(createServer());
    await closed.close();
    const { path } = newFile(dir, "closed.bin", 10 * KiB, 31);
    const began = Date.now();
    const outcome = await run([path, `${closed.url}/x.bin`]);
    expect(outcome.code).toBe(4);
    expect(Date.now() - began).toBeLessThan(15_000);
    expect(outcome.stderr).toMatch(/cannot reach the server \(ECONNREFUSED.*is it running/);
  });

  it("killed with SIGKILL and run again at once, it resumes the same session, 20 times in a row", async () => {
    const { path, data } = newFile(dir, "kill9.bin", 3 * MiB, 32);
    const url = `${server.url}/cli/kill9.bin`;
    const args = [path, url, "--json", "--limit-rate", "2MiB", "--max-fragment", "64KiB"];
    const stateFile = `${path}.bits-upload.json`;
    let sessionId: string | undefined;
    for (let round = 0; round < 20; round++) {
      const child = launch(args);
      let stdout = "";
      child.stdout?.on("data", (chunk: Buffer) => {
        stdout += chunk.toString();
      });
      // Where this run starts: byte 0, or where it says it resumed the same session.
      let from = 0;
      if (round > 0) {
        const session = await sessionEvent(() => stdout);
        expect(session, `round ${round}: no session event; ${stdout}`).toMatchObject({
          resumed: true,
          sessionId,
        });
        from = Number(session?.offset);
      }
      const saved = await stateWhen(
        () => stateFile,
        (state) => state.offset > from,
      );
      expect(saved, `round ${round}: no progress past byte ${from}; ${stdout}`).toBeDefined();
      sessionId ??= saved?.sessionId;
      expect(saved?.sessionId, `round ${round}`).toBe(sessionId);
      // Killed, and the next run starts at once: it must not take the dead run for a live one.
      child.kill("SIGKILL");
    }
    const final = await run(args);
    expect(final.code, final.stderr).toBe(0);
    expect(resultOf(final)).toMatchObject({ sessionId, sha256: sha256(data) });
    expect(sha256(await download(url))).toBe(sha256(data));
  });

  it("gives up after its retries when nothing answers, exit 4", async () => {
    const closed = await listenLocally(createServer());
    await closed.close();
    const { path } = newFile(dir, "nowhere.bin", 10 * KiB, 8);
    const outcome = await run([
      path,
      `${closed.url}/x.bin`,
      "--json",
      "--retries",
      "2",
      "--retry-wait",
      "0.05",
    ]);
    expect(outcome.code).toBe(4);
    expect(eventsOf(outcome, "retry").map((retry) => retry.attempt)).toEqual([1, 2]);
    expect(String(eventsOf(outcome, "error")[0]?.message)).toContain("gave up after 2 retries");
  });
});

interface SavedState {
  readonly sessionId: string;
  readonly offset: number;
  readonly size: number;
}

/** How often the polls below look: a SIGKILL round waits on two of them. */
const POLL_MS = 10;
/** Polls below give up after 15 s. */
const POLLS = 15_000 / POLL_MS;

/** Polls a state file (for at most 15 s) until it satisfies `ready`. */
async function stateWhen(
  path: () => string | undefined,
  ready: (state: SavedState) => boolean,
): Promise<SavedState | undefined> {
  for (let i = 0; i < POLLS; i++) {
    await sleep(POLL_MS);
    const file = path();
    if (file === undefined || !existsSync(file)) continue;
    try {
      const state = JSON.parse(readFileSync(file, "utf8")) as SavedState;
      if (ready(state)) return state;
    } catch {
      // removed meanwhile: the upload ended
    }
  }
  return undefined;
}

/** The first `session` JSON line a run printed, waited for boundedly (15 s). */
async function sessionEvent(stdout: () => string): Promise<Record<string, unknown> | undefined> {
  for (let i = 0; i < POLLS; i++) {
    const line = stdout()
      .split("\n")
      .find((text) => text.startsWith('{"event":"session"'));
    if (line !== undefined) return JSON.parse(line) as Record<string, unknown>;
    await sleep(POLL_MS);
  }
  return undefined;
}

/** The one state file in a state directory, if any. */
function stateFileIn(stateDir: string): string | undefined {
  if (!existsSync(stateDir)) return undefined;
  const names = readdirSync(stateDir).filter((name) => name.endsWith(".bits-upload.json"));
  return names[0] === undefined ? undefined : join(stateDir, names[0]);
}

describe("bits-upload against a server with a 64 KiB fragment limit and upload-reply paths", () => {
  let dir: string;
  let server: Started;
  let app: Awaited<ReturnType<typeof startReplyApp>>;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "bits-upload-"));
    app = await startReplyApp((notification, res) => {
      res.end(`policy for ${sha256(notification.body)}`);
    });
    server = await start({
      BITS_MAX_FRAGMENT_SIZE: "64KiB",
      BITS_NOTIFICATION_PATHS: JSON.stringify([
        { path: "/reply/", type: "value", url: `${app.url}/policy` },
      ]),
    });
  }, 90_000);

  afterAll(async () => {
    await stop(server);
    await app.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("413s shrink the fragments until the server takes them", async () => {
    const { path, data } = newFile(dir, "small-limit.bin", MiB + 3, 10);
    const url = `${server.url}/cli/small-limit.bin`;
    const outcome = await run([path, url, "--json"]);
    expect(outcome.code, outcome.stderr).toBe(0);
    const shrinks = eventsOf(outcome, "shrink").map((event) => Number(event.fragmentSize));
    expect(shrinks.length).toBeGreaterThan(0);
    expect(shrinks.at(-1)).toBeLessThanOrEqual(64 * KiB);
    // The server answers 413 before the service sees the request; what it took fits the limit.
    const fragments = audit(server).filter(
      (entry) => entry.key === "cli/small-limit.bin" && entry.packet === "fragment",
    );
    expect(fragments.length).toBeGreaterThanOrEqual(16);
    for (const entry of fragments) expect(Number(entry.received)).toBeLessThanOrEqual(64 * KiB);
    expect(resultOf(outcome)).toMatchObject({ verified: true, sha256: sha256(data) });
    expect(sha256(await download(url))).toBe(sha256(data));
  });

  it("upload-reply: the reply is written to the file named by --reply", async () => {
    const { path, data } = newFile(dir, "inventory.json", 200 * KiB + 5, 11);
    const replyPath = join(dir, "policy.txt");
    const before = app.received.length;
    const outcome = await run([
      path,
      `${server.url}/reply/host-17.json`,
      "--json",
      "--reply",
      replyPath,
    ]);
    expect(outcome.code, outcome.stderr).toBe(0);
    expect(app.received.length - before).toBe(1);
    expect(sha256(app.received[before]?.body ?? Buffer.alloc(0))).toBe(sha256(data));
    const expected = `policy for ${sha256(data)}`;
    expect(readFileSync(replyPath, "utf8")).toBe(expected);
    expect(resultOf(outcome)).toMatchObject({
      sha256: sha256(data),
      replyFile: replyPath,
      reply: { bytes: expected.length },
    });
    expect(eventsOf(outcome, "reply")[0]).toMatchObject({ bytes: expected.length });
  });

  it("upload-reply: --reply - writes the reply to standard output", async () => {
    const { path, data } = newFile(dir, "to-stdout.json", 70 * KiB, 12);
    const outcome = await run([path, `${server.url}/reply/to-stdout.json`, "--reply", "-"]);
    expect(outcome.code, outcome.stderr).toBe(0);
    expect(outcome.stdout).toBe(`policy for ${sha256(data)}`);
    expect(outcome.stderr).toContain(`sha256   ${sha256(data)}`);
  });
});

describe("bits-upload with credentials over HTTPS: Basic, signed URLs, client certificates", () => {
  let dir: string;
  let server: Started;
  let certificates: ReturnType<typeof makeCertificates>;
  const secret = cryptoRandomBytes(32);
  /** Every run trusts the test CA, which signed the server's certificate. */
  const upload = (args: string[], env: Record<string, string> = {}) =>
    run([...args, "--ca", certificates.files.ca], env);

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "bits-upload-"));
    certificates = makeCertificates(dir);
    const htpasswd = join(dir, "htpasswd");
    writeFileSync(htpasswd, `alice:${bcrypt.hashSync("correct horse", 5)}\n`);
    const keys = join(dir, "url-keys");
    writeFileSync(keys, `k1 ${secret.toString("base64url")}\n`);
    server = await start({
      BITS_AUTH: "basic,signed-url,client-cert",
      BITS_HTPASSWD: htpasswd,
      BITS_URL_KEYS: keys,
      BITS_TLS_CERT: certificates.files.serverCert,
      BITS_TLS_KEY: certificates.files.serverKey,
      BITS_TLS_CA: certificates.files.ca,
    });
  }, 90_000);

  afterAll(async () => {
    await stop(server);
    rmSync(dir, { recursive: true, force: true });
  });

  /** A GET of the stored object over HTTPS as alice, trusting the test CA. */
  const fetchStored = (url: string) =>
    new Promise<Buffer>((done, fail) => {
      const headers = {
        Authorization: `Basic ${Buffer.from("alice:correct horse").toString("base64")}`,
      };
      httpsGet(url, { ca: certificates.ca, headers }, (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (chunk: Buffer) => chunks.push(chunk));
        res.on("end", () => done(Buffer.concat(chunks)));
        res.on("error", fail);
      }).on("error", fail);
    });

  it("Basic: answers the challenge with --user and BITS_UPLOAD_PASSWORD", async () => {
    const { path, data } = newFile(dir, "basic.bin", 2 * MiB + 1, 20);
    const url = `${server.url}/cli/basic.bin`;
    expect(url.startsWith("https://")).toBe(true);
    const challenged = () => audit(server).filter((entry) => entry.status === 401).length;
    const before = challenged();
    const outcome = await upload([path, url, "--json", "--user", "alice"], {
      BITS_UPLOAD_PASSWORD: "correct horse",
    });
    expect(outcome.code, outcome.stderr).toBe(0);
    expect(resultOf(outcome)).toMatchObject({ verified: true, sha256: sha256(data) });
    expect(challenged() - before).toBe(1);
    const entries = audit(server).filter((entry) => entry.key === "cli/basic.bin");
    expect(entries.length).toBeGreaterThan(2);
    for (const entry of entries) expect(entry).toMatchObject({ principal: "alice", auth: "basic" });
    expect(sha256(await fetchStored(url))).toBe(sha256(data));
  });

  it("Basic: no credentials or a wrong password exit 1 and store nothing", async () => {
    const { path } = newFile(dir, "refused.bin", 10 * KiB, 21);
    const url = `${server.url}/cli/refused.bin`;
    const none = await upload([path, url]);
    expect(none.code).toBe(1);
    expect(none.stderr).toContain("0x80190191 BG_E_HTTP_ERROR_401");
    expect(none.stderr).toContain("give --user");
    const wrong = await upload([path, url, "--user", "alice:wrong"]);
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toContain("the server refused the credentials");
    expect((await fetchStored(url)).length).toBe(0);
  });

  it("a signed URL is all it needs, and its signature is never printed", async () => {
    const { path, data } = newFile(dir, "signed.bin", MiB + 9, 22);
    const plain = `${server.url}/cli/signed.bin`;
    const signed = signUploadUrl(plain, {
      keyId: "k1",
      secret,
      expiresAt: Math.floor(Date.now() / 1000) + 600,
      subject: "host-17",
    });
    const signature = new URL(signed).searchParams.get("bits-sig") ?? "";
    const outcome = await upload([path, signed, "--json"]);
    expect(outcome.code, outcome.stderr).toBe(0);
    expect(resultOf(outcome)).toMatchObject({ verified: true, sha256: sha256(data) });
    expect(outcome.stdout + outcome.stderr).not.toContain(signature);
    const entries = audit(server).filter((entry) => entry.key === "cli/signed.bin");
    expect(entries.length).toBeGreaterThan(2);
    for (const entry of entries) expect(entry).toMatchObject({ auth: "signed-url" });
    expect(sha256(await fetchStored(plain))).toBe(sha256(data));
  });

  it("a client certificate: --cert and --key name the client", async () => {
    const { path, data } = newFile(dir, "cert.bin", MiB + 100, 30);
    const url = `${server.url}/cli/cert.bin`;
    const { files } = certificates;
    const outcome = await upload([
      path,
      url,
      "--json",
      "--cert",
      files.clientCert,
      "--key",
      files.clientKey,
    ]);
    expect(outcome.code, outcome.stderr).toBe(0);
    expect(resultOf(outcome)).toMatchObject({ verified: true, sha256: sha256(data) });
    const entries = audit(server).filter((entry) => entry.key === "cli/cert.bin");
    expect(entries.length).toBeGreaterThan(2);
    for (const entry of entries) {
      expect(entry).toMatchObject({ principal: "host-17.corp.example", auth: "client-cert" });
    }
    expect(sha256(await fetchStored(url))).toBe(sha256(data));
  });

  it("an untrusted server certificate ends the run at once, exit 1", async () => {
    const { path } = newFile(dir, "untrusted.bin", 10 * KiB, 31);
    const outcome = await run([path, `${server.url}/cli/untrusted.bin`, "--retries", "5"]);
    expect(outcome.code).toBe(1);
    expect(outcome.stderr).toMatch(/TLS: .*--ca FILE/);
    expect(outcome.stderr).not.toContain("retry");
  });
});
