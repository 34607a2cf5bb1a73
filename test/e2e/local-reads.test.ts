import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import bcrypt from "bcryptjs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sha256 } from "../support/checks.ts";
import { type Started, start, stop } from "../support/npm-start.ts";
import { download, httpTransport } from "../support/transports.ts";
import { bitsUpload, randomBytes } from "../support/windows-client.ts";

const alice = { user: "alice", password: "correct horse" };
const bob = { user: "bob", password: "battery staple" };

/** A GET or HEAD of a stored object: its status and its bytes. */
function read(
  url: string,
  method: "GET" | "HEAD",
  credentials?: { user: string; password: string },
): Promise<{ status: number; body: Buffer; challenge?: string | undefined }> {
  const headers: Record<string, string> = credentials
    ? {
        Authorization: `Basic ${Buffer.from(`${credentials.user}:${credentials.password}`).toString("base64")}`,
      }
    : {};
  return new Promise((done, fail) => {
    request(url, { method, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (chunk: Buffer) => chunks.push(chunk));
      res.on("end", () =>
        done({
          status: res.statusCode ?? 0,
          body: Buffer.concat(chunks),
          challenge: res.headers["www-authenticate"],
        }),
      );
      res.on("error", fail);
    })
      .on("error", fail)
      .end();
  });
}

/**
 * Issue 18, finding 1: the local server served a stored object to anyone who asked. A GET or
 * HEAD of a stored object now needs the authentication an upload needs, and reads only what
 * the principal may write (docs/security.md, "The local server").
 */
describe("npm start with Basic and a prefix per principal: who may read a stored object", () => {
  let dir: string;
  let server: Started;
  const data = randomBytes(200_000, 31);

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "bits-reads-"));
    const htpasswd = join(dir, "htpasswd");
    writeFileSync(
      htpasswd,
      `alice:${bcrypt.hashSync(alice.password, 5)}\nbob:${bcrypt.hashSync(bob.password, 5)}\n`,
    );
    server = await start({
      BITS_AUTH: "basic",
      BITS_HTPASSWD: htpasswd,
      BITS_PRINCIPAL_PREFIX: "{principal}",
    });
    const transport = httpTransport(server.url);
    try {
      await bitsUpload(transport, "/alice/a.txt", data, { credentials: alice });
    } finally {
      transport.close();
    }
  }, 120_000);

  afterAll(async () => {
    await stop(server);
    rmSync(dir, { recursive: true, force: true });
  });

  it("without credentials, a GET and a HEAD are challenged and get no bytes", async () => {
    for (const method of ["GET", "HEAD"] as const) {
      const answer = await read(`${server.url}/alice/a.txt`, method);
      expect(answer.status).toBe(401);
      expect(answer.challenge).toMatch(/^Basic realm=/);
      expect(answer.body.length).toBe(0);
    }
  });

  it("a wrong password is challenged too", async () => {
    const answer = await read(`${server.url}/alice/a.txt`, "GET", { ...alice, password: "no" });
    expect(answer.status).toBe(401);
    expect(answer.body.length).toBe(0);
  });

  it("another principal may not read outside its own prefix, whether the object exists or not", async () => {
    for (const path of ["/alice/a.txt", "/alice/none.txt"]) {
      const answer = await read(`${server.url}${path}`, "GET", bob);
      expect(answer.status).toBe(403);
      expect(answer.body.length).toBe(0);
    }
    expect((await read(`${server.url}/bob/none.txt`, "GET", bob)).status).toBe(404);
  });

  it("the principal that may write the key reads it, byte for byte", async () => {
    expect(sha256(await download(`${server.url}/alice/a.txt`, alice))).toBe(sha256(data));
    const head = await read(`${server.url}/alice/a.txt`, "HEAD", alice);
    expect(head.status).toBe(200);
  });
});
