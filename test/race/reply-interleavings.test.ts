import { describe, expect, it } from "vitest";
import { MemoryObjectStore } from "../../functions/adapters/memory/memory-object-store.ts";
import { MemorySessionStore } from "../../functions/adapters/memory/memory-session-store.ts";
import { MiB } from "../../functions/bits/constants.ts";
import type { BitsResponse } from "../../functions/bits/request.ts";
import type { NotificationRequest, Notifier } from "../../functions/ports/notifier.ts";
import { createSession, endSession, fragment } from "../support/calls.ts";
import { depth } from "../support/depth.ts";
import {
  describeFailures,
  type Execution,
  exploreBounded,
  exploreRandom,
  type Gate,
  gated,
  objectAccess,
  sessionAccess,
} from "../support/interleave.ts";
import { STAGING_PREFIX, serviceOver } from "../support/storage.ts";
import { randomBytes } from "../support/windows-client.ts";

/**
 * The final fragment of an upload-reply session, twice at once ([MC-BUP] 3.2.5.1.2), under seeded
 * random schedules of their storage calls, on the in-memory fakes: the application must be notified exactly once, every 200 must carry the
 * same BITS-Reply-URL, a later resend gets it again without notifying, and after Close the
 * destination holds exactly the file (the application asked for a copy) and nothing is left.
 */

const LIMITS = { maxFragmentBytes: 8 * MiB, maxUploadBytes: 1024 ** 4, partSize: 5 * MiB };
const DATA = randomBytes(6 * MiB + 321, 0x5eed);
const LAST = 5 * MiB;
const PATH = "/reply/race.bin";
const SETTINGS = {
  limits: LIMITS,
  notifications: [{ path: "/", type: "value" as const, url: "http://app.example/notify" }],
};

/** An application that answers at once, asks for a copy, and counts what it is told. */
function countingApp() {
  const calls: NotificationRequest[] = [];
  const notifier: Notifier = {
    async notify(request) {
      calls.push(request);
      const stream = await request.request.open();
      let size = 0;
      for await (const chunk of stream as unknown as AsyncIterable<Uint8Array>)
        size += chunk.length;
      if (size !== DATA.length) throw new Error(`the application got ${size} bytes`);
      return { kind: "ok", copyToDestination: true, reply: new TextEncoder().encode("reply") };
    },
  };
  return { calls, notifier };
}

const execution: Execution = async (schedule) => {
  const sessions = new MemorySessionStore();
  const objects = new MemoryObjectStore();
  const app = countingApp();
  const plain = serviceOver(sessions, objects, SETTINGS, { notifier: app.notifier }).service;
  const id = await createSession(plain, PATH);
  const prefix = await fragment(plain, id, DATA, 0, LAST - 1, PATH);
  if (prefix.status !== 200) throw new Error(`set-up answered ${prefix.status}`);
  const racer = (gate: Gate) =>
    fragment(
      serviceOver(
        gated(sessions, gate, sessionAccess),
        gated(objects, gate, objectAccess),
        SETTINGS,
        { notifier: app.notifier },
      ).service,
      id,
      DATA,
      LAST,
      DATA.length - 1,
      PATH,
    );
  const settled = await schedule.race([racer, racer]);
  const problems: string[] = [];
  const answers: BitsResponse[] = [];
  for (const result of settled) {
    if (result.status === "fulfilled") answers.push(result.value);
    else problems.push(`a copy threw: ${String(result.reason)}`);
  }
  const ok = answers.filter((answer: BitsResponse) => answer.status === 200);
  const urls = new Set(ok.map((answer) => answer.headers["BITS-Reply-URL"]));
  if (ok.length === 0) problems.push("no copy of the final fragment succeeded");
  if (urls.size !== 1 || urls.has(undefined)) problems.push(`reply URLs: ${[...urls].join(", ")}`);
  for (const answer of answers) {
    const code = answer.headers["BITS-Error-Code"];
    if (answer.status !== 200 && code !== "0x80004005") {
      problems.push(`answered ${answer.status} ${code ?? ""}`);
    }
  }
  if (app.calls.length !== 1)
    problems.push(`the application was notified ${app.calls.length} times`);
  const again = await fragment(plain, id, DATA, LAST, DATA.length - 1, PATH);
  if (again.headers["BITS-Reply-URL"] !== [...urls][0]) problems.push("the resend got another URL");
  if (app.calls.length !== 1) problems.push("the resend notified again");
  const close = await endSession(plain, "Close-Session", id, PATH);
  if (close.status !== 200) problems.push(`Close-Session answered ${close.status}`);
  const stored = await objects.get(PATH.slice(1));
  if (stored === undefined || !Buffer.from(stored).equals(DATA)) {
    problems.push("the destination does not hold exactly the file");
  }
  const left = (await objects.list(STAGING_PREFIX)).map((object) => object.key);
  if (left.length > 0) problems.push(`left behind: ${left.join(", ")}`);
  if (problems.length > 0) throw new Error(problems.join("\n"));
};

/**
 * Each schedule waits out the poll of the copy that finds the other notifying, in real time: a
 * few by default, the dozen written under `npm run test:deep`.
 */
const RANDOM = depth(4, 12);

describe("upload-reply: two copies of the final fragment at once notify once", () => {
  it(`the schedule without preemption, and ${RANDOM} seeded random ones`, async () => {
    // Not the bounded exploration of test/race/interleavings.ts: a copy that finds the
    // other notifying polls the record, and the non-preemptive continuation would keep choosing
    // the poller. Random schedules pick among the waiting handlers fairly.
    const straight = await exploreBounded(execution, { maxPreemptions: 0 });
    const random = await exploreRandom(execution, { count: RANDOM, firstSeed: 1 });
    console.log(
      `upload-reply final fragment twice: ${straight.schedules + random.schedules} schedules checked`,
    );
    expect(straight.failures.length, describeFailures("straight", straight)).toBe(0);
    expect(random.failures.length, describeFailures("random", random)).toBe(0);
  });
});
