import bcrypt from "bcryptjs";
import { describe, expect, it } from "vitest";
import { createAuthenticator } from "../../functions/auth/authenticator.ts";
import { ERROR_REASON_HEADER, WANT_REASON_HEADER } from "../../functions/bits/ack.ts";
import { BITS_PROTOCOL_GUID, MiB } from "../../functions/bits/constants.ts";
import type { Peer } from "../../functions/bits/request.ts";
import { EVENT_DETAIL_TYPES, endedBy } from "../../functions/bits/upload-event.ts";
import { cancelAsOperator, findSession, storedSessions } from "../../functions/service/operator.ts";
import { call } from "../support/calls.ts";
import { expectOnlyResults, sha256 } from "../support/checks.ts";
import { bucketKeys, realService, tableItems, uploadIsGone } from "../support/storage.ts";
import { randomBytes } from "../support/windows-client.ts";

/**
 * What `bits-sessions` does through the service (functions/service/operator.ts), against
 * DynamoDB Local and fauxqs: read every session, find one by its ID or the start of it, and
 * cancel one that belongs to someone else exactly as its own Cancel-Session would.
 */

const TLS: Peer = { secure: true, address: "203.0.113.7" };
const ALICE = `Basic ${Buffer.from("alice:alice-pw").toString("base64")}`;
const NOT_FOUND = "0x8020001F";

async function aliceService() {
  const htpasswd = `alice:${bcrypt.hashSync("alice-pw", 4)}`;
  const authenticator = createAuthenticator(["basic"], {
    realm: "Test uploads",
    htpasswd: { source: "test", current: async () => htpasswd },
  });
  const env = await realService({}, { authenticator });
  const send = (path: string, headers: Record<string, string>, body?: Uint8Array) =>
    call(env.service, {
      path,
      headers: { Authorization: ALICE, ...headers },
      peer: TLS,
      ...(body ? { body } : {}),
    });
  const create = async (path: string) => {
    const response = await send(path, {
      "BITS-Packet-Type": "Create-Session",
      "BITS-Supported-Protocols": BITS_PROTOCOL_GUID,
    });
    const id = response.headers["BITS-Session-Id"];
    if (response.status !== 200 || id === undefined) throw new Error(`${response.status}`);
    return id;
  };
  const fragment = (path: string, id: string, data: Uint8Array, first: number, last: number) =>
    send(
      path,
      {
        "BITS-Packet-Type": "Fragment",
        "BITS-Session-Id": id,
        "Content-Range": `bytes ${first}-${last}/${data.length}`,
      },
      data.subarray(first, last + 1),
    );
  return { ...env, send, create, fragment };
}

describe("an operator cancels a session that is not theirs", () => {
  it("releases it as the client's own Cancel-Session does, and the client is told it is gone", async () => {
    const env = await aliceService();
    const data = randomBytes(3 * MiB, 5);
    const id = await env.create("/ops/a.bin");
    for (const [first, last] of [
      [0, 256 * 1024 - 1],
      [256 * 1024, 640 * 1024 - 1],
    ] as const) {
      expect((await env.fragment("/ops/a.bin", id, data, first, last)).status).toBe(200);
    }
    const before = await env.sessions.get(id);
    expect(before).toMatchObject({ status: "open", principal: "alice", offset: 640 * 1024 });
    const staged = (await bucketKeys(env.bucket)).filter((key) => key.startsWith(".bits-staging/"));
    expect(staged.length).toBeGreaterThan(0);
    expect((await tableItems(env.table)).counters.get("p:alice")).toBe(1);

    const done = await cancelAsOperator(env.context, id);

    if (done.kind !== "cancelled") throw new Error(`not cancelled: ${done.kind}`);
    expect(done.record).toMatchObject({
      status: "cancelled",
      outcome: { kind: "cancelled", reason: "cancelled by an operator" },
    });
    // The write that made the tombstone is the one the stream announces (docs/events.md).
    const announced = endedBy({ before: before, after: done.record });
    expect(announced?.outcome && EVENT_DETAIL_TYPES[announced.outcome.kind]).toBe(
      "Upload Cancelled",
    );
    expect(await uploadIsGone(env.bucket, "ops/a.bin", before?.uploadId ?? "")).toBe(true);
    const next = await env.fragment("/ops/a.bin", id, data, 640 * 1024, MiB - 1);
    expect(next.headers["BITS-Error-Code"]).toBe(NOT_FOUND);
    // Nothing left: no object, no staged bytes, the slot released, no open record.
    await expectOnlyResults(env.bucket, env.table, []);

    const again = await cancelAsOperator(env.context, id);
    expect(again).toMatchObject({ kind: "ended", record: { status: "cancelled" } });
  });

  it("a fragment that lands while the cancel is carried out is told who cancelled, as after it", async () => {
    const env = await aliceService();
    const data = randomBytes(MiB, 7);
    const id = await env.create("/ops/mid.bin");
    expect((await env.fragment("/ops/mid.bin", id, data, 0, 256 * 1024 - 1)).status).toBe(200);
    // The cancel stops after its decision is written, before the multipart upload is aborted.
    const objects = env.context.objects;
    const abort = objects.abortUpload.bind(objects);
    let reached = () => {};
    const atAbort = new Promise<void>((resolve) => {
      reached = resolve;
    });
    let release = () => {};
    const released = new Promise<void>((resolve) => {
      release = resolve;
    });
    objects.abortUpload = async (...args) => {
      reached();
      await released;
      return abort(...args);
    };
    const cancelling = cancelAsOperator(env.context, id);
    await atAbort;
    expect(await env.sessions.get(id)).toMatchObject({
      status: "discarding",
      endingReason: "cancelled by an operator",
    });
    // As bits-upload asks: the reason in words (docs/protocol.md, "Reasons").
    const resend = () =>
      env.send(
        "/ops/mid.bin",
        {
          "BITS-Packet-Type": "Fragment",
          "BITS-Session-Id": id,
          "Content-Range": `bytes ${256 * 1024}-${512 * 1024 - 1}/${data.length}`,
          [WANT_REASON_HEADER]: "1",
        },
        data.subarray(256 * 1024, 512 * 1024),
      );
    const during = await resend();
    expect(during.headers["BITS-Error-Code"]).toBe(NOT_FOUND);
    expect(during.headers[ERROR_REASON_HEADER]).toContain("cancelled by an operator");
    release();
    expect(await cancelling).toMatchObject({
      kind: "cancelled",
      record: { outcome: { kind: "cancelled", reason: "cancelled by an operator" } },
    });
    const after = await resend();
    expect(after.headers[ERROR_REASON_HEADER]).toBe(during.headers[ERROR_REASON_HEADER]);
    await expectOnlyResults(env.bucket, env.table, []);
  });

  it("leaves a completed upload alone, and an expired session to the cleanup", async () => {
    const env = await aliceService();
    const data = randomBytes(200_000, 6);
    const id = await env.create("/ops/done.bin");
    expect((await env.fragment("/ops/done.bin", id, data, 0, data.length - 1)).status).toBe(200);
    const close = await env.send("/ops/done.bin", {
      "BITS-Packet-Type": "Close-Session",
      "BITS-Session-Id": id,
    });
    expect(close.status).toBe(200);
    const stored = await env.objects.get("ops/done.bin");
    expect(stored && sha256(stored)).toBe(sha256(data));
    expect(await cancelAsOperator(env.context, id)).toMatchObject({
      kind: "ended",
      record: { status: "closed" },
    });
    expect(sha256((await env.objects.get("ops/done.bin")) ?? new Uint8Array())).toBe(sha256(data));

    const idle = await env.create("/ops/idle.bin");
    env.runtime.advance((env.context.settings.sessionTimeoutSeconds + 1) * 1000);
    expect(await cancelAsOperator(env.context, idle)).toMatchObject({
      kind: "expired",
      record: { status: "open" },
    });
    expect(await cancelAsOperator(env.context, "{00000000-0000-4000-8000-000000000000}")).toEqual({
      kind: "unknown",
    });
  });
});

describe("an operator reads and finds sessions", () => {
  it("every session in the table, open and ended; found by any spelling of its ID or its start", async () => {
    const env = await aliceService();
    const ids = [
      "{ABCD0001-0000-4000-8000-000000000001}",
      "{ABCD0002-0000-4000-8000-000000000002}",
      "{12340003-0000-4000-8000-000000000003}",
    ];
    const queue = [...ids];
    Object.assign(env.runtime, { newSessionId: () => queue.shift() });
    for (const [i] of ids.entries()) await env.create(`/ops/${i}.bin`);
    const cancel = await env.send("/ops/2.bin", {
      "BITS-Packet-Type": "Cancel-Session",
      "BITS-Session-Id": ids[2] as string,
    });
    expect(cancel.status).toBe(200);

    const seen = [];
    for await (const record of storedSessions(env.context)) seen.push([record.id, record.status]);
    expect(seen.sort()).toEqual([
      [ids[2], "cancelled"],
      [ids[0], "open"],
      [ids[1], "open"],
    ]);

    const found = (text: string) => findSession(env.context, text);
    expect(await found("abcd0001-0000-4000-8000-000000000001")).toMatchObject({
      kind: "found",
      record: { id: ids[0] },
    });
    expect(await found("{ABCD0002")).toMatchObject({ kind: "found", record: { id: ids[1] } });
    expect(await found("1234")).toMatchObject({ kind: "found", record: { id: ids[2] } });
    const ambiguous = await found("abcd");
    expect(ambiguous.kind).toBe("ambiguous");
    expect(ambiguous.kind === "ambiguous" && [...ambiguous.ids].sort()).toEqual([ids[0], ids[1]]);
    expect(await found("ffff")).toEqual({ kind: "unknown" });
    expect(await found("not-an-id!")).toEqual({ kind: "unknown" });
  });
});
