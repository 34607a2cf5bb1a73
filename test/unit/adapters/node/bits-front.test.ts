import { randomBytes } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { type AddressInfo, connect, type Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import {
  createBitsFront,
  HELD_BODY_HEADER,
  heldBody,
  ORIGINAL_METHOD_HEADER,
} from "../../../../functions/adapters/node/bits-front.ts";
import { sha256 } from "../../../support/checks.ts";

const LIMIT = 1024 * 1024;
const stops: (() => Promise<void>)[] = [];

afterEach(async () => {
  for (const stop of stops.splice(0)) await stop();
});

interface Seen {
  method: string | undefined;
  headers: IncomingMessage["headers"];
  held: boolean;
  contentLength?: string;
  bodyHash?: string;
  bodyLength?: number;
  error?: string;
}

/**
 * Node's http.Server behind the front on 127.0.0.1, answering each request with the SHA-256 of
 * the body it got, from the front or from Node's parser; `seen` lists what the server saw.
 */
async function frontedServer(timeouts: { requestTimeout?: number; headersTimeout?: number } = {}) {
  const seen: Seen[] = [];
  const http = createServer(timeouts, async (req: IncomingMessage, res: ServerResponse) => {
    const held = heldBody(req);
    const entry: Seen = { method: req.method, headers: req.headers, held: held !== undefined };
    seen.push(entry);
    try {
      let body: Uint8Array;
      if (held) {
        entry.contentLength = held.contentLength;
        body = await held.bytes;
      } else {
        const chunks: Buffer[] = [];
        for await (const chunk of req) chunks.push(chunk as Buffer);
        body = Buffer.concat(chunks);
      }
      entry.bodyHash = sha256(body);
      entry.bodyLength = body.length;
      res.writeHead(200, { "Content-Length": "64" }).end(entry.bodyHash);
    } catch (error) {
      entry.error = String(error);
      if (!res.headersSent) res.destroy();
    }
  });
  const front = createBitsFront(http, { maxHeldBodyBytes: LIMIT });
  await new Promise<void>((resolve) => front.listen(0, "127.0.0.1", resolve));
  stops.push(
    () =>
      new Promise<void>((resolve) => {
        front.destroyConnections();
        front.close(() => resolve());
      }),
  );
  return { port: (front.address() as AddressInfo).port, seen };
}

/** A raw connection: writes bytes as given, collects everything the server answers. */
function raw(port: number) {
  const socket: Socket = connect(port, "127.0.0.1");
  let received = "";
  const closed = new Promise<void>((resolve) => socket.once("close", () => resolve()));
  socket.on("data", (chunk: Buffer) => {
    received += chunk.toString("latin1");
  });
  socket.on("error", () => {});
  return {
    write: (bytes: Uint8Array | string) =>
      new Promise<void>((resolve) => socket.write(bytes, () => resolve())),
    /** Waits (bounded) until `count` responses arrived; answers their status lines and bodies. */
    async responses(count: number) {
      for (let i = 0; i < 200; i++) {
        const found = [...received.matchAll(/HTTP\/1\.1 (\d{3})[^\r]*\r\n[\s\S]*?\r\n\r\n/g)];
        if (found.length >= count) {
          return found.map((match) => {
            const after = received.slice((match.index ?? 0) + match[0].length);
            return { status: Number(match[1]), body: after.slice(0, 64) };
          });
        }
        await new Promise((resolve) => setTimeout(resolve, 25));
      }
      throw new Error(`no ${count} responses in time; got ${JSON.stringify(received)}`);
    },
    closed,
    end: () => socket.destroy(),
  };
}

const head = (method: string, length: number | string, extra = "") =>
  `${method} /a.bin HTTP/1.1\r\nHost: h\r\nBITS-Packet-Type: Fragment\r\n${extra}Content-Length: ${length}\r\n\r\n`;

describe("the BITS front holds request bodies itself", () => {
  it("a BITS_POST body cut into odd pieces arrives whole, with the client's Content-Length", async () => {
    const { port, seen } = await frontedServer();
    const body = randomBytes(300_001);
    const wire = Buffer.concat([Buffer.from(head("BITS_POST", body.length)), body]);
    const connection = raw(port);
    // One byte, then pieces that cut the head, the head's end and the body anywhere.
    for (const [from, to] of [
      [0, 1],
      [1, 40],
      [40, wire.length - body.length - 2],
      [wire.length - body.length - 2, wire.length - body.length + 3],
      [wire.length - body.length + 3, wire.length - 7],
      [wire.length - 7, wire.length],
    ] as const) {
      await connection.write(wire.subarray(from, to));
    }
    const [response] = await connection.responses(1);
    expect(response).toEqual({ status: 200, body: sha256(body) });
    expect(seen).toHaveLength(1);
    expect(seen[0]).toMatchObject({
      method: "POST",
      held: true,
      contentLength: String(body.length),
      bodyLength: body.length,
    });
    // Node's parser saw the head alone.
    expect(seen[0]?.headers["content-length"]).toBe("0");
    expect(seen[0]?.headers[ORIGINAL_METHOD_HEADER]).toBe("BITS_POST");
    connection.end();
  });

  it("requests sent back to back on one connection each get their own body", async () => {
    const { port, seen } = await frontedServer();
    const bodies = [randomBytes(70_000), randomBytes(1), randomBytes(LIMIT)];
    const connection = raw(port);
    await connection.write(
      Buffer.concat(bodies.flatMap((body) => [Buffer.from(head("BITS_POST", body.length)), body])),
    );
    const responses = await connection.responses(3);
    expect(responses).toEqual(bodies.map((body) => ({ status: 200, body: sha256(body) })));
    expect(seen.map((entry) => entry.held)).toEqual([true, true, true]);
    connection.end();
  });

  it("a client's own held-body header is dropped: it cannot name another request's body", async () => {
    const { port, seen } = await frontedServer();
    const body = randomBytes(1000);
    const connection = raw(port);
    await connection.write(
      Buffer.concat([
        Buffer.from(head("BITS_POST", body.length, `${HELD_BODY_HEADER}: 1\r\n`)),
        body,
        Buffer.from(head("BITS_POST", 0, `${HELD_BODY_HEADER}: 1\r\n`)),
      ]),
    );
    const responses = await connection.responses(2);
    expect(responses[0]).toEqual({ status: 200, body: sha256(body) });
    // The second request has no body; the first one's is not handed to it.
    expect(responses[1]).toEqual({ status: 200, body: sha256(new Uint8Array(0)) });
    expect(seen[1]?.held).toBe(false);
    connection.end();
  });

  it("bodies above the limit, of other methods or with two Content-Lengths are left to Node", async () => {
    const { port, seen } = await frontedServer();
    const big = randomBytes(LIMIT + 1);
    const put = randomBytes(5000);
    const connection = raw(port);
    await connection.write(Buffer.concat([Buffer.from(head("BITS_POST", big.length)), big]));
    await connection.write(Buffer.concat([Buffer.from(head("PUT", put.length)), put]));
    const responses = await connection.responses(2);
    expect(responses).toEqual([
      { status: 200, body: sha256(big) },
      { status: 200, body: sha256(put) },
    ]);
    expect(seen.map((entry) => entry.held)).toEqual([false, false]);
    connection.end();

    const twice = raw(port);
    await twice.write(`${head("BITS_POST", 3, "Content-Length: 4\r\n")}abcd`);
    const [refused] = await twice.responses(1);
    expect(refused?.status).toBe(400);
    expect(seen).toHaveLength(2);
    twice.end();
  });

  it("a body that stops arriving gets 408 after Node's requestTimeout, and the connection closes", async () => {
    const { port, seen } = await frontedServer({ requestTimeout: 400, headersTimeout: 300 });
    const connection = raw(port);
    await connection.write(`${head("BITS_POST", 1000)}only part of it`);
    const [response] = await connection.responses(1);
    expect(response?.status).toBe(408);
    await connection.closed;
    await expect.poll(() => seen[0]?.error).toContain("ended before the request body arrived");
  });

  it("a connection that drops in the middle of a body fails that body, and nothing else", async () => {
    const { port, seen } = await frontedServer();
    const connection = raw(port);
    await connection.write(`${head("BITS_POST", 1000)}only part of it`);
    await expect.poll(() => seen.length).toBe(1);
    connection.end();
    await expect.poll(() => seen[0]?.error).toContain("ended before the request body arrived");
    expect(seen[0]?.bodyHash).toBeUndefined();
  });
});
