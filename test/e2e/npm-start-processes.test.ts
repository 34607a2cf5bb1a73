import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { findLiveTarget, serverFilePath } from "../../functions/adapters/node/local-target.ts";
import { start, stop } from "../support/npm-start.ts";
import {
  commandOf,
  isAlive,
  isLoopback,
  listeningSockets,
  processTree,
} from "../support/processes.ts";

const ROOT = resolve(import.meta.dirname, "../..");

/**
 * `npm start` exactly as a user runs it: npm, the shell it runs the script in, Node and
 * DynamoDB Local's Java, in a process group of their own as a terminal would make it (so that
 * a Ctrl+C can be sent to all of them at once).
 */
function npmStart(port: number) {
  const child = spawn("npm", ["start"], {
    cwd: ROOT,
    env: { ...process.env, PORT: String(port), BITS_LOCAL_FILE: "none", BITS_LOG_LEVEL: "warn" },
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  let output = "";
  child.stdout?.on("data", (chunk: Buffer) => {
    output += chunk.toString();
  });
  child.stderr?.on("data", (chunk: Buffer) => {
    output += chunk.toString();
  });
  const exited = new Promise<number | null>((done) => child.once("exit", (code) => done(code)));
  return { child, exited, output: () => output };
}

/** Waits (bounded, 120 s) until the server says it listens, or npm has exited. */
async function started(run: ReturnType<typeof npmStart>): Promise<boolean> {
  for (let i = 0; i < 1200; i++) {
    if (run.output().includes("listening on")) return true;
    if (run.child.exitCode !== null) return false;
    await new Promise((done) => setTimeout(done, 100));
  }
  throw new Error(`npm start neither listened nor ended in 120 s: ${run.output()}`);
}

/** Waits (bounded, 20 s) until none of `pids` runs; answers those that still do. */
async function gone(pids: readonly number[]): Promise<string[]> {
  for (let i = 0; i < 200; i++) {
    if (pids.every((pid) => !isAlive(pid))) return [];
    await new Promise((done) => setTimeout(done, 100));
  }
  return pids.filter(isAlive).map((pid) => `${pid} ${commandOf(pid)}`);
}

/** A port held by this process, as another program would hold 8080. */
function occupiedPort(): Promise<Server> {
  return new Promise((done) => {
    const server = createServer();
    server.listen(0, "127.0.0.1", () => done(server));
  });
}

const freePort = async () => {
  const server = await occupiedPort();
  const { port } = server.address() as { port: number };
  await new Promise((done) => server.close(done));
  return port;
};

const leftovers: ChildProcess[] = [];
afterAll(() => {
  // Only if a test failed half-way: its own process group, by its id.
  for (const child of leftovers) {
    if (child.pid !== undefined && child.exitCode === null) {
      try {
        process.kill(-child.pid, "SIGKILL");
      } catch {}
    }
  }
});

// The three starts are independent (a port, a process group and stand-ins of their own each):
// they run at once, so that their waits for Java and the stand-ins overlap.
describe.skipIf(process.platform !== "linux")("npm start owns its processes", () => {
  for (const [how, signal] of [
    ["Ctrl+C (SIGINT to the process group)", "group"],
    ["SIGTERM to npm alone", "npm"],
  ] as const) {
    it.concurrent(`${how} leaves nothing running, and the stand-ins listened on loopback only`, async ({
      expect,
    }) => {
      const run = npmStart(await freePort());
      leftovers.push(run.child);
      expect(await started(run), run.output()).toBe(true);
      const pids = processTree(run.child.pid as number);
      // npm, the shell, Node and Java at least.
      expect(pids.length, pids.map(commandOf).join("\n")).toBeGreaterThanOrEqual(4);
      expect(pids.some((pid) => commandOf(pid).startsWith("java"))).toBe(true);
      const sockets = listeningSockets(pids);
      // The server, fauxqs and DynamoDB Local.
      expect(sockets.length).toBeGreaterThanOrEqual(3);
      expect(sockets.filter((socket) => !isLoopback(socket.address))).toEqual([]);

      if (signal === "group") process.kill(-(run.child.pid as number), "SIGINT");
      else run.child.kill("SIGTERM");
      expect(await gone(pids)).toEqual([]);
    }, 240_000);
  }

  it.concurrent("a port already taken fails the start, and leaves nothing running", async ({
    expect,
  }) => {
    const taken = await occupiedPort();
    try {
      const { port } = taken.address() as { port: number };
      const run = npmStart(port);
      leftovers.push(run.child);
      // Every process of the tree while it starts, whatever had started when the port was found
      // taken.
      const seen = new Set<number>();
      while (run.child.exitCode === null) {
        for (const pid of processTree(run.child.pid as number)) seen.add(pid);
        await Promise.race([run.exited, new Promise((done) => setTimeout(done, 100))]);
      }
      expect(await run.exited).not.toBe(0);
      expect(run.output()).toContain("EADDRINUSE");
      expect([...seen].length).toBeGreaterThanOrEqual(3);
      expect(await gone([...seen])).toEqual([]);
    } finally {
      await new Promise((done) => taken.close(done));
    }
  }, 240_000);
});

describe("two servers in one directory", () => {
  const dir = mkdtempSync(join(tmpdir(), "bits-two-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("each is found while it runs, whichever started last and whichever stops first", async () => {
    const file = join(dir, ".bits-local.json");
    const first = await start({ BITS_LOCAL_FILE: file });
    let second: Awaited<ReturnType<typeof start>> | undefined;
    try {
      second = await start({ BITS_LOCAL_FILE: file });
      const port = (url: string) => Number(new URL(url).port);
      expect(existsSync(serverFilePath(file, port(first.url)))).toBe(true);
      expect(existsSync(serverFilePath(file, port(second.url)))).toBe(true);
      const both = findLiveTarget(file);
      expect(both.target?.url).toBe(second.url);
      expect(both.others).toEqual([serverFilePath(file, port(first.url))]);
      // The one that wrote the shared file stops: the other is still found.
      await stop(second);
      const left = findLiveTarget(file);
      expect(left.target?.url).toBe(first.url);
      expect(existsSync(serverFilePath(file, port(second.url)))).toBe(false);
    } finally {
      await stop(second);
      await stop(first);
    }
    expect(findLiveTarget(file).target).toBeUndefined();
  }, 300_000);
});
