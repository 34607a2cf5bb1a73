import { setImmediate as tick } from "node:timers/promises";
import { describe, expect, it } from "vitest";
import type { NotificationRequest, Notifier } from "../../functions/ports/notifier.ts";
import { createSession, endSession, fragment } from "../support/calls.ts";
import { sha256 } from "../support/checks.ts";
import { freshStorage, serviceOver } from "../support/storage.ts";
import { randomBytes } from "../support/windows-client.ts";

/**
 * The wait of a copy of an upload-reply session's final fragment that finds another copy
 * notifying the application (functions/service/reply.ts): it sleeps and measures its deadline on
 * the injected clock, so a test moves time instead of waiting for it. Each copy is its own
 * service (its own Lambda instance), on the real stand-ins; the waiting one's clock moves only
 * when it sleeps, so had it slept on the real clock it would wait forever and the test time out.
 */

const DATA = randomBytes(300_000, 0x1ea5e);
const PATH = "/reply/lease.bin";
const LAST = 200_000;
const SETTINGS = {
  notifications: [{ path: "/", type: "value" as const, url: "http://app.example/notify" }],
  notificationTimeoutMs: 5_000,
};
/** How long a copy holds the lease: BITS_NOTIFICATION_TIMEOUT + 15 s (reply.ts). */
const LEASE_MS = SETTINGS.notificationTimeoutMs + 15_000;

/** An application whose first notification is answered only when the test says so. */
function heldApplication() {
  const calls: { request: NotificationRequest; digest: string }[] = [];
  let answerFirst: () => void = () => {};
  const firstAnswered = new Promise<void>((resolve) => {
    answerFirst = resolve;
  });
  let reached: () => void = () => {};
  const firstReached = new Promise<void>((resolve) => {
    reached = resolve;
  });
  const notifier: Notifier = {
    async notify(request) {
      const chunks: Uint8Array[] = [];
      for await (const chunk of (await request.request.open()) as AsyncIterable<Uint8Array>)
        chunks.push(chunk);
      calls.push({ request, digest: sha256(Buffer.concat(chunks)) });
      if (calls.length === 1) {
        reached();
        await firstAnswered;
      }
      return {
        kind: "ok",
        copyToDestination: false,
        reply: new TextEncoder().encode(`reply ${calls.length}`),
      };
    },
  };
  return { calls, notifier, firstReached, answerFirst };
}

async function setUp() {
  const storage = await freshStorage();
  const app = heldApplication();
  const settings = { ...SETTINGS, bucket: storage.bucket };
  const options = { notifier: app.notifier, warm: false };
  const holder = serviceOver(storage.sessions, storage.objects, settings, options);
  const waiter = serviceOver(storage.sessions, storage.objects, settings, options);
  const id = await createSession(holder.service, PATH);
  const prefix = await fragment(holder.service, id, DATA, 0, LAST - 1, PATH);
  expect(prefix.status).toBe(200);
  const started = waiter.runtime.now();
  const sleeps: number[] = [];
  // The waiting copy's clock: each sleep moves it at once (and lets I/O run).
  waiter.runtime.sleep = async (ms) => {
    sleeps.push(ms);
    waiter.runtime.advance(ms);
    await tick();
  };
  return { storage, app, holder, waiter, id, started, sleeps };
}

describe("upload-reply: a copy that finds the application being notified waits on the injected clock", () => {
  it("it sleeps while the lease holds and then answers with the holder's reply URL", async () => {
    const { app, holder, waiter, id, sleeps } = await setUp();
    const first = fragment(holder.service, id, DATA, LAST, DATA.length - 1, PATH);
    await app.firstReached;
    const second = fragment(waiter.service, id, DATA, LAST, DATA.length - 1, PATH);
    // The application answers once the waiting copy has slept five times on its clock.
    while (sleeps.length < 5) await tick();
    app.answerFirst();
    const [a, b] = await Promise.all([first, second]);
    expect(a.status).toBe(200);
    expect(b.status).toBe(200);
    expect(b.headers["BITS-Reply-URL"]).toBe(a.headers["BITS-Reply-URL"]);
    expect(app.calls).toHaveLength(1);
    expect(app.calls[0]?.digest).toBe(sha256(DATA));
    expect(sleeps.every((ms) => ms === 200)).toBe(true);
    expect((await endSession(holder.service, "Close-Session", id, PATH)).status).toBe(200);
  }, 60_000);

  it("once the lease has run out on its clock, it takes the lease and notifies itself", async () => {
    const { app, holder, waiter, id, started, sleeps } = await setUp();
    const first = fragment(holder.service, id, DATA, LAST, DATA.length - 1, PATH);
    await app.firstReached;
    const second = await fragment(waiter.service, id, DATA, LAST, DATA.length - 1, PATH);
    expect(second.status).toBe(200);
    // It waited out the holder's lease on its own clock, and not a poll more.
    const waited = waiter.runtime.now() - started;
    expect(waited).toBeGreaterThanOrEqual(LEASE_MS - 1_000);
    expect(waited).toBeLessThanOrEqual(LEASE_MS + 1_000);
    expect(sleeps.length).toBe(waited / 200);
    expect(app.calls).toHaveLength(2);
    expect(app.calls.map((call) => call.digest)).toEqual([sha256(DATA), sha256(DATA)]);
    // The holder's late answer finds the session moved on: a transient error, as before.
    app.answerFirst();
    const late = await first;
    expect(late.status).toBe(500);
    const again = await fragment(holder.service, id, DATA, LAST, DATA.length - 1, PATH);
    expect(again.headers["BITS-Reply-URL"]).toBe(second.headers["BITS-Reply-URL"]);
    expect(app.calls).toHaveLength(2);
  }, 60_000);
});
