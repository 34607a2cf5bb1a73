import { execFileSync, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { SignedUrlAuthenticator } from "../../../functions/auth/signed-url.ts";
import type { AuthRequest } from "../../../functions/auth/types.ts";
import { destinationPath } from "../../../functions/bits/key.ts";

const dir = mkdtempSync(join(tmpdir(), "sign-url-"));
const keysFile = join(dir, "url-keys");
const KEYS = `# rotated\nk2 ${randomBytes(32).toString("base64url")}\nk1 ${randomBytes(32).toString("base64")}\n`;
writeFileSync(keysFile, KEYS);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/**
 * `npm run sign-url` runs `tsx scripts/sign-url.ts`: the same script in one Node process with
 * tsx's loader, without npx's and tsx's own processes in front (two seconds a run, eight runs).
 */
const SIGN_URL = ["--import", "tsx", "scripts/sign-url.ts"];
const signUrl = (...args: string[]) =>
  execFileSync(process.execPath, [...SIGN_URL, ...args], { encoding: "utf8" });

async function verify(printed: string) {
  const url = new URL(printed.trim());
  const request: AuthRequest = {
    destination: destinationPath(url.pathname),
    query: new Map(url.searchParams),
    headers: new Map(),
    secure: true,
  };
  const source = { source: keysFile, current: async () => KEYS };
  return new SignedUrlAuthenticator(source).authenticate(request, Date.now());
}

describe("npm run sign-url", () => {
  it("prints a URL the server accepts, with the size, subject and expiry asked for", async () => {
    const before = Math.floor(Date.now() / 1000);
    const out = signUrl(
      "https://up.example/a/b.zip",
      "--keys",
      keysFile,
      "--max-size",
      "2GiB",
      "--subject",
      "alice",
      "--expires-in",
      "12h",
    );
    expect(out.endsWith("\n")).toBe(true);
    const result = await verify(out);
    expect(result).toMatchObject({
      kind: "ok",
      principal: {
        name: "alice",
        grant: { path: "/a/b.zip", maxBytes: 2 * 1024 ** 3, keyId: "k2" },
      },
    });
    const expiresAt = result?.kind === "ok" ? (result.principal.grant?.expiresAt ?? 0) : 0;
    expect(expiresAt - before).toBeGreaterThanOrEqual(12 * 3600);
    expect(expiresAt - before).toBeLessThan(12 * 3600 + 60);
  });

  it("signs with another listed key and a prefix when asked", async () => {
    const out = signUrl(
      "https://up.example/drop/file.bin",
      "--keys",
      keysFile,
      "--key-id",
      "k1",
      "--prefix",
      "/drop/",
    );
    expect(await verify(out)).toMatchObject({
      kind: "ok",
      principal: { name: "signed-url", grant: { path: "/drop/", prefix: true, keyId: "k1" } },
    });
  });

  it("--help prints the usage", () => {
    expect(signUrl("--help")).toMatch(/^usage: npm run sign-url -- <url> --keys <file>/);
  });

  it.each([
    ["an unknown key ID", ["--key-id", "k9"], /no key k9/],
    ["a bad size", ["--max-size", "lots"], /--max-size/],
    ["a bad duration", ["--expires-in", "soon"], /--expires-in/],
    ["a bad subject", ["--subject", "a b"], /bits-sub/],
  ])("%s prints a message and exits 1", (_case, args, message) => {
    const run = spawnSync(
      process.execPath,
      [...SIGN_URL, "https://up.example/f", "--keys", keysFile, ...args],
      { encoding: "utf8" },
    );
    expect(run.status).toBe(1);
    expect(run.stdout).toBe("");
    expect(run.stderr).toMatch(message);
  });
});

describe("npm run sign-url --max-size 0", () => {
  it("is refused: a URL that allows no bytes is a mistake, and zero must never mean no limit", () => {
    const run = spawnSync(
      process.execPath,
      [...SIGN_URL, "https://up.example/f", "--keys", keysFile, "--max-size", "0"],
      { encoding: "utf8" },
    );
    expect(run.status).toBe(1);
    expect(run.stdout).toBe("");
    expect(run.stderr).toMatch(/--max-size|bits-max-size/);
  });
});
