import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { ListObjectsV2Command, type S3Client, UploadPartCommand } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BITS_PROTOCOL_GUID, MiB } from "../../functions/bits/constants.ts";
import { sessionDir } from "../../functions/service/staging.ts";
import { standInS3 } from "../../infra/stand-ins.ts";
import { sha256 } from "../support/checks.ts";
import { type Started, start, stop, warnings } from "../support/npm-start.ts";
import { download, httpTransport, packet, type Transport } from "../support/transports.ts";
import { bitsUpload, randomBytes } from "../support/windows-client.ts";

/**
 * `bits-sessions` (docs/client.md) against `npm start` and its stand-ins, while uploads
 * are in flight: the progress it lists is what the clients sent, and its cancel releases a
 * session as the client's own Cancel-Session would.
 */

const ROOT = resolve(import.meta.dirname, "../..");
const NOT_FOUND = "0x8020001F";
const LOCAL_FILE = join(tmpdir(), `bits-local-${process.pid}-${Date.now()}.json`);

interface Run {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** The environment without the BITS_* variables of whoever runs the tests. */
function cleanEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env = Object.fromEntries(
    Object.entries(process.env).filter(([name]) => !name.startsWith("BITS_")),
  );
  return { ...env, NODE_NO_WARNINGS: "1", BITS_LOCAL_FILE: LOCAL_FILE, ...extra };
}

/** Runs the command as installed (its bin), or through `npm run sessions`; bounded to 60 s. */
function cli(args: string[], extra: Record<string, string> = {}, via: "bin" | "npm" = "bin") {
  const [command, prefix] =
    via === "bin"
      ? [process.execPath, ["cli/bin/bits-sessions.mjs"]]
      : ["npm", ["run", "--silent", "sessions", "--"]];
  const child = spawn(command, [...prefix, ...args], {
    cwd: ROOT,
    env: cleanEnv(extra),
    stdio: ["ignore", "pipe", "pipe"],
    shell: via === "npm" && process.platform === "win32",
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (chunk: Buffer) => {
    stdout += chunk.toString();
  });
  child.stderr.on("data", (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  return new Promise<Run>((done) => {
    const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
    child.once("close", (code) => {
      clearTimeout(timer);
      done({ code, stdout, stderr });
    });
  });
}

interface Listed {
  readonly id: string;
  readonly state: string;
  readonly principal: string;
  readonly key: string;
  readonly received: number;
  readonly total: number | null;
  readonly percent: number | null;
  readonly parts: number;
  readonly bytesStaged: number;
  readonly uploadId: string;
  readonly idleSeconds: number;
}

async function listed(...flags: string[]): Promise<Listed[]> {
  const run = await cli(["list", "--json", ...flags]);
  expect(run).toMatchObject({ code: 0, stderr: "" });
  return (JSON.parse(run.stdout) as { sessions: Listed[] }).sessions;
}

/** A transport that remembers what the last Acks said: the session ID and the offset. */
function recording(inner: Transport) {
  const seen = { sessionId: "", received: -1 };
  const transport: Transport = async (request) => {
    const response = await inner(request);
    seen.sessionId = response.headers.get("bits-session-id") ?? seen.sessionId;
    const received = response.headers.get("bits-received-content-range");
    if (received !== undefined) seen.received = Number(received);
    return response;
  };
  return { transport, seen };
}

describe("bits-sessions against npm start, uploads in flight", () => {
  let server: Started;
  let http: Transport & { close(): void };
  let s3: S3Client;
  let bucket: string;
  let stagingPrefix: string;
  const a = { path: "/ops/a.bin", data: randomBytes(12 * MiB + 3, 21), id: "" };
  const b = { path: "/ops/b.bin", data: randomBytes(3 * MiB, 22), id: "", received: 0, upload: "" };
  const c = { path: "/ops/c.bin", id: "" };

  const create = async (path: string) => {
    const response = await packet(http, path, {
      "BITS-Packet-Type": "Create-Session",
      "BITS-Supported-Protocols": BITS_PROTOCOL_GUID,
    });
    const id = response.headers.get("bits-session-id");
    if (!id) throw new Error(`Create-Session answered ${response.status}`);
    return id;
  };
  const fragment = (path: string, id: string, data: Uint8Array, first: number, end: number) =>
    packet(
      http,
      path,
      {
        "BITS-Packet-Type": "Fragment",
        "BITS-Session-Id": id,
        "Content-Range": `bytes ${first}-${end - 1}/${data.length}`,
      },
      data.subarray(first, end),
    );
  const sendA = async (from: number, to: number) => {
    for (let at = from; at < to; at += MiB) {
      const response = await fragment(a.path, a.id, a.data, at, Math.min(to, at + MiB));
      expect(response.status).toBe(200);
    }
  };
  const staged = async (id: string) => {
    const prefix = `${stagingPrefix}${sessionDir(id)}/`;
    const out = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix }));
    return out.Contents?.length ?? 0;
  };

  beforeAll(async () => {
    server = await start({ BITS_LOCAL_FILE: LOCAL_FILE });
    http = httpTransport(server.url);
    const written = JSON.parse(readFileSync(LOCAL_FILE, "utf8")) as {
      url: string;
      env: Record<string, string>;
    };
    expect(written.url).toBe(server.url);
    s3 = standInS3(written.env.BITS_S3_ENDPOINT as string);
    bucket = written.env.BITS_BUCKET as string;
    stagingPrefix = written.env.BITS_STAGING_PREFIX as string;

    // A: 9 MiB of 12 MiB + 3 in 1 MiB fragments: one 8 MiB part recorded, 1 MiB staged.
    a.id = await create(a.path);
    await sendA(0, 9 * MiB);
    // B: a Windows-like client stopped after Create-Session and four growing fragments.
    const { transport, seen } = recording(http);
    await expect(
      bitsUpload(transport, b.path, b.data, {
        initialFragment: 64 * 1024,
        maxFragment: MiB,
        maxRequests: 5,
      }),
    ).rejects.toThrow(/gave up after 5 requests/);
    b.id = seen.sessionId;
    b.received = seen.received;
    // C: created, no fragment yet.
    c.id = await create(c.path);
  }, 180_000);

  afterAll(async () => {
    http?.close();
    s3?.destroy();
    await stop(server);
    rmSync(LOCAL_FILE, { force: true });
  });

  it("lists each open session's progress as the clients sent it", async () => {
    expect(b.received).toBe((64 + 128 + 256 + 512) * 1024);
    // Both reads at once: neither changes anything.
    const [sessions, table] = await Promise.all([listed(), cli(["list"])]);
    expect(sessions.map((session) => session.id)).toEqual([a.id, b.id, c.id]);
    const [first, second, third] = sessions;
    expect(first).toMatchObject({
      state: "open",
      principal: "anonymous",
      key: "ops/a.bin",
      received: 9 * MiB,
      total: 12 * MiB + 3,
      percent: 74.9,
      parts: 1,
      bytesStaged: MiB,
    });
    expect(second).toMatchObject({
      state: "open",
      key: "ops/b.bin",
      received: b.received,
      total: 3 * MiB,
      percent: Math.floor((b.received * 1000) / (3 * MiB)) / 10,
      parts: 0,
      bytesStaged: b.received,
    });
    expect(third).toMatchObject({ key: "ops/c.bin", received: 0, total: null, percent: null });
    b.upload = second?.uploadId ?? "";
    for (const session of sessions) expect(session.idleSeconds).toBeLessThan(120);

    expect(table.code).toBe(0);
    const lines = table.stdout.trimEnd().split("\n");
    for (const line of lines) expect(line.length).toBeLessThanOrEqual(100);
    expect(lines[0]).toMatch(/^SESSION\s+STATE\s+PRINCIPAL\s+KEY\s+RECEIVED\s+TOTAL\s+%/);
    expect(lines[1]).toMatch(
      new RegExp(
        `^${a.id.slice(1, 9)}\\s+open\\s+anonymous\\s+ops/a\\.bin\\s+9\\.0 MiB\\s+12\\.0 MiB\\s+74\\.9%\\s+1\\s`,
      ),
    );
    expect(lines[2]).toMatch(/ops\/b\.bin\s+960 KiB\s+3\.0 MiB\s+31\.2%\s+0\s/);
    expect(lines.at(-1)).toBe("3 open sessions.");
  });

  it("shows one session by the start of its ID, or as JSON by its full ID", async () => {
    const [text, json, unknown] = await Promise.all([
      cli(["show", a.id.slice(1, 9)], {}, "npm"),
      cli(["show", a.id, "--json"]),
      cli(["show", "{00000000-0000-4000-8000-000000000000}"]),
    ]);
    expect(text.code).toBe(0);
    expect(text.stdout).toContain(`Session        ${a.id}`);
    expect(text.stdout).toContain(
      `Received       9.0 MiB of 12.0 MiB (74.9%; ${9 * MiB} of ${12 * MiB + 3} bytes)`,
    );
    expect(text.stdout).toContain("In parts       8.0 MiB in 1 part(s)");
    expect(JSON.parse(json.stdout)).toMatchObject({ id: a.id, received: 9 * MiB, parts: 1 });

    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/no session \{00000000-.*in the local server at/);
  });

  it("cancels a session: its storage released, the client told it is gone, an event announced", async () => {
    expect(await staged(b.id)).toBeGreaterThan(0);

    const run = await cli(["cancel", b.id, "--json"]);
    expect(run.code).toBe(0);
    expect(JSON.parse(run.stdout)).toMatchObject({
      result: "cancelled",
      session: { id: b.id, state: "cancelled", outcome: { kind: "cancelled" } },
    });

    expect(await staged(b.id)).toBe(0);
    const part = s3.send(
      new UploadPartCommand({
        Bucket: bucket,
        Key: "ops/b.bin",
        UploadId: b.upload,
        PartNumber: 1,
        Body: new Uint8Array(1),
      }),
    );
    await expect(part).rejects.toMatchObject({ name: "NoSuchUpload" });
    // The server still remembers the session as open; its next fragment learns otherwise.
    const next = await fragment(b.path, b.id, b.data, b.received, b.received + 64 * 1024);
    expect(next.headers.get("bits-error-code")).toBe(NOT_FOUND);
    expect(await staged(b.id)).toBe(0);

    const event = await awaitEvent(server, b.id);
    expect(event, warnings(server)).toMatchObject({
      "detail-type": "Upload Cancelled",
      detail: { key: "ops/b.bin", stored: false, bytesHeld: b.received },
    });
    const all = await listed("--all");
    expect(all.map((session) => [session.id, session.state])).toEqual([
      [a.id, "open"],
      [b.id, "cancelled"],
      [c.id, "open"],
    ]);
    const again = await cli(["cancel", b.id]);
    expect(again).toMatchObject({ code: 0, stdout: expect.stringContaining("already cancelled") });
  });

  it("a session that completes leaves the list, with its object byte for byte; it cannot be cancelled", async () => {
    await sendA(9 * MiB, a.data.length);
    const close = await packet(http, a.path, {
      "BITS-Packet-Type": "Close-Session",
      "BITS-Session-Id": a.id,
    });
    expect(close.status).toBe(200);
    expect(sha256(await download(`${server.url}${a.path}`))).toBe(sha256(a.data));
    expect((await listed()).map((session) => session.id)).toEqual([c.id]);
    const run = await cli(["cancel", a.id.slice(1, 9)]);
    expect(run.code).toBe(1);
    expect(run.stderr).toContain("is closed (completed): nothing to cancel");
  });

  it("reads the same table by name, as the server's variables name it", async () => {
    const written = JSON.parse(readFileSync(LOCAL_FILE, "utf8")) as { env: Record<string, string> };
    const run = await cli(["list", "--json", "--table", written.env.BITS_TABLE as string], {
      BITS_DYNAMODB_ENDPOINT: written.env.BITS_DYNAMODB_ENDPOINT as string,
      AWS_ACCESS_KEY_ID: "local",
      AWS_SECRET_ACCESS_KEY: "local",
    });
    expect(run.code).toBe(0);
    const sessions = (JSON.parse(run.stdout) as { sessions: Listed[] }).sessions;
    expect(sessions.map((session) => session.id)).toEqual([c.id]);
  });

  it("fails clearly: unknown command, no local server, an unreachable table", async () => {
    // A server that is running (this process) but whose DynamoDB endpoint answers nothing.
    const unreachable = join(tmpdir(), `bits-local-unreachable-${process.pid}.json`);
    const written = JSON.parse(readFileSync(LOCAL_FILE, "utf8")) as { env: object };
    writeFileSync(
      unreachable,
      JSON.stringify({
        ...written,
        pid: process.pid,
        env: { ...written.env, BITS_DYNAMODB_ENDPOINT: "http://127.0.0.1:9" },
      }),
    );
    try {
      // Three independent runs, at once.
      const [usage, missing, run] = await Promise.all([
        cli(["remove", c.id]),
        cli(["list"], { BITS_LOCAL_FILE: join(tmpdir(), "no-such-file.json") }),
        cli(["list"], { BITS_LOCAL_FILE: unreachable }),
      ]);
      expect(usage).toMatchObject({ code: 2, stderr: expect.stringContaining("unknown command") });

      expect(missing.code).toBe(1);
      expect(missing.stderr).toContain("no local server found");

      expect(run.code).toBe(1);
      expect(run.stderr).toMatch(/cannot use .*DynamoDB Scan failed/);
    } finally {
      rmSync(unreachable, { force: true });
    }
  });

  it("bits-upload, cancelled by an operator mid-upload, says so and does not start over", async () => {
    const dir = mkdtempSync(join(tmpdir(), "bits-cancelled-"));
    try {
      const path = join(dir, "cancelled.bin");
      // 16 s at 512 KiB/s: the cancel (a CLI's start on a loaded machine) comes long before the
      // end; the run ends at the cancel, whatever the size.
      writeFileSync(path, randomBytes(8 * MiB, 41));
      const client = spawn(
        process.execPath,
        [
          "cli/bin/bits-upload.mjs",
          path,
          `${server.url}/ops/cancelled.bin`,
          "--limit-rate",
          "512KiB",
        ],
        { cwd: ROOT, env: cleanEnv({}), stdio: ["ignore", "pipe", "pipe"] },
      );
      let stderr = "";
      client.stderr.on("data", (chunk: Buffer) => {
        stderr += chunk.toString();
      });
      const exited = new Promise<number | null>((done) => client.once("close", done));
      const killer = setTimeout(() => client.kill("SIGKILL"), 60_000);
      let id: string | undefined;
      for (let i = 0; i < 300 && id === undefined; i++) {
        await new Promise((done) => setTimeout(done, 50));
        try {
          const state = JSON.parse(readFileSync(`${path}.bits-upload.json`, "utf8"));
          if (state.offset > 0) id = state.sessionId as string;
        } catch {
          // not written yet
        }
      }
      expect(id, stderr).toBeDefined();
      expect((await cli(["cancel", id as string])).code).toBe(0);
      const code = await exited;
      clearTimeout(killer);
      expect(code, stderr).toBe(1);
      expect(stderr).toContain("an operator cancelled this upload on the server");
      expect(stderr).toContain("cancelled by an operator");
      expect(stderr).not.toContain("starting over");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

/** The event line the server printed for a session, waited for boundedly (40 s). */
async function awaitEvent(server: Started, id: string) {
  for (let i = 0; i < 400; i++) {
    const line = server.lines.find(
      (text) => text.startsWith('{"detail-type"') && text.includes(JSON.stringify(id)),
    );
    if (line !== undefined) return JSON.parse(line) as Record<string, unknown>;
    await new Promise((done) => setTimeout(done, 100));
  }
  return undefined;
}
