import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  formatBytes,
  formatDuration,
  formatPercent,
  renderColumns,
  renderDetail,
  renderTable,
  shorten,
  shortId,
} from "../../../cli/sessions/format.ts";
import { resolveTarget, stackNames, TargetError } from "../../../cli/sessions/target.ts";
import { byAge, percentOf, sessionView } from "../../../cli/sessions/view.ts";
import {
  localTarget,
  localTargetPath,
  readLocalTarget,
  writeLocalTarget,
} from "../../../functions/adapters/node/local-target.ts";
import { MiB } from "../../../functions/bits/constants.ts";
import type { SessionRecord } from "../../../functions/bits/session.ts";
import { loadConfig } from "../../../functions/config.ts";
import { canonicalSessionId } from "../../../functions/service/operator.ts";

const NOW = Date.parse("2026-11-29T12:00:00Z");
const TIMEOUT = 1_209_600;
const ID = "{1A2B3C4D-0000-4000-8000-00000000000A}";

function record(overrides: Partial<SessionRecord> = {}): SessionRecord {
  return {
    id: ID,
    status: "open",
    key: "reports/2026-11.zip",
    principal: "alice",
    slot: "p:alice",
    overwrite: false,
    maxBytes: 10 * 1024 * MiB,
    fragments: 12,
    uploadId: "upload-1",
    total: 64 * MiB,
    bytesInParts: 8 * MiB,
    openPartEnd: 16 * MiB,
    offset: 12 * MiB + 512 * 1024,
    etags: ["e1"],
    chunks: 0,
    version: 14,
    // Last renewed 4 s ago; created 3m12s ago.
    expiresAt: (NOW - 4_000) / 1000 + TIMEOUT,
    createdAt: NOW - 192_000,
    client: "203.0.113.7",
    auth: "basic",
    bytesReceived: 13 * MiB,
    ...overrides,
  };
}

describe("sizes, durations and percentages as the table shows them", () => {
  it("sizes in binary units, rounded down", () => {
    expect(formatBytes(0)).toBe("0 B");
    expect(formatBytes(1023)).toBe("1023 B");
    expect(formatBytes(1024)).toBe("1.0 KiB");
    expect(formatBytes(12.5 * MiB)).toBe("12.5 MiB");
    // Never rounded up: one byte short of 1 MiB is not 1.0 MiB.
    expect(formatBytes(MiB - 1)).toBe("1023 KiB");
    expect(formatBytes(99.99 * MiB)).toBe("99.9 MiB");
    expect(formatBytes(1024 * MiB)).toBe("1.0 GiB");
    expect(formatBytes(5 * 1024 * 1024 * MiB)).toBe("5.0 TiB");
  });

  it("durations in their two largest units", () => {
    expect(formatDuration(0)).toBe("0s");
    expect(formatDuration(59.9)).toBe("59s");
    expect(formatDuration(192)).toBe("3m12s");
    expect(formatDuration(3600 + 5 * 60 + 59)).toBe("1h05m");
    expect(formatDuration(3 * 86_400 + 4 * 3600 + 59)).toBe("3d04h");
    expect(formatDuration(-5)).toBe("0s");
  });

  it("percentages rounded down to a tenth; none before the first fragment", () => {
    expect(percentOf(9 * MiB, 12 * MiB + 3)).toBe(74.9);
    expect(percentOf(MiB - 1, MiB)).toBe(99.9);
    expect(percentOf(MiB, MiB)).toBe(100);
    expect(percentOf(0, 0)).toBe(100);
    expect(formatPercent(74.9)).toBe("74.9%");
    expect(formatPercent(100)).toBe("100.0%");
    expect(formatPercent(null)).toBe("-");
  });

  it("shortens text keeping its start or its end", () => {
    expect(shorten("reports/2026-11.zip", 12, "end")).toBe("…2026-11.zip");
    expect(shorten("a-very-long-principal", 9, "start")).toBe("a-very-l…");
    expect(shorten("short", 9, "start")).toBe("short");
  });
});

describe("sessionView: what the operator sees of a record", () => {
  it("an open session: progress, parts, staged bytes, age and time since its last change", () => {
    const view = sessionView(record(), NOW, TIMEOUT);
    expect(view).toMatchObject({
      id: ID,
      state: "open",
      principal: "alice",
      key: "reports/2026-11.zip",
      received: 12 * MiB + 512 * 1024,
      total: 64 * MiB,
      percent: 19.5,
      parts: 1,
      bytesInParts: 8 * MiB,
      bytesStaged: 4 * MiB + 512 * 1024,
      ageSeconds: 192,
      idleSeconds: 4,
      lastActivityAt: "2026-11-29T11:59:56.000Z",
      createdAt: "2026-11-29T11:56:48.000Z",
      outcome: null,
    });
  });

  it("before its first fragment: no total, no percentage", () => {
    const view = sessionView(
      record({ total: undefined, offset: 0, bytesInParts: 0, etags: [] }),
      NOW,
      TIMEOUT,
    );
    expect(view).toMatchObject({ total: null, percent: null, parts: 0, received: 0 });
  });

  it("past its timeout and not ended: expired", () => {
    const view = sessionView(record({ expiresAt: NOW / 1000 - 1 }), NOW, TIMEOUT);
    expect(view.state).toBe("expired");
  });

  it("an ended session was last active when it ended", () => {
    const at = NOW - 60_000;
    const view = sessionView(
      record({
        status: "cancelled",
        etags: [],
        outcome: { kind: "cancelled", at, reason: "cancelled by the client" },
        expiresAt: at / 1000 + 86_400,
      }),
      NOW,
      TIMEOUT,
    );
    expect(view).toMatchObject({
      state: "cancelled",
      idleSeconds: 60,
      parts: 0,
      bytesStaged: 0,
      outcome: { kind: "cancelled", reason: "cancelled by the client" },
    });
  });

  it("sorts oldest first, records without a creation time before the others", () => {
    const views = [
      sessionView(record({ id: "{B}", createdAt: NOW - 1000 }), NOW, TIMEOUT),
      sessionView(record({ id: "{C}", createdAt: undefined }), NOW, TIMEOUT),
      sessionView(record({ id: "{A}", createdAt: NOW - 5000 }), NOW, TIMEOUT),
    ];
    expect(views.sort(byAge).map((view) => view.id)).toEqual(["{C}", "{A}", "{B}"]);
  });
});

describe("the table and the detail view", () => {
  it("lists one line per session in 100 columns, a long key shortened from the left", () => {
    const views = [
      sessionView(record(), NOW, TIMEOUT),
      sessionView(
        record({
          id: "{99887766-0000-4000-8000-00000000000B}",
          key: `very/deep/${"folder/".repeat(12)}crash-2026-11-29.dmp`,
          principal: "build-agent-42",
          total: undefined,
          offset: 0,
          etags: [],
        }),
        NOW,
        TIMEOUT,
      ),
    ];
    const text = renderTable(views, 100, { all: false });
    const lines = text.split("\n");
    expect(lines).toHaveLength(4);
    for (const line of lines) expect([...line].length).toBeLessThanOrEqual(100);
    expect(lines[0]).toMatch(/^SESSION\s+STATE\s+PRINCIPAL\s+KEY\s+RECEIVED\s+TOTAL\s+%\s+PARTS/);
    expect(lines[1]).toMatch(
      /^1A2B3C4D\s+open\s+alice\s+reports\/2026-11\.zip\s+12\.5 MiB\s+64\.0 MiB\s+19\.5%\s+1\s+3m12s\s+4s$/,
    );
    expect(lines[2]).toMatch(/^99887766\s+open\s+build-agent-42\s+…[a-z-]*2026-11-29\.dmp\s/);
    expect(lines[2]).toMatch(/\s0 B\s+-\s+-\s+0\s/);
    expect(lines[3]).toBe("2 open sessions.");
  });

  it("says so when there is nothing to list, and counts open ones among all", () => {
    expect(renderTable([], 100, { all: false })).toBe("No open sessions.");
    expect(renderTable([], 100, { all: true })).toBe("No sessions.");
    const ended = record({ status: "closed", outcome: { kind: "completed", at: NOW } });
    const views = [sessionView(record(), NOW, TIMEOUT), sessionView(ended, NOW, TIMEOUT)];
    expect(renderTable(views, 100, { all: true }).split("\n").at(-1)).toBe("2 sessions, 1 open.");
  });

  it("aligns columns; a column that cannot shrink is left whole", () => {
    const columns = [
      { header: "A", cells: ["x", "yyyy"], align: "left" as const },
      { header: "N", cells: ["1", "100"], align: "right" as const },
    ];
    expect(renderColumns(columns, 100)).toBe("A       N\nx       1\nyyyy  100");
    expect(renderColumns(columns, 3)).toBe("A       N\nx       1\nyyyy  100");
  });

  it("shows one session a field a line, times absolute and relative", () => {
    const text = renderDetail(sessionView(record(), NOW, TIMEOUT), NOW);
    expect(text).toContain("Session        {1A2B3C4D-0000-4000-8000-00000000000A}");
    expect(text).toContain("Principal      alice (basic)");
    expect(text).toContain(
      "Received       12.5 MiB of 64.0 MiB (19.5%; 13107200 of 67108864 bytes)",
    );
    expect(text).toContain("In parts       8.0 MiB in 1 part(s)");
    expect(text).toContain("Staged         4.5 MiB");
    expect(text).toContain("Created        2026-11-29T11:56:48.000Z (3m12s ago)");
    expect(text).toContain("Last activity  2026-11-29T11:59:56.000Z (4s ago)");
    expect(text).toMatch(/Expires {8}2026-12-13T11:59:56\.000Z \(in 13d23h\)/);
    expect(shortId(ID)).toBe("1A2B3C4D");
  });
});

describe("session IDs as the operator types them", () => {
  it("accepts any spelling of a full ID and nothing else", () => {
    const bare = "1a2b3c4d-0000-4000-8000-00000000000a";
    expect(canonicalSessionId(bare)).toBe(ID);
    expect(canonicalSessionId(`{${bare}}`)).toBe(ID);
    expect(canonicalSessionId(ID)).toBe(ID);
    expect(canonicalSessionId("1A2B3C4D")).toBeUndefined();
  });
});

describe("where bits-sessions acts", () => {
  const dir = mkdtempSync(join(tmpdir(), "bits-local-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const config = loadConfig({
    BITS_BUCKET: "b",
    BITS_TABLE: "t",
    BITS_S3_ENDPOINT: "http://127.0.0.1:1",
    BITS_DYNAMODB_ENDPOINT: "http://127.0.0.1:2",
    BITS_SESSION_TIMEOUT: "60",
  });

  it("the local server's file: written whole, read back, removed only by its writer", () => {
    const path = localTargetPath({ BITS_LOCAL_FILE: "local.json" }, dir) as string;
    expect(path).toBe(join(dir, "local.json"));
    expect(localTargetPath({}, dir)).toBe(join(dir, ".bits-local.json"));
    expect(localTargetPath({ BITS_LOCAL_FILE: "none" }, dir)).toBeUndefined();
    const target = localTarget(config, "http://127.0.0.1:8080", true);
    const remove = writeLocalTarget(path, target);
    expect(readLocalTarget(path)).toEqual(target);
    expect(target.env).toMatchObject({
      BITS_TABLE: "t",
      BITS_DYNAMODB_ENDPOINT: "http://127.0.0.1:2",
      BITS_SESSION_TIMEOUT: "60",
    });
    // A server started later wrote its own: the first one's exit leaves it.
    const later = { ...target, pid: target.pid + 1 };
    writeLocalTarget(path, later);
    remove();
    expect(JSON.parse(readFileSync(path, "utf8")).pid).toBe(later.pid);
    writeLocalTarget(path, target)();
    expect(existsSync(path)).toBe(false);
    expect(readLocalTarget(path)).toBeUndefined();
  });

  it("a stage names its table and upload function as serverless.yml does", () => {
    expect(stackNames("prod")).toEqual({
      table: "bits-upload-server-prod-sessions",
      uploadFunction: "bits-upload-server-prod-upload",
    });
  });

  it("a stage's bucket and settings come from its upload function", async () => {
    const asked: string[] = [];
    const target = await resolveTarget(
      { local: false, stage: "prod", region: "eu-west-1" },
      {},
      async (region, name) => {
        asked.push(`${region} ${name}`);
        return {
          BITS_BUCKET: "uploads-x",
          BITS_STAGING_PREFIX: "stage",
          BITS_SESSION_TIMEOUT: "3600",
        };
      },
    );
    expect(asked).toEqual(["eu-west-1 bits-upload-server-prod-upload"]);
    expect(target.config).toMatchObject({
      table: "bits-upload-server-prod-sessions",
      bucket: "uploads-x",
      region: "eu-west-1",
      stagingPrefix: "stage/",
      sessionTimeoutSeconds: 3600,
    });
    expect(target.hasBucket).toBe(true);
    expect(target.warnings).toEqual([]);
  });

  it("without the function's settings: the table still, a warning, and no bucket", async () => {
    const target = await resolveTarget({ local: false, stage: "dev" }, {}, async () => {
      throw new Error("AccessDenied");
    });
    expect(target.config.table).toBe("bits-upload-server-dev-sessions");
    expect(target.hasBucket).toBe(false);
    expect(target.warnings[0]).toContain("AccessDenied");
  });

  it("refuses what cannot be meant, and says where no local server was found", async () => {
    const never = async () => ({});
    await expect(resolveTarget({ local: true, table: "t" }, {}, never)).rejects.toThrow(
      TargetError,
    );
    await expect(
      resolveTarget({ local: false }, { BITS_LOCAL_FILE: join(dir, "missing.json") }, never),
    ).rejects.toThrow(/no local server found .*missing\.json.*npm start/);
    const stale = join(dir, "stale.json");
    writeLocalTarget(stale, { ...localTarget(config, "http://x", true), pid: 2 ** 22 + 7 });
    await expect(resolveTarget({ local: true }, { BITS_LOCAL_FILE: stale }, never)).rejects.toThrow(
      /pid 4194311\) is not running/,
    );
  });
});
