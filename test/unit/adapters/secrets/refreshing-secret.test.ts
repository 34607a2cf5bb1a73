import { describe, expect, it } from "vitest";
import { RefreshingSecret } from "../../../../functions/adapters/secrets/refreshing-secret.ts";
import type { SecretText } from "../../../../functions/ports/secrets.ts";

/** An inner source that counts loads and answers `value`, or throws while `down`. */
class Counting implements SecretText {
  readonly source = "fake secret";
  down = false;
  loads = 0;
  /** When set, loads wait for it. */
  gate: Promise<void> | undefined;

  constructor(public value: string) {}

  async current() {
    this.loads++;
    await this.gate;
    if (this.down) throw new Error("fake secret is down");
    return this.value;
  }
}

function setup(refreshMs = 60_000, value = "v1") {
  let now = 1_000_000;
  const inner = new Counting(value);
  const secret = new RefreshingSecret(inner, { refreshMs, now: () => now });
  return { inner, secret, advance: (ms: number) => (now += ms) };
}

describe("RefreshingSecret", () => {
  it("keeps the source of what it wraps", () => {
    expect(setup().secret.source).toBe("fake secret");
  });

  it("loads once, then answers from cache until refreshMs has passed", async () => {
    const { inner, secret, advance } = setup();
    expect(await secret.current()).toBe("v1");
    inner.value = "v2";
    advance(59_999);
    expect(await secret.current()).toBe("v1");
    expect(inner.loads).toBe(1);
    advance(1);
    expect(await secret.current()).toBe("v2");
    expect(inner.loads).toBe(2);
  });

  it("lets concurrent callers share one load, the first and a due reload alike", async () => {
    const { inner, secret, advance } = setup();
    let release = () => {};
    inner.gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const answers = Promise.all([secret.current(), secret.current(), secret.current()]);
    release();
    expect(await answers).toEqual(["v1", "v1", "v1"]);
    expect(inner.loads).toBe(1);

    inner.value = "v2";
    advance(60_000);
    inner.gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const reloaded = Promise.all([secret.current(), secret.current()]);
    release();
    expect(await reloaded).toEqual(["v2", "v2"]);
    expect(inner.loads).toBe(2);
  });

  it("rejects when the first load fails, and tries again on the next call", async () => {
    const { inner, secret } = setup();
    inner.down = true;
    await expect(secret.current()).rejects.toThrow("fake secret is down");
    expect(secret.lastError).toBeInstanceOf(Error);
    inner.down = false;
    expect(await secret.current()).toBe("v1");
    expect(secret.lastError).toBeUndefined();
    expect(inner.loads).toBe(2);
  });

  it("answers the last good value when a reload fails, and retries after the back-off", async () => {
    const { inner, secret, advance } = setup(60_000);
    expect(await secret.current()).toBe("v1");
    inner.down = true;
    inner.value = "v2";
    advance(60_000);
    expect(await secret.current()).toBe("v1");
    expect((secret.lastError as Error).message).toBe("fake secret is down");
    expect(inner.loads).toBe(2);

    inner.down = false;
    advance(29_999); // back-off: min(refreshMs, 30 s)
    expect(await secret.current()).toBe("v1");
    expect(inner.loads).toBe(2);
    advance(1);
    expect(await secret.current()).toBe("v2");
    expect(secret.lastError).toBeUndefined();
    expect(inner.loads).toBe(3);
  });

  it("backs off for refreshMs when that is shorter than 30 s", async () => {
    const { inner, secret, advance } = setup(5_000);
    await secret.current();
    inner.down = true;
    advance(5_000);
    await secret.current();
    advance(4_999);
    await secret.current();
    expect(inner.loads).toBe(2);
    advance(1);
    await secret.current();
    expect(inner.loads).toBe(3);
  });
});
