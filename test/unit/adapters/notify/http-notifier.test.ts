import { createHash, randomBytes } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import {
  HttpNotifier,
  s3Uri,
  UploadReadError,
} from "../../../../functions/adapters/notify/http-notifier.ts";
import { parseHresult, RoutingNotifier } from "../../../../functions/adapters/notify/notifier.ts";
import type { NotificationRequest, Notifier } from "../../../../functions/ports/notifier.ts";
import { sha256 } from "../../../support/checks.ts";

type Handler = (req: IncomingMessage, res: ServerResponse) => unknown;
const servers: Server[] = [];

afterEach(async () => {
  for (const server of servers.splice(0)) {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
});

/** A real application on 127.0.0.1; `url` is its notification URL. */
async function app(handler: Handler) {
  const server = createServer((req, res) => void handler(req, res));
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  const connections = () =>
    new Promise<number>((resolve) => server.getConnections((_, n) => resolve(n)));
  return { url: `http://127.0.0.1:${port}/notify?token=t0ps3cret`, connections };
}

async function received(req: IncomingMessage) {
  const hash = createHash("sha256");
  let bytes = 0;
  for await (const chunk of req) {
    hash.update(chunk as Buffer);
    bytes += (chunk as Buffer).length;
  }
  return { bytes, sha256: hash.digest("hex") };
}

/** A lazy file stream in 64 KiB chunks; `gate(offset)` may hold a chunk back. */
function file(data: Uint8Array, gate?: (offset: number) => Promise<void>) {
  const state = { produced: 0, cancelled: false };
  const open = async () =>
    new ReadableStream<Uint8Array>({
      async pull(controller) {
        await gate?.(state.produced);
        const chunk = data.subarray(state.produced, state.produced + 65_536);
        state.produced += chunk.byteLength;
        if (chunk.byteLength === 0) controller.close();
        else controller.enqueue(chunk);
      },
      cancel() {
        state.cancelled = true;
      },
    });
  return { state, open };
}

function notification(
  target: string,
  overrides: Partial<NotificationRequest> & { data?: Uint8Array } = {},
): NotificationRequest {
  const data = overrides.data ?? new Uint8Array([1, 2, 3]);
  return {
    type: "value",
    target,
    originalUrl: "https://bits.example/uploads/a%20file.bin",
    sessionId: "{11111111-2222-3333-4444-555555555555}",
    principal: "alice",
    request: {
      bucket: "uploads-bucket",
      key: "uploads/a file.bin",
      size: data.byteLength,
      readUrl: "https://s3.example/uploads-bucket/uploads/a%20file.bin?X-Amz-Signature=get",
      open: file(data).open,
    },
    response: {
      bucket: "uploads-bucket",
      key: "replies/r1",
      writeUrl: "https://s3.example/uploads-bucket/replies/r1?X-Amz-Signature=put",
    },
    timeoutMs: 5_000,
    maxReplyBytes: 1_048_576,
    ...overrides,
  };
}

const notifier = new HttpNotifier();

describe("HttpNotifier by value", () => {
  it("streams the whole file and returns the reply byte for byte", async () => {
    const data = randomBytes(8 * 1_048_576);
    const reply = randomBytes(300_000);
    let firstByte = () => {};
    const appReading = new Promise<void>((resolve) => {
      firstByte = resolve;
    });
    // Half the file is held back until the application has bytes: a buffering client deadlocks.
    const source = file(data, (offset) =>
      offset >= data.length / 2 ? appReading : Promise.resolve(),
    );
    let seen: { headers: IncomingMessage["headers"]; bytes: number; sha256: string } | undefined;
    const { url } = await app(async (req, res) => {
      req.once("data", () => firstByte());
      seen = { headers: req.headers, ...(await received(req)) };
      res.end(reply);
    });
    const request = notification(url, { data, timeoutMs: 30_000, maxReplyBytes: 400_000 });
    const result = await notifier.notify({
      ...request,
      request: { ...request.request, open: source.open },
    });

    expect(result.kind).toBe("ok");
    if (result.kind !== "ok") return;
    expect(seen?.bytes).toBe(data.length);
    expect(seen?.sha256).toBe(sha256(data));
    expect(sha256(result.reply ?? new Uint8Array())).toBe(sha256(reply));
    expect(result.copyToDestination).toBe(false);
    expect(result.staticUrl).toBeUndefined();
    expect(seen?.headers).toMatchObject({
      "content-length": String(data.length),
      "bits-original-request-url": "https://bits.example/uploads/a%20file.bin",
      "user-agent": "bits-upload-server",
      accept: "*/*",
    });
    expect(seen?.headers["bits-session-id"]).toBeUndefined();
    expect(seen?.headers["bits-request-datafile-name"]).toBeUndefined();
    expect(seen?.headers["transfer-encoding"]).toBeUndefined();
  });

  it("reads a chunked reply (no Content-Length) to its end", async () => {
    const { url } = await app(async (req, res) => {
      await received(req);
      res.write("part one, ");
      setTimeout(() => res.end("part two"), 50);
    });
    const result = await notifier.notify(notification(url));
    expect(result.kind === "ok" && Buffer.from(result.reply ?? []).toString()).toBe(
      "part one, part two",
    );
  });

  it("refuses a reply over maxReplyBytes, declared or chunked", async () => {
    const big = randomBytes(2_000);
    const declared = await app((_, res) => res.end(big));
    const chunked = await app((_, res) => {
      res.write(big.subarray(0, 1_000));
      res.end(big.subarray(1_000));
    });
    for (const { url } of [declared, chunked]) {
      const result = await notifier.notify(notification(url, { maxReplyBytes: 1_500 }));
      expect(result).toEqual({
        kind: "unreachable",
        message: expect.stringContaining("over 1500 bytes"),
      });
    }
  });

  it("throws when the upload itself cannot be read: not the application's fault", async () => {
    const { url } = await app(async (req, res) => {
      await received(req).catch(() => {});
      res.end();
    });
    const request = notification(url, { data: randomBytes(1_000_000) });
    const broken = file(randomBytes(1_000_000), async (offset) => {
      if (offset > 100_000) throw new Error("S3 went away");
    });
    await expect(
      notifier.notify({ ...request, request: { ...request.request, open: broken.open } }),
    ).rejects.toBeInstanceOf(UploadReadError);
    const gone = async () => Promise.reject(new Error("the uploaded file is gone"));
    await expect(
      notifier.notify({ ...request, request: { ...request.request, open: gone } }),
    ).rejects.toBeInstanceOf(UploadReadError);
  });
});

describe("HttpNotifier by reference", () => {
  it("names the file and the reply location, sends no body and ignores the reply body", async () => {
    let seen: { headers: IncomingMessage["headers"]; bytes: number } | undefined;
    const { url } = await app(async (req, res) => {
      seen = { headers: req.headers, ...(await received(req)) };
      res.end("this body means nothing");
    });
    const request = notification(url, { type: "reference" });
    const result = await notifier.notify({
      ...request,
      request: { ...request.request, key: "uploads/é 100%.bin" },
    });
    expect(result).toEqual({ kind: "ok", copyToDestination: false, reply: undefined });
    expect(seen?.bytes).toBe(0);
    expect(seen?.headers).toMatchObject({
      "content-length": "0",
      "bits-original-request-url": "https://bits.example/uploads/a%20file.bin",
      "bits-request-datafile-name": "s3://uploads-bucket/uploads/%C3%A9%20100%25.bin",
      "bits-response-datafile-name": "s3://uploads-bucket/replies/r1",
      "bits-request-datafile-url": request.request.readUrl,
      "bits-response-datafile-url": request.response.writeUrl,
    });
    expect(decodeURIComponent(s3Uri("b", "uploads/é 100%.bin").slice(5))).toBe(
      "b/uploads/é 100%.bin",
    );
  });
});

describe("HttpNotifier answers", () => {
  it("returns a static reply URL, ignoring the body, and the copy flag", async () => {
    const { url } = await app((_, res) => {
      res.setHeader("BITS-Static-Response-URL", "https://replies.example/r/1");
      res.setHeader("BITS-Copy-File-To-Destination", "true");
      res.end("ignored");
    });
    expect(await notifier.notify(notification(url))).toEqual({
      kind: "ok",
      staticUrl: "https://replies.example/r/1",
      copyToDestination: true,
    });
  });

  it("sets copyToDestination from the header alone", async () => {
    const { url } = await app((_, res) => {
      res.setHeader("BITS-Copy-File-To-Destination", "");
      res.end("reply");
    });
    const result = await notifier.notify(notification(url));
    expect(result).toMatchObject({ kind: "ok", copyToDestination: true });
  });

  it("refuses a relative static URL", async () => {
    const { url } = await app((_, res) => {
      res.setHeader("BITS-Static-Response-URL", "/r/1");
      res.end();
    });
    expect((await notifier.notify(notification(url))).kind).toBe("unreachable");
  });

  it.each([
    [403, "0x80070005", 0x80070005],
    [404, undefined, undefined],
    [500, "-2147024891", 0x80070005],
    [503, "not a code", undefined],
    [502, "0x00000001", undefined],
  ])("maps status %i with BITS-Error-Code %s to an app-error", async (status, code, expected) => {
    const { url } = await app((_, res) => {
      if (code !== undefined) res.setHeader("BITS-Error-Code", code);
      res.writeHead(status).end("details");
    });
    const result = await notifier.notify(notification(url));
    expect(result).toEqual({
      kind: "app-error",
      status,
      errorCode: expected,
      message: expect.stringContaining(String(status)),
    });
    expect(JSON.stringify(result)).not.toContain("t0ps3cret");
  });

  it("parses HRESULTs strictly", () => {
    expect(parseHresult("0x8020001F")).toBe(0x8020001f);
    expect(parseHresult(" 2149580831 ")).toBe(0x8020001f);
    expect(parseHresult("0x8020001")).toBeUndefined();
    expect(parseHresult("0x80200010F")).toBeUndefined();
    expect(parseHresult("4294967296")).toBeUndefined();
    expect(parseHresult(null)).toBeUndefined();
  });
});

describe("HttpNotifier failures", () => {
  it("times out within the budget, cancels the upload and leaves no socket", async () => {
    // Reads nothing and answers never; reads again later, only to see the client has hung up.
    const { url, connections } = await app((req) => {
      req.pause();
      setTimeout(() => req.resume(), 600);
    });
    const data = new Uint8Array(64 * 1_048_576);
    const source = file(data);
    const request = notification(url, { data, timeoutMs: 300 });
    const started = performance.now();
    const result = await notifier.notify({
      ...request,
      request: { ...request.request, open: source.open },
    });
    expect(result).toEqual({ kind: "timeout" });
    expect(performance.now() - started).toBeLessThan(600);
    await expect.poll(() => source.state.cancelled).toBe(true);
    expect(source.state.produced).toBeLessThan(data.length);
    await expect.poll(connections, { timeout: 5_000 }).toBe(0);
  });

  it("stops the upload when the application answers before reading it", async () => {
    const { url } = await app((_, res) => res.writeHead(413).end());
    const data = new Uint8Array(64 * 1_048_576);
    const source = file(data);
    const request = notification(url, { data });
    const result = await notifier.notify({
      ...request,
      request: { ...request.request, open: source.open },
    });
    expect(result).toMatchObject({ kind: "app-error", status: 413 });
    await expect.poll(() => source.state.cancelled).toBe(true);
    expect(source.state.produced).toBeLessThan(data.length);
  });

  it("times out when the reply body stalls", async () => {
    const { url, connections } = await app(async (req, res) => {
      await received(req);
      res.write("a beginning");
    });
    const started = performance.now();
    expect(await notifier.notify(notification(url, { timeoutMs: 300 }))).toEqual({
      kind: "timeout",
    });
    expect(performance.now() - started).toBeLessThan(600);
    await expect.poll(connections).toBe(0);
  });

  it("reports a refused connection as unreachable", async () => {
    const { url } = await app(() => {});
    servers[0]?.close();
    servers[0]?.closeAllConnections();
    const result = await notifier.notify(notification(url));
    expect(result).toEqual({
      kind: "unreachable",
      message: expect.stringContaining("ECONNREFUSED"),
    });
    expect(JSON.stringify(result)).not.toContain("t0ps3cret");
  });
});

describe("RoutingNotifier", () => {
  const fixed = (name: string): Notifier => ({
    notify: async () => ({ kind: "unreachable", message: name }),
  });

  it("routes by scheme and makes the Lambda notifier once", async () => {
    let made = 0;
    const routing = new RoutingNotifier({
      http: fixed("http"),
      lambda: async () => {
        made++;
        return fixed("lambda");
      },
    });
    const target = (t: string) => routing.notify(notification(t));
    expect(await target("https://app.example/x")).toMatchObject({ message: "http" });
    expect(await target("HTTP://app.example/x")).toMatchObject({ message: "http" });
    expect(await target("lambda:fn")).toMatchObject({ message: "lambda" });
    expect(await target("lambda:arn:aws:lambda:us-east-1:1:function:fn")).toMatchObject({
      message: "lambda",
    });
    expect(made).toBe(1);
    expect(await target("ftp://app.example/x")).toMatchObject({
      kind: "unreachable",
      message: expect.stringContaining("ftp"),
    });
    expect((await target("no scheme")).kind).toBe("unreachable");
  });

  it("answers unreachable for Lambda targets when none is configured", async () => {
    const routing = new RoutingNotifier({ http: fixed("http") });
    expect((await routing.notify(notification("lambda:fn"))).kind).toBe("unreachable");
  });
});
