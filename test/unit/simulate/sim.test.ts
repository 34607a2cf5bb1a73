import { describe, expect, it } from "vitest";
import { MiB } from "../../../functions/bits/constants.ts";
import { loadProfile } from "../../../scripts/simulate/profile.ts";
import { sized, TODAY } from "../../../scripts/simulate/report.ts";
import { type Scenario, simulate } from "../../../scripts/simulate/sim.ts";

const profile = loadProfile();
const fleet: Scenario = {
  ...TODAY,
  clients: 2_000,
  windowSeconds: 60,
  fileBytes: 2 * MiB,
  seed: 3,
  horizonSeconds: 24 * 3600,
};

describe("the fleet simulation", () => {
  it("meets a small stack's ceilings: throttled, refused when full, waiting the retry delay", () => {
    const result = simulate({ ...fleet, reservedConcurrency: 5, maxSessions: 100 }, profile);
    expect(result.completed).toBe(fleet.clients);
    expect(result.refused.lambdaThrottle).toBeGreaterThan(0);
    expect(result.refused.serverFull).toBeGreaterThan(0);
    expect(result.peak.openSessions).toBe(100);
    expect(result.peak.concurrency).toBeLessThanOrEqual(5);
    // A refused job comes back after its 600 s delay, not before.
    expect(result.finish.last).toBeGreaterThan(fleet.windowSeconds + fleet.retryDelaySeconds);
  });

  it("sized by the guide, the same fleet is never refused and finishes with its window", () => {
    const result = simulate(sized(fleet, profile), profile);
    expect(result.completed).toBe(fleet.clients);
    expect(result.retries).toBe(0);
    expect(Object.values(result.refused).every((n) => n === 0)).toBe(true);
    expect(result.finish.last).toBeLessThan(fleet.windowSeconds + 60);
    // Each upload's storage requests are the profile's: 2 MiB behind the ALB is one part.
    expect(result.usage.s3Puts / fleet.clients).toBeGreaterThan(10);
  });

  it("one shared principal puts every create and close on its counter item", () => {
    const base = sized({ ...fleet, clients: 20_000, windowSeconds: 60 }, profile);
    const own = simulate(base, profile);
    const shared = simulate({ ...base, principals: 1, maxSessionsPerPrincipal: 1e9 }, profile);
    expect(own.refused.counterItem).toBe(0);
    expect(shared.refused.counterItem).toBeGreaterThan(0);
  });

  it("is deterministic for a seed", () => {
    const a = simulate({ ...fleet, reservedConcurrency: 20 }, profile);
    const b = simulate({ ...fleet, reservedConcurrency: 20 }, profile);
    expect(a).toEqual(b);
  });
});
