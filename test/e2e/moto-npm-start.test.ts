import { spawn } from "node:child_process";
import { readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BITS_PROTOCOL_GUID } from "../../functions/bits/constants.ts";
import { sha256 } from "../support/checks.ts";
import { awaitEvents, type Started, start, stop } from "../support/npm-start.ts";
import { download, httpTransport, packet, type Transport } from "../support/transports.ts";
import { bitsUpload, randomBytes } from "../support/windows-client.ts";

/**
 * `npm start` with BITS_STAND_INS=moto: the server on its own moto_server, as an operator runs
 * it (docs/platform.md, "Two emulations"). A plain upload, its completion event from the
 * table's stream, and an operator's cancel with `bits-sessions`.
 */

const ROOT = resolve(import.meta.dirname, "../..");
const LOCAL_FILE = join(tmpdir(), `bits-local-moto-${process.pid}-${Date.now()}.json`);
const NOT_FOUND = "0x8020001F";

/** `bits-sessions` as installed, pointed at this server's file; bounded to 60 s. */
function sessionsCli(args: string[]) {
  const env: Record<string, string> = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (value !== undefined && !name.startsWith("BITS_")) env[name] = value;
  }
  const child = spawn(process.execPath, ["cli/bin/bits-sessions.mjs", ...args], {
    cwd: ROOT,
    env: { ...env, NODE_NO_WARNINGS: "1", BITS_LOCAL_FILE: LOCAL_FILE },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  child.stdout.on("data", (chunk: Buffer) => {
    stdout += chunk.toString();
  });
  return new Promise<{ code: number | null; stdout: string }>((done) => {
    const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
    child.once("close", (code) => {
      clearTimeout(timer);
      done({ code, stdout });
    });
  });
}

describe("npm start on moto (BITS_STAND_INS=moto)", () => {
  let server: Started;
  let transport: Transport & { close(): void };

  beforeAll(async () => {
    server = await start({ BITS_STAND_INS: "moto", BITS_LOCAL_FILE: LOCAL_FILE });
    transport = httpTransport(server.url);
  }, 90_000);

  afterAll(async () => {
    transport?.close();
    await stop(server);
    rmSync(LOCAL_FILE, { force: true });
  });

  it("says it runs on one moto endpoint for S3 and DynamoDB", () => {
    const written = JSON.parse(readFileSync(LOCAL_FILE, "utf8")) as { env: Record<string, string> };
    expect(written.env.BITS_S3_ENDPOINT).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(written.env.BITS_DYNAMODB_ENDPOINT).toBe(written.env.BITS_S3_ENDPOINT);
  });

  it("a Windows-like upload is stored byte for byte and announced once", async () => {
    const data = randomBytes(6 * 1024 * 1024 + 17, 81);
    const outcome = await bitsUpload(transport, "/moto/plain.bin", data, {
      initialFragment: 64 * 1024,
      maxFragment: 1024 * 1024,
    });
    expect(sha256(await download(`${server.url}/moto/plain.bin`))).toBe(sha256(data));
    const [event, ...more] = await awaitEvents(server, "moto/plain.bin");
    expect(more).toEqual([]);
    expect(event).toMatchObject({
      "detail-type": "Upload Completed",
      detail: { sessionId: outcome.sessionIds[0], size: data.length, stored: true },
    });
  });

  it("an operator's cancel ends a session: the client learns it is gone, an event says why", async () => {
    const path = "/moto/cancelled.bin";
    const data = randomBytes(300_000, 82);
    const created = await packet(transport, path, {
      "BITS-Packet-Type": "Create-Session",
      "BITS-Supported-Protocols": BITS_PROTOCOL_GUID,
    });
    const id = created.headers.get("bits-session-id") ?? "";
    const fragment = (first: number, end: number) =>
      packet(
        transport,
        path,
        {
          "BITS-Packet-Type": "Fragment",
          "BITS-Session-Id": id,
          "Content-Range": `bytes ${first}-${end - 1}/${data.length}`,
        },
        data.subarray(first, end),
      );
    expect((await fragment(0, 100_000)).status).toBe(200);
    const run = await sessionsCli(["cancel", id, "--json"]);
    expect(run.code).toBe(0);
    expect(JSON.parse(run.stdout)).toMatchObject({ result: "cancelled", session: { id } });
    expect((await fragment(100_000, 200_000)).headers.get("bits-error-code")).toBe(NOT_FOUND);
    const [event] = await awaitEvents(server, "moto/cancelled.bin");
    expect(event).toMatchObject({
      "detail-type": "Upload Cancelled",
      detail: { sessionId: id, reason: "cancelled by an operator" },
    });
  });
});
