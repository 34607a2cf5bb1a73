import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import bcrypt from "bcryptjs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sha256 } from "../support/checks.ts";
import { refusal, type Started, start, stop } from "../support/npm-start.ts";
import { download, httpTransport } from "../support/transports.ts";
import { bitsUpload, randomBytes } from "../support/windows-client.ts";

const alice = { user: "alice", password: "correct horse" };

describe("npm start with BITS_AUTH=basic BITS_HTPASSWD=<file> (docs/access.md)", () => {
  let dir: string;
  let server: Started;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "bits-auth-"));
    const htpasswd = join(dir, "htpasswd");
    writeFileSync(htpasswd, `alice:${bcrypt.hashSync("correct horse", 5)}\n`);
    server = await start({ BITS_AUTH: "basic", BITS_HTPASSWD: htpasswd });
  }, 90_000);

  afterAll(async () => {
    await stop(server);
    rmSync(dir, { recursive: true, force: true });
  });

  it("a plain upload without credentials gets 401 and stores nothing", async () => {
    const transport = httpTransport(server.url);
    try {
      await expect(bitsUpload(transport, "/no-creds.bin", randomBytes(1000, 1))).rejects.toThrow(
        /401/,
      );
    } finally {
      transport.close();
    }
    // Read as alice: the local server serves stored objects only to those who may upload them.
    expect((await download(`${server.url}/no-creds.bin`, { ...alice, status: 404 })).length).toBe(
      0,
    );
  });

  it("a client with the job's credentials answers the challenge and uploads byte for byte", async () => {
    const data = randomBytes(3 * 1024 * 1024 + 17, 2);
    const transport = httpTransport(server.url);
    try {
      const outcome = await bitsUpload(transport, "/reports/with-creds.bin", data, {
        credentials: { user: "alice", password: "correct horse" },
        initialFragment: 256 * 1024,
        maxFragment: 1024 * 1024,
      });
      expect(outcome.statuses[0]).toBe(401);
    } finally {
      transport.close();
    }
    expect(sha256(await download(`${server.url}/reports/with-creds.bin`, alice))).toBe(
      sha256(data),
    );
  });

  it("every request leaves one JSON audit line, refused ones too", () => {
    const audit = server.lines
      .filter((line) => line.startsWith("{"))
      .map((line) => JSON.parse(line) as Record<string, unknown>)
      .filter((entry) => entry.message === "request");
    const refused = audit.find((entry) => entry.status === 401);
    expect(refused).toMatchObject({
      level: "warn",
      packet: expect.any(String),
      client: "127.0.0.1",
    });
    expect(refused?.principal).toBeUndefined();
    const stored = audit.filter(
      (entry) => entry.principal === "alice" && entry.packet === "fragment",
    );
    expect(stored.length).toBeGreaterThan(0);
    for (const entry of stored) {
      expect(entry).toMatchObject({ auth: "basic", status: 200, key: "reports/with-creds.bin" });
      expect(typeof entry.session).toBe("string");
      expect(String(entry.session)).not.toContain("{");
    }
    const received = stored.reduce((sum, entry) => sum + Number(entry.received), 0);
    const written = stored.reduce((sum, entry) => sum + Number(entry.stored), 0);
    expect(received).toBe(3 * 1024 * 1024 + 17);
    expect(written).toBeGreaterThanOrEqual(received);
  });
});

describe("the local server refuses to be exposed without a choice", () => {
  it("a non-loopback HOST without BITS_AUTH does not start, and says what to set", async () => {
    const { code, errors } = await refusal({ HOST: "0.0.0.0", BITS_AUTH: "" });
    expect(code).toBe(1);
    expect(errors).toContain("BITS_AUTH");
  });

  it("Basic off loopback without TLS does not start", async () => {
    const { code, errors } = await refusal({
      HOST: "0.0.0.0",
      BITS_AUTH: "basic",
      BITS_HTPASSWD: "/nonexistent",
    });
    expect(code).toBe(1);
    expect(errors).toContain("TLS");
  });
});
