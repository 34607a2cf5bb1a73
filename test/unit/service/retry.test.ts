import { describe, expect, it } from "vitest";
import { BitsError } from "../../../functions/bits/errors.ts";
import type { SessionRecord } from "../../../functions/bits/session.ts";
import { again, done, type Held, untilSettled } from "../../../functions/service/retry.ts";

const record = (version: number) => ({ id: "{S}", version }) as unknown as SessionRecord;

describe("untilSettled: the version-conflict loop of Fragment, Close and Cancel", () => {
  it("answers what the first attempt concludes, on the record it was given", async () => {
    const seen: Held[] = [];
    const answer = await untilSettled(
      { record: record(1), fresh: false },
      async (held) => {
        seen.push(held);
        return done("ok");
      },
      "test",
    );
    expect(answer).toBe("ok");
    expect(seen).toEqual([{ record: record(1), fresh: false }]);
  });

  it("decides again on the record a lost write returned, now counted as read from the table", async () => {
    const seen: (number | undefined)[] = [];
    const answer = await untilSettled(
      { record: record(1), fresh: false },
      async ({ record: current, fresh }) => {
        seen.push(current?.version);
        if (current?.version === 3) return done(fresh);
        return again(record((current?.version ?? 0) + 1));
      },
      "test",
    );
    expect(seen).toEqual([1, 2, 3]);
    expect(answer).toBe(true);
  });

  it("a record that keeps changing ends in a transient failure after 8 attempts", async () => {
    let attempts = 0;
    const error = await untilSettled(
      { record: record(1), fresh: true },
      async () => {
        attempts += 1;
        return again(record(attempts + 1));
      },
      "fragment",
    ).catch((thrown: unknown) => thrown);
    expect(attempts).toBe(8);
    expect(error).toBeInstanceOf(BitsError);
    expect((error as BitsError).kind).toBe("internal");
    expect((error as Error).message).toContain("fragment");
  });

  it("an attempt's own error ends the loop at once", async () => {
    let attempts = 0;
    await expect(
      untilSettled(
        { record: undefined, fresh: true },
        async () => {
          attempts += 1;
          throw new BitsError("sessionNotFound", "gone");
        },
        "test",
      ),
    ).rejects.toThrow("gone");
    expect(attempts).toBe(1);
  });
});
