import { execFile } from "node:child_process";
import { resolve } from "node:path";
import { promisify } from "node:util";
import { afterAll, describe, it } from "vitest";
import type { Check } from "../../scripts/smoke.ts";
import { type Started, start, stop } from "../support/npm-start.ts";

/**
 * `npm run smoke` (scripts/smoke.ts) against `npm start`, as CI runs it: every check passes on
 * a server started as documented, and a server started with a broken setting fails the check
 * that names it. The smoke test runs as an operator runs it, a child process.
 */

const ROOT = resolve(import.meta.dirname, "../..");
const execFileAsync = promisify(execFile);

async function smoke(url: string, ...args: string[]) {
  try {
    const { stdout } = await execFileAsync(
      process.execPath,
      ["--import", "tsx", "scripts/smoke.ts", `${url}/`, "--json", ...args],
      { cwd: ROOT, env: { ...process.env, NODE_NO_WARNINGS: "1" }, timeout: 120_000 },
    );
    return { code: 0, checks: (JSON.parse(stdout) as { checks: Check[] }).checks };
  } catch (error) {
    const e = error as { code?: number; stdout?: string; stderr?: string };
    if (!e.stdout) throw new Error(`smoke failed to run: ${e.stderr}`);
    return { code: e.code, checks: (JSON.parse(e.stdout) as { checks: Check[] }).checks };
  }
}

// Each test starts a server of its own: they run at once.
describe.concurrent("npm run smoke against npm start", () => {
  const servers: Started[] = [];
  afterAll(async () => {
    for (const server of servers) await stop(server);
  });

  it("passes every check on a server started as documented", async ({ expect }) => {
    const server = await start({});
    servers.push(server);
    const { code, checks } = await smoke(server.url);
    expect(checks.filter((c) => c.ok === false)).toEqual([]);
    expect(checks.map((c) => c.name)).toEqual([
      "bits_post_reaches_function",
      "upload_byte_exact_crc32c",
      "oversized_body_413_without_bits_error",
      "unauthenticated_401",
      "session_not_found_on_other_url",
      "cancel_leaves_nothing",
    ]);
    expect(code).toBe(0);
    // POST + X-Http-Method-Override, as through the HTTP API.
    const override = await smoke(server.url, "--override");
    expect(override.checks[0]).toMatchObject({ name: "post_override_reaches_function", ok: true });
    expect(override.code).toBe(0);
  }, 180_000);

  it("fails by name against a server whose fragments exceed the front door's limit", async ({
    expect,
  }) => {
    // maxFragmentSize above the ALB's 1 MB: the function would take bodies no ALB passes.
    const server = await start({ BITS_MAX_FRAGMENT_SIZE: "8MiB" });
    servers.push(server);
    const { code, checks } = await smoke(server.url);
    expect(checks.filter((c) => c.ok === false).map((c) => c.name)).toEqual([
      "oversized_body_413_without_bits_error",
    ]);
    expect(code).toBe(1);
  }, 180_000);
});
