import { describe, expect, it } from "vitest";
import { REDACTED, redactIds, sessionTag } from "../../../functions/service/call.ts";
import { sessionDir } from "../../../functions/service/staging.ts";

const ID = "{0F3C2A5E-8B1D-4C6F-9A7E-2D5B8C1E4F60}";
const TOKEN = "9f86d081884c7d659a2feaa0c55ad015";

describe("redactIds: log text without session IDs or tokens (docs/security.md)", () => {
  it("replaces a session ID in each of its forms by its tag", () => {
    const tag = sessionTag(ID);
    expect(redactIds(`session ${ID} failed`)).toBe(`session ${tag} failed`);
    expect(redactIds(`NoSuchKey: .bits-staging/${sessionDir(ID)}/request`)).toBe(
      `NoSuchKey: .bits-staging/${tag}/request`,
    );
    expect(redactIds(ID.slice(1, -1))).toBe(tag);
  });

  it("removes token-like runs of hex digits", () => {
    expect(redactIds(`/.bits-replies/x/${TOKEN}`)).toBe(`/.bits-replies/x/${REDACTED}`);
  });

  it("leaves other text alone", () => {
    expect(redactIds("destination exists and overwrite is off")).toBe(
      "destination exists and overwrite is off",
    );
  });
});
