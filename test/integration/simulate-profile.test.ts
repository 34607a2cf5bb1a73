import { describe, expect, it } from "vitest";
import { loadProfile, PROFILE_FILE_BYTES } from "../../scripts/simulate/profile.ts";
import { recordUpload } from "../../scripts/simulate/record.ts";
import { freshStorage, standInClients } from "../support/storage.ts";

/**
 * The fleet simulation costs each request with the calls recorded in profile.json. When the
 * handlers' calls change, this fails: record again with
 * `npx tsx scripts/simulate/record-profile.ts` and look at what the simulation says now.
 */
describe("the simulation's profile matches the handlers' calls", () => {
  const profile = loadProfile();

  for (const door of ["alb", "http-api"] as const) {
    it(`behind ${door}`, async () => {
      const storage = await freshStorage();
      const recorded = await recordUpload(standInClients(), storage, door, PROFILE_FILE_BYTES);
      expect(recorded).toEqual(profile.doors[door]);
    }, 60_000);
  }
});
