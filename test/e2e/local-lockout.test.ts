import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import bcrypt from "bcryptjs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BITS_PROTOCOL_GUID } from "../../functions/bits/constants.ts";
import { makeCertificates } from "../support/certificates.ts";
import { sha256 } from "../support/checks.ts";
import { type Started, start, stop } from "../support/npm-start.ts";
import { httpTransport, packet } from "../support/transports.ts";
import { randomBytes } from "../support/windows-client.ts";

/**
 * Password guessing against `npm start` with BITS_AUTH=basic over TLS (docs/security.md,
 * "Password guessing"): ten wrong passwords from one address lock it out, the right password
 * included, with a 503 that BITS treats as "retry later"; a client whose credentials the server
 * verified before the lock keeps uploading. The htpasswd entries have cost 10, as `htpasswd -B`
 * writes them, so a counted guess pays a real bcrypt.
 */

const basic = (user: string, password: string) => ({
  Authorization: `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`,
});
const DATA = randomBytes(600_000, 0x10c4);
const PATH = "/reports/bob.bin";

describe("npm start, BITS_AUTH=basic over TLS: a guesser is locked out before bcrypt", () => {
  let dir: string;
  let server: Started;
  let ca: Buffer;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "bits-lockout-"));
    const certificates = makeCertificates(dir);
    ca = certificates.ca;
    const htpasswd = join(dir, "htpasswd");
    const entry = (user: string, password: string) => `${user}:${bcrypt.hashSync(password, 10)}`;
    writeFileSync(htpasswd, `${entry("alice", "alice-pw")}\n${entry("bob", "bob-pw")}\n`);
    server = await start({
      BITS_AUTH: "basic",
      BITS_HTPASSWD: htpasswd,
      BITS_TLS_CERT: certificates.files.serverCert,
      BITS_TLS_KEY: certificates.files.serverKey,
    });
  }, 90_000);

  afterAll(async () => {
    await stop(server);
    rmSync(dir, { recursive: true, force: true });
  });

  it("10 wrong passwords, then the right one gets 503 + Retry-After + 0x801901F7; bob's upload goes on", async () => {
    expect(server.url.startsWith("https://")).toBe(true);
    const transport = httpTransport(server.url, { ca });
    const timed = async <T>(work: () => Promise<T>) => {
      const started = performance.now();
      const result = await work();
      return { result, ms: performance.now() - started };
    };
    try {
      // bob starts uploading: the server verifies his password once and remembers it.
      const bob = basic("bob", "bob-pw");
      const created = await packet(transport, PATH, {
        ...bob,
        "BITS-Packet-Type": "Create-Session",
        "BITS-Supported-Protocols": BITS_PROTOCOL_GUID,
      });
      expect(created.status).toBe(200);
      const id = created.headers.get("bits-session-id") ?? "";
      const fragment = (first: number, last: number) =>
        packet(
          transport,
          PATH,
          {
            ...bob,
            "BITS-Packet-Type": "Fragment",
            "BITS-Session-Id": id,
            "Content-Range": `bytes ${first}-${last}/${DATA.length}`,
          },
          DATA.subarray(first, last + 1),
        );
      expect((await fragment(0, 299_999)).status).toBe(200);

      // Someone at the same address guesses alice's password.
      const guesses = [];
      for (let i = 0; i < 10; i++) {
        guesses.push(
          await timed(() =>
            packet(transport, "/a.bin", {
              ...basic("alice", `guess-${i}`),
              "BITS-Packet-Type": "Ping",
            }),
          ),
        );
      }
      expect(guesses.map((guess) => guess.result.status)).toEqual(Array(10).fill(401));
      const locked = await timed(() =>
        packet(transport, "/a.bin", { ...basic("alice", "alice-pw"), "BITS-Packet-Type": "Ping" }),
      );
      const right = locked.result;
      expect(right.status).toBe(503);
      expect(right.headers.get("bits-packet-type")).toBe("Ack");
      expect(right.headers.get("bits-error-code")).toBe("0x801901F7");
      expect(right.headers.get("bits-error-context")).toBe("0x5");
      const retryAfter = Number(right.headers.get("retry-after"));
      expect(retryAfter).toBeGreaterThan(0);
      expect(retryAfter).toBeLessThanOrEqual(15 * 60);
      // Measured, not asserted (a shared machine): a counted guess pays bcrypt, the locked one not.
      const median = [...guesses.map((guess) => guess.ms)].sort((a, b) => a - b)[5] ?? 0;
      console.log(
        `lockout: wrong password (bcrypt cost 10) median ${median.toFixed(0)} ms; right password while locked ${locked.ms.toFixed(0)} ms`,
      );

      // bob's verified credentials still pass from the locked address: he finishes and reads back.
      expect((await fragment(300_000, DATA.length - 1)).status).toBe(200);
      const closed = await packet(transport, PATH, {
        ...bob,
        "BITS-Packet-Type": "Close-Session",
        "BITS-Session-Id": id,
      });
      expect(closed.status).toBe(200);
      const stored = await transport({
        method: "GET",
        path: PATH,
        headers: bob,
        body: new Uint8Array(0),
      });
      expect(stored.status).toBe(200);
      expect(sha256(stored.body ?? new Uint8Array(0))).toBe(sha256(DATA));
    } finally {
      transport.close();
    }

    // The audit trail: ten refusals that checked a password, then one answered before any check.
    const audit = server.lines
      .filter((line) => line.startsWith("{"))
      .map((line) => JSON.parse(line) as Record<string, unknown>)
      .filter((entry) => entry.message === "request" && entry.path === "/a.bin");
    expect(audit.map((entry) => entry.status)).toEqual([...Array(10).fill(401), 503]);
    expect(audit.at(-1)?.reason).toBe("too many refused passwords");
    expect(audit.slice(0, 10).every((entry) => entry.reason !== "too many refused passwords")).toBe(
      true,
    );
  });
});
