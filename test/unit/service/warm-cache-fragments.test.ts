import { describe, expect, it, vi } from "vitest";
import { MiB } from "../../../functions/bits/constants.ts";
import { stagingPrefixFor } from "../../../functions/service/staging.ts";
import { createSession, endSession, fragment } from "../../support/calls.ts";
import { sha256 } from "../../support/checks.ts";
import { memoryService, STAGING_PREFIX } from "../../support/storage.ts";
import { randomBytes } from "../../support/windows-client.ts";

const LIMITS = { maxFragmentBytes: 4 * MiB, maxUploadBytes: 1024 ** 4, partSize: 5 * MiB };
const DATA = randomBytes(6 * MiB + 123, 0x0ca5e);
/** The first fragment is staged (less than a part); the second completes part 1 with it. */
const SPLIT = 3 * MiB;

async function upload(damage: boolean) {
  const env = memoryService({ limits: LIMITS });
  const gets = vi.spyOn(env.objects, "get");
  const id = await createSession(env.service);
  expect((await fragment(env.service, id, DATA, 0, SPLIT - 1)).status).toBe(200);
  const [segment] = env.context.cache?.stagedSegments(stagingPrefixFor(STAGING_PREFIX, id)) ?? [];
  expect(segment).toBeDefined();
  if (damage) {
    // The kept copy changes in memory after it was staged.
    const held = env.context.cache?.stagedBytesOf(segment?.key ?? "") as Uint8Array;
    held[1000] = (held[1000] as number) ^ 0x40;
  }
  const rest = await fragment(env.service, id, DATA, SPLIT, DATA.length - 1);
  expect(rest.status).toBe(200);
  expect(rest.headers["BITS-Received-Content-Range"]).toBe(String(DATA.length));
  expect((await endSession(env.service, "Close-Session", id)).status).toBe(200);
  const stored = await env.objects.get("upload/file.txt");
  return { stored, gets: gets.mock.calls.map(([key]) => key), cache: env.context.cache };
}

describe("staged bytes kept by a warm instance, in the fragment path", () => {
  it("build a part without reading the staged bytes back", async () => {
    const { stored, gets } = await upload(false);
    expect(stored && sha256(stored)).toBe(sha256(DATA));
    expect(gets.filter((key) => key.startsWith(STAGING_PREFIX))).toEqual([]);
  });

  it("are not used when they fail their check: the part is built from the store's copy", async () => {
    const { stored, gets, cache } = await upload(true);
    expect(stored && sha256(stored)).toBe(sha256(DATA));
    expect(gets.filter((key) => key.startsWith(STAGING_PREFIX))).toHaveLength(1);
    expect(cache?.heldBytes).toBe(0);
  });
});
