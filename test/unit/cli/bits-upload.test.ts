import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  describeHresult,
  EXIT,
  exitCodeOf,
  GaveUpError,
  RefusedError,
  UsageError,
} from "../../../cli/upload/errors.ts";
import { NetworkError } from "../../../cli/upload/http.ts";
import { parseOptions } from "../../../cli/upload/options.ts";
import { formatBytes, LineReporter } from "../../../cli/upload/progress.ts";
import { backoff, retrying } from "../../../cli/upload/retry.ts";
import { FileSource } from "../../../cli/upload/source.ts";
import { lockState, running, StateFile, statePathFor } from "../../../cli/upload/state.ts";
import { CONTEXT_APPLICATION, HRESULT } from "../../../functions/bits/constants.ts";
import { sha256 } from "../../support/checks.ts";
import { randomBytes } from "../../support/windows-client.ts";

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "bits-upload-unit-"));
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe("error codes", () => {
  it("every HRESULT the server sends has a name and a meaning", () => {
    for (const [name, code] of Object.entries(HRESULT)) {
      const line = describeHresult(code);
      expect(line).toMatch(new RegExp(`^0x[0-9A-F]{8} ${name}: \\S`));
    }
    expect(describeHresult(HRESULT.BG_E_SESSION_NOT_FOUND)).toMatch(
      /^0x8020001F BG_E_SESSION_NOT_FOUND: the server does not know the upload session/,
    );
  });

  it("an HTTP status without a BITS error is named as the client names it", () => {
    expect(describeHresult(0x80190000 + 502)).toBe(
      "0x801901F6 BG_E_HTTP_ERROR_502: the server answered HTTP 502 Bad Gateway",
    );
    expect(describeHresult(0x80071234)).toBe("0x80071234: an error code this client does not know");
  });

  it("each kind of failure has its own exit code", () => {
    expect(exitCodeOf(new UsageError("x"))).toBe(EXIT.usage);
    expect(exitCodeOf(new Error("unexpected"))).toBe(EXIT.refused);
    expect(new Set(Object.values(EXIT)).size).toBe(Object.keys(EXIT).length);
  });
});

describe("messages say what happened", () => {
  it("the server's reason replaces the list of what a code can mean", () => {
    const refused = new RefusedError(
      "Create-Session",
      403,
      HRESULT.E_ACCESSDENIED,
      5,
      undefined,
      "the signed URL has expired",
    );
    expect(refused.message).toBe(
      "0x80070005 E_ACCESSDENIED: access denied: the signed URL has expired (HTTP 403 to Create-Session)",
    );
    expect(
      describeHresult(HRESULT.BG_E_SESSION_NOT_FOUND, "ended: cancelled by an operator"),
    ).toMatch(
      /does not know the upload session .*; the server says: ended: cancelled by an operator$/,
    );
  });

  it("an application that cannot be reached is named in words", () => {
    const refused = new RefusedError("Fragment", 502, 0x801901f6, CONTEXT_APPLICATION);
    expect(refused.message).toMatch(
      /^the server could not reach its application, or the application failed/,
    );
    expect(refused.message).toContain("0x801901F6");
    const timeout = new RefusedError("Fragment", 408, HRESULT.ERROR_TIMEOUT, CONTEXT_APPLICATION);
    expect(timeout.message).toMatch(/^the server's application did not answer in time/);
    const refusedByApp = new RefusedError("Fragment", 403, 0x80190193, CONTEXT_APPLICATION);
    expect(refusedByApp.message).toMatch(
      /^the server's application refused the upload with HTTP 403/,
    );
  });

  it("rates and sizes are tidy numbers", () => {
    expect(formatBytes(59.70149253731343)).toBe("60 B");
    expect(formatBytes(1536)).toBe("1.5 KiB");
  });
});

describe("an unreachable server", () => {
  const refused = () => Promise.reject(new NetworkError("connect ECONNREFUSED", "ECONNREFUSED"));
  const policy = (reached: boolean, delays: number[]) => ({
    retries: 8,
    backoffMs: 1,
    unreachable: { retries: 2, reached: () => reached },
    onRetry: ({ delayMs }: { delayMs: number }) => delays.push(delayMs),
  });

  it("that never answered is given up after two retries, saying so", async () => {
    const delays: number[] = [];
    const run = retrying(policy(false, delays), "Create-Session", refused);
    await expect(run).rejects.toThrow(GaveUpError);
    await expect(run).rejects.toThrow(/cannot reach the server .*ECONNREFUSED.*is it running/);
    expect(delays.length).toBe(2);
  });

  it("that answered earlier in the run gets the whole budget (a restart, a blip)", async () => {
    const delays: number[] = [];
    await expect(retrying(policy(true, delays), "Fragment", refused)).rejects.toThrow(
      /gave up after 8 retries/,
    );
    expect(delays.length).toBe(8);
  });
});

describe("backoff", () => {
  it("doubles from the first wait, stays within its upper half and 30 s", () => {
    for (let n = 1; n <= 12; n++) {
      const ceiling = Math.min(30_000, 1000 * 2 ** (n - 1));
      expect(backoff(1000, n, () => 0)).toBe(ceiling / 2);
      expect(backoff(1000, n, () => 0.999_999)).toBe(ceiling);
    }
  });
});

describe("the file's SHA-256 follows the server's offset", () => {
  it("in order, skipped ahead (a resumed session) and rewound (a lost session)", async () => {
    const data = randomBytes(3 * 1024 * 1024 + 5, 7);
    const path = join(dir, "source.bin");
    writeFileSync(path, data);
    const source = await FileSource.open(path);
    try {
      const first = await source.read(0, 100_000);
      await source.advance(100_000, { at: 0, bytes: first });
      // The server already held more than this fragment: the rest is read from the file.
      await source.advance(2_000_000, { at: 100_000, bytes: await source.read(100_000, 10) });
      // It went back: everything is hashed again, up to the new offset.
      await source.advance(50);
      const tail = await source.read(50, data.length - 50);
      await source.advance(data.length, { at: 50, bytes: tail });
      expect(source.sha256()).toBe(sha256(data));
    } finally {
      await source.close();
    }
  });

  it("refuses to give a hash before every byte is acknowledged", async () => {
    const path = join(dir, "partial.bin");
    writeFileSync(path, randomBytes(1000, 8));
    const source = await FileSource.open(path);
    try {
      await source.advance(999);
      expect(() => source.sha256()).toThrow(/not completely hashed/);
    } finally {
      await source.close();
    }
  });
});

describe("the state file", () => {
  const state = {
    url: "https://uploads.example.com/a.bin?bits-sig=x",
    file: "/data/a.bin",
    size: 10,
    mtimeMs: 1.5,
    sessionId: "{A0FF5911-4144-45B3-BF27-27AFC8EC8A67}",
    protocol: "{7df0354d-249b-430f-820d-3d2a9bef4931}",
    offset: 4,
    phase: "sending" as const,
  };

  it("sits beside the file, or in a state directory under a name per file and URL", () => {
    expect(statePathFor("/data/a.bin", state.url)).toBe("/data/a.bin.bits-upload.json");
    const one = statePathFor("/data/a.bin", state.url, "/var/state");
    const other = statePathFor("/data/a.bin", "https://elsewhere/a.bin", "/var/state");
    expect(one).toMatch(/^\/var\/state\/a\.bin\.[0-9a-f]{16}\.bits-upload\.json$/);
    expect(other).not.toBe(one);
  });

  it("is written whole (no temporary file left) and read back", () => {
    const warnings: string[] = [];
    const file = new StateFile(join(dir, "states", "a.bin.bits-upload.json"), (w) =>
      warnings.push(w),
    );
    file.save(state);
    file.save({ ...state, offset: 8 });
    expect(file.load()).toMatchObject({ ...state, offset: 8, version: 1 });
    expect(readdirSync(join(dir, "states"))).toEqual(["a.bin.bits-upload.json"]);
    file.remove();
    expect(file.load()).toBeUndefined();
    expect(warnings).toEqual([]);
  });

  it("a file it did not write is ignored with a warning", () => {
    const path = join(dir, "bad.bits-upload.json");
    writeFileSync(path, '{"version":1,"url":"x"}');
    const warnings: string[] = [];
    expect(new StateFile(path, (w) => warnings.push(w)).load()).toBeUndefined();
    expect(warnings[0]).toContain("not a state file");
    expect(existsSync(path)).toBe(true);
  });
});

describe("the state file's lock", () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "bits-lock-"));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("is held by one process: another running one is named, and release frees it", () => {
    const state = join(dir, "held.bin.bits-upload.json");
    const first = lockState(state);
    if (!("release" in first)) throw new Error("the first lock was refused");
    // The lock as another running process holds it: this test's parent.
    writeFileSync(`${state}.lock`, `${process.ppid}\n`);
    expect(lockState(state)).toEqual({ heldBy: process.ppid });
    first.release();
    expect(existsSync(`${state}.lock`)).toBe(false);
    const again = lockState(state);
    expect("release" in again).toBe(true);
    if ("release" in again) again.release();
  });

  it("left by a process that no longer runs (killed), it is taken over", () => {
    const state = join(dir, "stale.bin.bits-upload.json");
    const gone = spawnSync(process.execPath, ["-e", "0"]).pid as number;
    writeFileSync(`${state}.lock`, `${gone}\n`);
    const lock = lockState(state);
    expect("release" in lock).toBe(true);
    expect(readFileSync(`${state}.lock`, "utf8").trim()).toBe(String(process.pid));
    if ("release" in lock) lock.release();
  });
});

describe("a process that was killed but not yet reaped", () => {
  it("counts as gone, so its lock is taken over (Linux)", async () => {
    if (process.platform !== "linux") return;
    // A parent that forks a child which exits at once, and never waits for it: a zombie.
    const parent = [
      "import os, time",
      "pid = os.fork()",
      "if pid == 0: os._exit(0)",
      "print(pid, flush=True)",
      "time.sleep(5)",
    ].join("\n");
    const child = spawn("python3", ["-c", parent], { stdio: ["ignore", "pipe", "ignore"] });
    try {
      const pid = Number(
        await new Promise<string>((done) =>
          child.stdout.once("data", (d: Buffer) => done(d.toString())),
        ),
      );
      for (let i = 0; i < 50 && !readFileSync(`/proc/${pid}/stat`, "utf8").includes(") Z"); i++) {
        await sleep(20);
      }
      expect(() => process.kill(pid, 0)).not.toThrow(); // signal 0 still answers
      expect(running(pid)).toBe(false);
      expect(running(process.pid)).toBe(true);
    } finally {
      child.kill("SIGKILL");
    }
  });
});

describe("the command line", () => {
  const base = ["f.bin", "https://uploads.example.com/a.bin"];

  it("takes credentials from the URL, which then no longer carries them", () => {
    const options = parseOptions(["f.bin", "https://alice:p%40ss@uploads.example.com/a.bin"], {});
    expect(options.credentials).toEqual({ user: "alice", password: "p@ss" });
    expect(options.url.href).toBe("https://uploads.example.com/a.bin");
  });

  it("reads the password of --user USER from BITS_UPLOAD_PASSWORD", () => {
    expect(parseOptions([...base, "--user", "alice"], { BITS_UPLOAD_PASSWORD: "s" })).toMatchObject(
      { credentials: { user: "alice", password: "s" } },
    );
    expect(() => parseOptions([...base, "--user", "alice"], {})).toThrow(/BITS_UPLOAD_PASSWORD/);
  });

  it("reads sizes and seconds, and refuses what it cannot use", () => {
    const options = parseOptions(
      [...base, "--max-fragment", "64KiB", "--limit-rate", "1MB", "--timeout", "2.5"],
      {},
    );
    expect(options).toMatchObject({ maxFragment: 65_536, rateLimit: 1_000_000, timeoutMs: 2500 });
    for (const bad of [
      ["--max-fragment", "4KB"],
      ["--limit-rate", "fast"],
      ["--retries", "-1"],
      ["--json", "--reply", "-"],
      ["--cert", "c.pem"],
      ["--bogus"],
    ]) {
      expect(() => parseOptions([...base, ...bad], {}), bad.join(" ")).toThrow(UsageError);
    }
    expect(() => parseOptions(["f.bin", "ftp://x/y"], {})).toThrow(/http/);
  });
});

describe("plain progress lines", () => {
  it("one line per 10 % (or per 10 s), with every other event", () => {
    const lines: string[] = [];
    let now = 0;
    const reporter = new LineReporter(
      (line) => lines.push(line),
      () => now,
    );
    for (let bytes = 0; bytes <= 1000; bytes += 10) {
      now += 100;
      reporter.event({ event: "progress", bytes, total: 1000 });
    }
    reporter.event({ event: "shrink", fragmentSize: 65_536 });
    expect(lines.length).toBe(12);
    expect(lines[10]).toMatch(/^1000 B of 1000 B \(100%\), 100 B\/s, ETA 0s$/);
    expect(lines[11]).toContain("at most 64.0 KiB");
  });
});
