import { writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import lockfile from "proper-lockfile";
import { afterAll, expect } from "vitest";
import { type AwsCall, actionsOf, CALLS_FILE, callKey, readCalls, roleOf } from "./aws-calls.ts";

/** The tests' staging prefix (storage.ts, STAGING_PREFIX), not imported: unit tests load this too. */
const STAGING_PREFIX = ".bits-staging/";

/**
 * A vitest setup file: in the integration and end-to-end suites, every AWS SDK call the
 * functions' code makes in the test process is recorded (aws-calls.ts says how), and after each
 * test file the calls it made must all be in test/deploy/aws-calls.json, which the IAM
 * simulation evaluates. BITS_RECORD_AWS_CALLS=1 adds new ones to that file instead.
 *
 * Every SDK client (S3, DynamoDB, SSM, EventBridge, Lambda) sends through the one
 * `Client.prototype.send` of @smithy/core; the wrapper reads the caller's stack synchronously,
 * before the SDK's first await, so it sees whose code made the call.
 */

const SUITES = /\/test\/(integration|e2e)\//;
const RECORDING = Symbol.for("bits.recordAwsCalls");

interface Recorder {
  calls: Map<string, AwsCall>;
}

const state = globalThis as { [RECORDING]?: Recorder };

function install(): Recorder {
  const recorder: Recorder = { calls: new Map() };
  const { Client } = createRequire(import.meta.url)("@smithy/core/client") as {
    Client: { prototype: { send: (command: unknown, ...rest: unknown[]) => unknown } };
  };
  const send = Client.prototype.send;
  Client.prototype.send = function (this: unknown, command: unknown, ...rest: unknown[]) {
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = 100;
    const stack = new Error().stack ?? "";
    Error.stackTraceLimit = limit;
    const role = roleOf(stack);
    if (role === "upload" || role === "cleanup") {
      const { input = {} } = command as { input?: Record<string, unknown> };
      const name = (command as { constructor: { name: string } }).constructor.name;
      for (const action of actionsOf(name, input, STAGING_PREFIX)) {
        const call: AwsCall = { role, ...action, command: name.replace(/Command$/, "") };
        recorder.calls.set(callKey(call), call);
      }
    }
    return send.call(this, command, ...rest);
  };
  return recorder;
}

const testPath = expect.getState().testPath ?? "";
if (SUITES.test(testPath)) {
  state[RECORDING] ??= install();
  const recorder = state[RECORDING];
  recorder.calls.clear();

  afterAll(async () => {
    const made = [...recorder.calls.values()];
    if (process.env.BITS_RECORD_AWS_CALLS === "1") {
      const release = await lockfile.lock(CALLS_FILE, {
        retries: { retries: 50, minTimeout: 100 },
      });
      try {
        const all = new Map(readCalls().map((call) => [callKey(call), call]));
        // A call already listed keeps its entry, with what was written about it.
        for (const call of made) if (!all.has(callKey(call))) all.set(callKey(call), call);
        const sorted = [...all.values()].sort((a, b) => callKey(a).localeCompare(callKey(b)));
        writeFileSync(CALLS_FILE, `${JSON.stringify(sorted, null, 2)}\n`);
      } finally {
        await release();
      }
      return;
    }
    const known = new Set(readCalls().map(callKey));
    const unknown = made.filter((call) => !known.has(callKey(call))).map(callKey);
    expect(
      unknown,
      "AWS calls not in test/deploy/aws-calls.json (the IAM test checks that list; add them with BITS_RECORD_AWS_CALLS=1)",
    ).toEqual([]);
  });
}
