import { randomBytes } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { type AddressInfo, connect, type Socket } from "node:net";
import { describe, expect, it, onTestFinished } from "vitest";
import {
  type ConnectionLimits,
  createBitsFront,
  heldBody,
} from "../../../../functions/adapters/node/bits-front.ts";
import { sha256 } from "../../../support/checks.ts";

/**
 * Issue 18, findings 5 and 6: what a client can hold on the local server before anything is
 * authenticated. The front reads every byte before Node's parser, so it must bound the memory a
 * connection holds, the time a head takes and the connections open at once itself
 * (docs/security.md, "The local server").
 */

const MiB = 1024 * 1024;

/**
 * Node's http.Server behind the front on 127.0.0.1. `answer` decides each request: by default
 * it takes the body the front holds and answers its SHA-256; `held` counts requests whose body
 * the front held.
 */
async function fronted(
  limits: Partial<ConnectionLimits>,
  {
    answer,
    keepAliveTimeout = 5000,
  }: {
    answer?: (req: IncomingMessage, res: ServerResponse) => void;
    keepAliveTimeout?: number;
  } = {},
) {
  const requests: IncomingMessage[] = [];
  const http = createServer({ keepAliveTimeout, maxHeaderSize: 64 * 1024 }, (req, res) => {
    requests.push(req);
    if (answer) return answer(req, res);
    const held = heldBody(req);
    void (held ? held.bytes : Promise.resolve(new Uint8Array(0))).then(
      (body) => res.writeHead(200, { "Content-Length": "64" }).end(sha256(body)),
      () => res.destroy(),
    );
  });
  const front = createBitsFront(http, { maxHeldBodyBytes: MiB, limits });
  await new Promise<void>((resolve) => front.listen(0, "127.0.0.1", resolve));
  onTestFinished(
    () =>
      new Promise<void>((resolve) => {
        front.destroyConnections();
        front.close(() => resolve());
      }),
  );
  return { port: (front.address() as AddressInfo).port, requests };
}

/** A raw connection that records what it receives and when it closes. */
function raw(port: number) {
  const socket: Socket = connect(port, "127.0.0.1");
  const state = { received: "", closed: false };
  const closed = new Promise<void>((resolve) =>
    socket.once("close", () => {
      state.closed = true;
      resolve();
    }),
  );
  socket.on("data", (chunk: Buffer) => {
    state.received += chunk.toString("latin1");
  });
  socket.on("error", () => {});
  const connected = new Promise<void>((resolve) => socket.once("connect", () => resolve()));
  return {
    state,
    closed,
    connected,
    write: (bytes: Uint8Array | string) =>
      new Promise<void>((resolve) => socket.write(bytes, () => resolve())),
    statuses: () => [...state.received.matchAll(/HTTP\/1\.1 (\d{3})/g)].map((m) => Number(m[1])),
    end: () => socket.destroy(),
  };
}

/** How often `eventually` looks: 200 requests in a row each wait for their answer. */
const STEP_MS = 2;

/** Waits, boundedly, for a condition; false when it never held. */
async function eventually(condition: () => boolean, ms = 5000): Promise<boolean> {
  for (let waited = 0; waited < ms; waited += STEP_MS) {
    if (condition()) return true;
    await new Promise((resolve) => setTimeout(resolve, STEP_MS));
  }
  return condition();
}

const head = (length: number, extra = "") =>
  `BITS_POST /a.bin HTTP/1.1\r\nHost: h\r\nBITS-Packet-Type: Fragment\r\n${extra}Content-Length: ${length}\r\n\r\n`;

/** 2,000 headers of the client's own, as many as Node keeps. */
const MANY_HEADERS = Array.from({ length: 2000 }, (_, i) => `X-Pad-${i}: ${i}\r\n`).join("");

describe("memory held before authentication (finding 5)", () => {
  it("a client's 2,000 headers cannot push out the front's: its body is still handed over", async () => {
    const { port } = await fronted({});
    const body = randomBytes(1000);
    const connection = raw(port);
    await connection.write(Buffer.concat([Buffer.from(head(body.length, MANY_HEADERS)), body]));
    expect(await eventually(() => connection.statuses().length === 1)).toBe(true);
    expect(connection.state.received.endsWith(sha256(body))).toBe(true);
    connection.end();
  });

  it("200 requests of 1 MiB answered 405 on one keep-alive connection do not pile up", async () => {
    const { port } = await fronted(
      {},
      { answer: (_req, res) => res.writeHead(405, { "Content-Length": "0" }).end() },
    );
    const connection = raw(port);
    const body = randomBytes(MiB);
    const before = process.memoryUsage().arrayBuffers;
    let peak = 0;
    for (let i = 0; i < 200; i++) {
      await connection.write(Buffer.concat([Buffer.from(head(MiB, MANY_HEADERS)), body]));
      // One at a time, as a client that waits for each answer.
      expect(await eventually(() => connection.statuses().length === i + 1)).toBe(true);
      peak = Math.max(peak, process.memoryUsage().arrayBuffers - before);
    }
    expect(connection.statuses().every((status) => status === 405)).toBe(true);
    // Unbounded, this holds 200 MiB; bounded, one body at a time and what the collector has
    // not yet reclaimed.
    expect(peak).toBeLessThan(100 * MiB);
    connection.end();
  });

  it("one connection holds one body at a time: the next request is read after the answer", async () => {
    const waiting: ServerResponse[] = [];
    const { port, requests } = await fronted({}, { answer: (_req, res) => waiting.push(res) });
    const connection = raw(port);
    const body = randomBytes(1000);
    const one = Buffer.concat([Buffer.from(head(body.length)), body]);
    await connection.write(Buffer.concat([one, one, one]));
    expect(await eventually(() => requests.length === 1)).toBe(true);
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(requests).toHaveLength(1);
    waiting.shift()?.writeHead(200, { "Content-Length": "0" }).end();
    expect(await eventually(() => requests.length === 2)).toBe(true);
    waiting.shift()?.writeHead(200, { "Content-Length": "0" }).end();
    expect(await eventually(() => requests.length === 3)).toBe(true);
    connection.end();
  });

  it("past the total for all connections, a body gets 503 with Retry-After before it is read", async () => {
    const { port } = await fronted({ maxHeldBytes: 2 * MiB });
    const connections = [raw(port), raw(port), raw(port)];
    // Each declares 1 MiB and sends a little of it: the front holds room for the whole body.
    for (const connection of connections.slice(0, 2)) await connection.write(`${head(MiB)}abc`);
    const third = connections[2];
    await third?.write(`${head(MiB)}abc`);
    expect(await eventually(() => third?.state.closed === true)).toBe(true);
    expect(third?.statuses()).toEqual([503]);
    expect(third?.state.received).toContain("Retry-After: 5");
    // The first two are still being received.
    expect(connections[0]?.state.closed).toBe(false);
    expect(connections[1]?.state.closed).toBe(false);
    for (const connection of connections) connection.end();
  });
});

describe("time and connections before authentication (finding 6)", () => {
  it("a connection that sends nothing is closed after the head's time", async () => {
    const { port } = await fronted({ headTimeoutMs: 300 });
    const connection = raw(port);
    expect(await eventually(() => connection.state.closed, 5000)).toBe(true);
    expect(connection.statuses()).toEqual([408]);
  });

  it("a head fed a byte at a time gets 408 after the head's time, however often bytes come", async () => {
    const { port, requests } = await fronted({ headTimeoutMs: 500 });
    const connection = raw(port);
    await connection.connected;
    const text = head(0, MANY_HEADERS);
    for (let i = 0; i < 100 && !connection.state.closed; i++) {
      await connection.write(text[i] ?? "");
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect(await eventually(() => connection.state.closed, 5000)).toBe(true);
    expect(connection.statuses()).toEqual([408]);
    expect(requests).toHaveLength(0);
  });

  it("a keep-alive connection left idle after an answer is closed after the idle time", async () => {
    const { port } = await fronted({}, { keepAliveTimeout: 300 });
    const connection = raw(port);
    await connection.write(head(0));
    expect(await eventually(() => connection.statuses().length === 1)).toBe(true);
    expect(await eventually(() => connection.state.closed, 5000)).toBe(true);
  });

  it("connections past the cap are closed as they arrive; those within it are served", async () => {
    const { port } = await fronted({ maxConnections: 2 });
    const open = [raw(port), raw(port)];
    await Promise.all(open.map((connection) => connection.connected));
    // Accepted by the kernel, then closed by the server without a byte.
    await new Promise((resolve) => setTimeout(resolve, 100));
    const extra = raw(port);
    expect(await eventually(() => extra.state.closed, 5000)).toBe(true);
    expect(extra.state.received).toBe("");
    for (const connection of open) {
      await connection.write(head(0));
      expect(await eventually(() => connection.statuses().length === 1)).toBe(true);
      expect(connection.state.closed).toBe(false);
      connection.end();
    }
  });
});
