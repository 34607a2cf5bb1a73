import { connect } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { localServer } from "../support/local.ts";
import { randomBytes } from "../support/windows-client.ts";

interface RawResponse {
  statusLine: string;
  headers: Map<string, string>;
  body: Buffer;
}

/** One keep-alive connection that sends raw bytes and reads one response at a time. */
function rawConnection(port: number) {
  const socket = connect(port, "127.0.0.1");
  let buffered = Buffer.alloc(0);
  let waiting: (() => void) | undefined;
  socket.on("data", (chunk) => {
    buffered = Buffer.concat([buffered, chunk]);
    waiting?.();
  });
  const next = async (): Promise<RawResponse> => {
    for (let round = 0; round < 1000; round++) {
      const end = buffered.indexOf("\r\n\r\n");
      if (end >= 0) {
        const lines = buffered.subarray(0, end).toString("latin1").split("\r\n");
        const headers = new Map<string, string>();
        for (const line of lines.slice(1)) {
          const colon = line.indexOf(":");
          headers.set(line.slice(0, colon).toLowerCase(), line.slice(colon + 1).trim());
        }
        const length = Number(headers.get("content-length") ?? 0);
        if (buffered.length >= end + 4 + length) {
          const body = buffered.subarray(end + 4, end + 4 + length);
          buffered = buffered.subarray(end + 4 + length);
          return { statusLine: lines[0] ?? "", headers, body };
        }
      }
      await new Promise<void>((resolve) => {
        waiting = resolve;
        setTimeout(resolve, 50);
      });
    }
    throw new Error("no response");
  };
  return {
    async send(head: string, body: Uint8Array = new Uint8Array(0)) {
      socket.write(Buffer.concat([Buffer.from(head.replaceAll("\n", "\r\n"), "latin1"), body]));
      return next();
    },
    close: () => socket.destroy(),
  };
}

describe("[MC-BUP] 4.1 example A replayed byte for byte over one keep-alive connection", () => {
  let env: Awaited<ReturnType<typeof localServer>>;
  const file = randomBytes(4892, 4892);
  beforeAll(async () => {
    env = await localServer();
  });
  afterAll(async () => {
    await env.server.close();
  });

  it("all eight messages: Create-Session, one Fragment, Ping, Close-Session; then GET returns the file", async () => {
    const connection = rawConnection(env.server.port);
    const common = "Accept: */*\nUser-Agent: Microsoft BITS/6.7\nHost: frankcao8\n";
    const a2 = await connection.send(
      "BITS_POST /upload/2000mb-rfc2119.txt HTTP/1.1\nAccept: */*\nBITS-Packet-Type: Create-Session\nBITS-Supported-Protocols: {7df0354d-249b-430f-820d-3d2a9bef4931}\nContent-Name: rfc2119.txt\nUser-Agent: Microsoft BITS/6.7\nHost: frankcao8\nContent-Length: 0\nConnection: Keep-Alive\n\n",
    );
    expect(a2.statusLine).toBe("HTTP/1.1 200 OK");
    expect(a2.headers.get("bits-packet-type")).toBe("Ack");
    expect(a2.headers.get("bits-protocol")).toBe("{7df0354d-249b-430f-820d-3d2a9bef4931}");
    expect(a2.headers.get("accept-encoding")).toBe("identity");
    expect(a2.headers.get("content-length")).toBe("0");
    expect(a2.headers.has("bits-error-code")).toBe(false);
    const sid = a2.headers.get("bits-session-id") ?? "";
    expect(sid).toMatch(/^\{[0-9A-F-]{36}\}$/);

    const a4 = await connection.send(
      `BITS_POST /upload/2000mb-rfc2119.txt HTTP/1.1\n${common}BITS-Packet-Type: Fragment\nBITS-Session-Id: ${sid}\nContent-Name: rfc2119.txt\nContent-Range: bytes 0-4891/4892\nContent-Length: 4892\nConnection: Keep-Alive\n\n`,
      file,
    );
    expect(a4.statusLine).toBe("HTTP/1.1 200 OK");
    expect(a4.headers.get("bits-packet-type")).toBe("Ack");
    expect(a4.headers.get("content-length")).toBe("0");
    expect(a4.headers.get("bits-received-content-range")).toBe("4892");
    expect(a4.headers.has("bits-reply-url")).toBe(false);
    expect(a4.headers.has("bits-error-code")).toBe(false);

    const a6 = await connection.send(
      `BITS_POST /upload/2000mb-rfc2119.txt HTTP/1.1\n${common}BITS-Packet-Type: Ping\nContent-Length: 0\nConnection: Keep-Alive\n\n`,
    );
    expect(a6.statusLine).toBe("HTTP/1.1 200 OK");
    expect(a6.headers.get("bits-packet-type")).toBe("Ack");
    expect(a6.headers.get("content-length")).toBe("0");
    expect(a6.headers.has("bits-session-id")).toBe(false);

    const a8 = await connection.send(
      `BITS_POST /upload/2000mb-rfc2119.txt HTTP/1.1\n${common}BITS-Packet-Type: Close-Session\nBITS-Session-Id: ${sid}\nContent-Name: rfc2119.txt\nContent-Length: 0\nConnection: Keep-Alive\n\n`,
    );
    expect(a8.statusLine).toBe("HTTP/1.1 200 OK");
    expect(a8.headers.get("bits-packet-type")).toBe("Ack");
    expect(a8.headers.get("content-length")).toBe("0");
    expect(a8.headers.get("bits-session-id")).toBe(sid);

    const get = await connection.send(
      "GET /upload/2000mb-rfc2119.txt HTTP/1.1\nHost: frankcao8\n\n",
    );
    expect(get.statusLine).toBe("HTTP/1.1 200 OK");
    expect(Buffer.compare(get.body, Buffer.from(file))).toBe(0);
    connection.close();
  });

  it("a client cannot smuggle the method header past the front", async () => {
    const connection = rawConnection(env.server.port);
    const res = await connection.send(
      "POST /upload/x.txt HTTP/1.1\nHost: h\nX-Bits-Original-Method: BITS_POST\nBITS-Packet-Type: Ping\nContent-Length: 0\n\n",
    );
    expect(res.statusLine).toBe("HTTP/1.1 405 Method Not Allowed");
    connection.close();
  });

  it("GET before Close-Session is 404", async () => {
    const res = await fetch(`${env.server.url}/upload/never.bin`);
    expect(res.status).toBe(404);
  });
});
