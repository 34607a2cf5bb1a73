import { beforeAll, describe, expect, it } from "vitest";
import { BITS_PROTOCOL_GUID } from "../../functions/bits/constants.ts";
import { call, createSession, endSession, fragment } from "../support/calls.ts";
import { sdkCrc32c, sha256 } from "../support/checks.ts";
import { realService, uploadIsGone } from "../support/storage.ts";
import { randomBytes } from "../support/windows-client.ts";

const ACK = { "BITS-Packet-Type": "Ack", "Content-Length": "0" };
const errorHeaders = (code: string) => ({
  ...ACK,
  "BITS-Error-Code": code,
  "BITS-Error-Context": "0x5",
});
const INVALIDARG = errorHeaders("0x80070057");
const NOT_FOUND = errorHeaders("0x8020001F");

describe("protocol conformance, rule by rule, against DynamoDB Local and fauxqs", () => {
  let env: Awaited<ReturnType<typeof realService>>;
  const data = randomBytes(1000, 7);

  beforeAll(async () => {
    env = await realService({ uploadPaths: ["/upload"] });
  });

  it("Ping answers 200 with a bare Ack ([MC-BUP] 3.2.5.2.5)", async () => {
    const res = await call(env.service, { headers: { "BITS-Packet-Type": "Ping" } });
    expect(res).toEqual({ status: 200, headers: ACK });
  });

  it("an unknown protocol GUID is 400 E_INVALIDARG, no BITS-Protocol, no session ([MC-BUP] 3.2.5.2.4)", async () => {
    const res = await call(env.service, {
      headers: {
        "BITS-Packet-Type": "Create-Session",
        "BITS-Supported-Protocols": "{00000000-0000-0000-0000-000000000000}",
      },
    });
    expect(res).toEqual({ status: 400, headers: INVALIDARG });
  });

  it.each([
    ["space", `{bad} ${BITS_PROTOCOL_GUID}`],
    ["comma", `{bad},${BITS_PROTOCOL_GUID}`],
    ["upper-case", BITS_PROTOCOL_GUID.toUpperCase()],
  ])("a %s-separated protocol list is accepted ([MC-BUP] 2.2.2.2)", async (_, list) => {
    const res = await call(env.service, {
      path: `/upload/t3-${_}.txt`,
      headers: { "BITS-Packet-Type": "Create-Session", "BITS-Supported-Protocols": list },
    });
    expect(res.status).toBe(200);
    expect(res.headers["BITS-Protocol"]).toBe(BITS_PROTOCOL_GUID);
    expect(res.headers["BITS-Session-Id"]).toMatch(
      /^\{[0-9A-F]{8}-[0-9A-F]{4}-4[0-9A-F]{3}-[89AB][0-9A-F]{3}-[0-9A-F]{12}\}$/,
    );
    expect(res.headers["Accept-Encoding"]).toBe("identity");
  });

  it("Create-Session with a body is 400 E_INVALIDARG ([MC-BUP] 2.2.2)", async () => {
    const res = await call(env.service, {
      headers: {
        "BITS-Packet-Type": "Create-Session",
        "BITS-Supported-Protocols": BITS_PROTOCOL_GUID,
      },
      body: new Uint8Array(8),
    });
    expect(res).toEqual({ status: 400, headers: INVALIDARG });
  });

  it("no Content-Length is judged by the body; a wrong one is 400 (docs/protocol.md, Content-Length)", async () => {
    const ping = await call(env.service, {
      headers: { "BITS-Packet-Type": "Ping" },
      noContentLength: true,
    });
    expect(ping).toEqual({ status: 200, headers: ACK });
    const wrong = await call(env.service, {
      headers: { "BITS-Packet-Type": "Ping", "Content-Length": "5" },
    });
    expect(wrong).toEqual({ status: 400, headers: INVALIDARG });
  });

  it("an unknown packet type is 400 E_INVALIDARG ([MC-BUP] 2.2.1.2)", async () => {
    const res = await call(env.service, { headers: { "BITS-Packet-Type": "Upload-Everything" } });
    expect(res).toEqual({ status: 400, headers: INVALIDARG });
  });

  it("Fragment and Close to an unknown session are 500 BG_E_SESSION_NOT_FOUND ([MC-BUP] 3.2.5.2.3)", async () => {
    const unknown = "{6B29FC40-CA47-4C0C-9B4D-000000000000}";
    expect(await fragment(env.service, unknown, data, 0, 99)).toEqual({
      status: 500,
      headers: NOT_FOUND,
    });
    expect(await endSession(env.service, "Close-Session", unknown)).toEqual({
      status: 500,
      headers: NOT_FOUND,
    });
  });

  describe("one session through in-order, gap, overlap, duplicate and malformed fragments", () => {
    let id: string;
    beforeAll(async () => {
      id = await createSession(env.service, "/upload/t8.bin");
    });
    const frag = (first: number, last: number) =>
      fragment(env.service, id, data, first, last, "/upload/t8.bin");
    const brcr = (offset: number) => ({
      ...ACK,
      "BITS-Session-Id": id,
      "BITS-Received-Content-Range": String(offset),
    });

    it("in-order fragments advance BITS-Received-Content-Range ([MC-BUP] 2.2.7.2)", async () => {
      expect(await frag(0, 99)).toEqual({ status: 200, headers: brcr(100) });
      expect(await frag(100, 199)).toEqual({ status: 200, headers: brcr(200) });
    });

    it("a gap is 416 with the expected offset and writes nothing ([MC-BUP] 3.2.5.2.6)", async () => {
      expect(await frag(300, 399)).toEqual({ status: 416, headers: brcr(200) });
      expect((await env.sessions.get(id))?.offset).toBe(200);
    });

    it("an overlap keeps only the new tail (docs/protocol.md, Fragments and offsets)", async () => {
      expect(await frag(150, 299)).toEqual({ status: 200, headers: brcr(300) });
    });

    it("a duplicate below the offset is 200 with the current offset, nothing written", async () => {
      expect(await frag(100, 199)).toEqual({ status: 200, headers: brcr(300) });
    });

    it("a changed total is 400 E_INVALIDARG ([MC-BUP] 2.2.1.2)", async () => {
      const res = await call(env.service, {
        path: "/upload/t8.bin",
        headers: {
          "BITS-Packet-Type": "Fragment",
          "BITS-Session-Id": id,
          "Content-Range": "bytes 300-399/2000",
        },
        body: data.subarray(300, 400),
      });
      expect(res).toEqual({ status: 400, headers: { ...INVALIDARG, "BITS-Session-Id": id } });
    });

    it.each([
      ["bytes 5-3/10", 0],
      ["bytes 0-9/5", 10],
      [undefined, 100],
      ["bytes 300-399/1000", 99],
      ["bytes=300-399/1000", 100],
    ])(
      "Content-Range %s with a %d-byte body is 400 E_INVALIDARG ([MC-BUP] 3.2.5.2.6)",
      async (range, length) => {
        const headers: Record<string, string> = {
          "BITS-Packet-Type": "Fragment",
          "BITS-Session-Id": id,
        };
        if (range !== undefined) headers["Content-Range"] = range;
        const res = await call(env.service, {
          path: "/upload/t8.bin",
          headers,
          body: new Uint8Array(length),
        });
        expect(res).toEqual({ status: 400, headers: { ...INVALIDARG, "BITS-Session-Id": id } });
        expect((await env.sessions.get(id))?.offset).toBe(300);
      },
    );

    it("the final fragment answers BRCR = total, no BITS-Reply-URL; the object appears on Close", async () => {
      expect(await frag(300, 999)).toEqual({ status: 200, headers: brcr(1000) });
      expect(await env.objects.head("upload/t8.bin")).toBeUndefined();
      // With the stored object's CRC32C, which a client may check (docs/checksums.md).
      expect(await endSession(env.service, "Close-Session", id, "/upload/t8.bin")).toEqual({
        status: 200,
        headers: { ...ACK, "BITS-Session-Id": id, "X-Object-CRC32C": await sdkCrc32c(data) },
      });
      const stored = await env.objects.get("upload/t8.bin");
      expect(stored && sha256(stored)).toBe(sha256(data));
    });

    it("Close-Session after completion and its repeat both answer 200 (tombstone)", async () => {
      const res = await endSession(env.service, "Close-Session", id, "/upload/t8.bin");
      expect(res).toEqual({
        status: 200,
        headers: { ...ACK, "BITS-Session-Id": id, "X-Object-CRC32C": await sdkCrc32c(data) },
      });
      expect((await env.sessions.get(id))?.status).toBe("closed");
    });
  });

  it("a fragment above the per-request maximum is 413 without BITS error headers", async () => {
    const local = await realService({
      limits: { maxFragmentBytes: 5120, maxUploadBytes: 1 << 30, partSize: 5 << 20 },
    });
    const id = await createSession(local.service);
    const big = randomBytes(6000, 3);
    const res = await fragment(local.service, id, big, 0, 5999);
    expect(res).toEqual({ status: 413, headers: { ...ACK, "BITS-Session-Id": id } });
  });

  it("a total above the maximum upload size is 500 BG_E_TOO_LARGE, context 0x5", async () => {
    const local = await realService({
      limits: { maxFragmentBytes: 1 << 20, maxUploadBytes: 999, partSize: 5 << 20 },
    });
    const id = await createSession(local.service);
    const res = await fragment(local.service, id, data, 0, 99);
    expect(res).toEqual({
      status: 500,
      headers: { ...errorHeaders("0x80200020"), "BITS-Session-Id": id },
    });
  });

  it("Close-Session before the last byte answers 200 and commits nothing (docs/protocol.md, Ending a session)", async () => {
    const id = await createSession(env.service, "/upload/t21.bin");
    const big = randomBytes(6 << 20, 21);
    for (let first = 0; first < 5_500_000; first += 500_000) {
      expect(
        (await fragment(env.service, id, big, first, first + 499_999, "/upload/t21.bin")).status,
      ).toBe(200);
    }
    const record = await env.sessions.get(id);
    expect(await endSession(env.service, "Close-Session", id, "/upload/t21.bin")).toEqual({
      status: 200,
      headers: { ...ACK, "BITS-Session-Id": id },
    });
    expect(await env.objects.head("upload/t21.bin")).toBeUndefined();
    expect(await env.objects.list(".bits-staging/")).toEqual([]);
    expect(record).toBeDefined();
    if (record) expect(await uploadIsGone(env.bucket, record.key, record.uploadId)).toBe(true);
  });

  it("Cancel-Session mid-upload answers 200, deletes staged data, leaves the destination alone", async () => {
    const id = await createSession(env.service, "/upload/t22.bin");
    expect((await fragment(env.service, id, data, 0, 499, "/upload/t22.bin")).status).toBe(200);
    expect((await env.objects.list(".bits-staging/")).length).toBeGreaterThan(0);
    expect(await endSession(env.service, "Cancel-Session", id, "/upload/t22.bin")).toEqual({
      status: 200,
      headers: { ...ACK, "BITS-Session-Id": id },
    });
    expect(await env.objects.list(".bits-staging/")).toEqual([]);
    expect(await env.objects.head("upload/t22.bin")).toBeUndefined();
    // A repeated Cancel also answers 200 (tombstone).
    expect((await endSession(env.service, "Cancel-Session", id, "/upload/t22.bin")).status).toBe(
      200,
    );
    // A Fragment after Cancel finds no session.
    expect((await fragment(env.service, id, data, 500, 999, "/upload/t22.bin")).status).toBe(500);
  });

  it("Create-Session on an existing destination with overwrite off is 403 E_ACCESSDENIED", async () => {
    await env.objects.putStaged("upload/exists.txt", new TextEncoder().encode("keep me"));
    const res = await call(env.service, {
      path: "/upload/exists.txt",
      headers: {
        "BITS-Packet-Type": "Create-Session",
        "BITS-Supported-Protocols": BITS_PROTOCOL_GUID,
      },
    });
    expect(res).toEqual({ status: 403, headers: errorHeaders("0x80070005") });
    expect(new TextDecoder().decode(await env.objects.get("upload/exists.txt"))).toBe("keep me");
  });

  it("any packet outside the upload paths is 501 E_ACCESSDENIED ([MC-BUP] note <22>)", async () => {
    for (const type of ["Ping", "Create-Session", "Fragment"]) {
      const res = await call(env.service, {
        path: "/elsewhere/file.txt",
        headers: { "BITS-Packet-Type": type },
      });
      expect(res).toEqual({ status: 501, headers: errorHeaders("0x80070005") });
    }
  });

  it.each([
    "/upload/dir/",
    "/upload/a/../b",
    "/upload/a%2Fb",
    "/upload/a%5Cb",
    "/upload//b",
    "/upload/a%00b",
  ])(
    "destination %s is refused with 400 E_INVALIDARG (docs/protocol.md, Destinations)",
    async (path) => {
      const res = await call(env.service, {
        path,
        headers: {
          "BITS-Packet-Type": "Create-Session",
          "BITS-Supported-Protocols": BITS_PROTOCOL_GUID,
        },
      });
      expect(res).toEqual({ status: 400, headers: INVALIDARG });
    },
  );

  it("a header value over 4 KB is 400 E_INVALIDARG ([MC-BUP] note <2>)", async () => {
    const res = await call(env.service, {
      headers: { "BITS-Packet-Type": "Ping", "X-Big": "a".repeat(4097) },
    });
    expect(res).toEqual({ status: 400, headers: INVALIDARG });
  });

  it.each(["fRaGmEnT", "FRAGMENT"])("packet type %s is handled as Fragment", async (type) => {
    const id = await createSession(env.service, `/upload/t28-${type}.bin`);
    const res = await call(env.service, {
      path: `/upload/t28-${type}.bin`,
      headers: {
        "BITS-Packet-Type": type,
        "BITS-Session-Id": id,
        "Content-Range": "bytes 0-9/1000",
      },
      body: data.subarray(0, 10),
    });
    expect(res.status).toBe(200);
    expect(res.headers["BITS-Received-Content-Range"]).toBe("10");
  });

  it("CREATE-SESSION in capitals creates a session", async () => {
    const res = await call(env.service, {
      path: "/upload/t28-create.bin",
      headers: {
        "BITS-Packet-Type": "CREATE-SESSION",
        "BITS-Supported-Protocols": BITS_PROTOCOL_GUID,
      },
    });
    expect(res.status).toBe(200);
  });

  it("a session idle past the timeout is 500 BG_E_SESSION_NOT_FOUND though its record exists", async () => {
    const id = await createSession(env.service, "/upload/t30.bin");
    expect((await fragment(env.service, id, data, 0, 99, "/upload/t30.bin")).status).toBe(200);
    env.runtime.advance((env.context.settings.sessionTimeoutSeconds + 1) * 1000);
    try {
      expect(await env.sessions.get(id)).toBeDefined();
      expect(await fragment(env.service, id, data, 100, 199, "/upload/t30.bin")).toEqual({
        status: 500,
        headers: NOT_FOUND,
      });
    } finally {
      env.runtime.advance(-(env.context.settings.sessionTimeoutSeconds + 1) * 1000);
    }
  });

  it("a method other than BITS_POST is 405; POST with X-Http-Method-Override: BITS_POST is served", async () => {
    for (const method of ["GET", "PUT", "DELETE", "POST"]) {
      const res = await call(env.service, { method, headers: { "BITS-Packet-Type": "Ping" } });
      expect(res).toEqual({ status: 405, headers: { Allow: "BITS_POST", "Content-Length": "0" } });
    }
    const res = await call(env.service, {
      method: "POST",
      headers: { "BITS-Packet-Type": "Ping", "X-Http-Method-Override": "BITS_POST" },
    });
    expect(res).toEqual({ status: 200, headers: ACK });
  });
});
