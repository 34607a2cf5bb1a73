import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { BITS_PROTOCOL_GUID } from "../../functions/bits/constants.ts";
import { createSessionTable } from "../../infra/stand-ins.ts";
import { sdkCrc32c, sha256 } from "../support/checks.ts";
import { awaitEvents, type Started, start, stop } from "../support/npm-start.ts";
import { standInClients } from "../support/storage.ts";
import { download, httpTransport, packet, type Transport } from "../support/transports.ts";
import { bitsUpload, randomBytes } from "../support/windows-client.ts";

async function openSession(transport: Transport, path: string): Promise<string> {
  const created = await packet(transport, path, {
    "BITS-Packet-Type": "Create-Session",
    "BITS-Supported-Protocols": BITS_PROTOCOL_GUID,
  });
  const id = created.headers.get("bits-session-id");
  if (!id) throw new Error(`no session: ${created.status}`);
  return id;
}

// Concurrent: the session left to expire waits out its timeout while the other two run.
describe.concurrent("npm start prints one JSON line per ending session (docs/events.md)", () => {
  let server: Started;
  let transport: Transport & { close(): void };

  beforeAll(async () => {
    // Sessions time out after 8 s and the sweep runs every second, so expiry shows within the
    // test; 8 s is far above any pause between the other tests' requests, even on a busy machine.
    // npm start's default: stand-ins of its own with the default bucket, which the events name.
    server = await start(
      { BITS_SESSION_TIMEOUT: "8", BITS_SWEEP_INTERVAL: "1" },
      { ownStandIns: true },
    );
    transport = httpTransport(server.url);
  }, 90_000);

  afterAll(async () => {
    transport?.close();
    await stop(server);
  });

  it("a completed upload: Upload Completed with the object's size, checksum and the client", async ({
    expect,
  }) => {
    const data = randomBytes(2 * 1024 * 1024 + 5, 7);
    const outcome = await bitsUpload(transport, "/events/done.bin", data, {
      initialFragment: 64 * 1024,
      maxFragment: 512 * 1024,
    });
    expect(sha256(await download(`${server.url}/events/done.bin`))).toBe(sha256(data));
    const [event, ...more] = await awaitEvents(server, "events/done.bin");
    expect(more).toEqual([]);
    expect(event).toMatchObject({
      "detail-type": "Upload Completed",
      source: "bits.upload",
      resources: ["arn:aws:s3:::bits-uploads/events/done.bin"],
      detail: {
        version: 1,
        outcome: "completed",
        eventId: outcome.sessionIds[0],
        sessionId: outcome.sessionIds[0],
        bucket: "bits-uploads",
        key: "events/done.bin",
        stored: true,
        size: data.length,
        principal: "anonymous",
        clientAddress: "127.0.0.1",
        bytesHeld: data.length,
        checksum: { algorithm: "CRC32C", value: await sdkCrc32c(data) },
      },
    });
    const detail = event?.detail ?? {};
    expect(detail.bytesReceived).toBeGreaterThanOrEqual(data.length);
    expect(detail.fragments).toBeGreaterThan(1);
    expect(Date.parse(String(detail.startedAt))).toBeLessThanOrEqual(
      Date.parse(String(detail.endedAt)),
    );
  });

  it("a cancelled session: Upload Cancelled, and nothing stored", async ({ expect }) => {
    const id = await openSession(transport, "/events/cancelled.bin");
    const cancel = await packet(transport, "/events/cancelled.bin", {
      "BITS-Packet-Type": "Cancel-Session",
      "BITS-Session-Id": id,
    });
    expect(cancel.status).toBe(200);
    const events = await awaitEvents(server, "events/cancelled.bin");
    expect(events.map((event) => [event["detail-type"], event.detail.eventId])).toEqual([
      ["Upload Cancelled", id],
    ]);
    expect(events[0]?.detail).toMatchObject({ stored: false, reason: "cancelled by the client" });
  });

  it("a session nobody closes: Upload Expired once it times out", async ({ expect }) => {
    const id = await openSession(transport, "/events/idle.bin");
    const body = randomBytes(1000, 8);
    const sent = await packet(
      transport,
      "/events/idle.bin",
      {
        "BITS-Packet-Type": "Fragment",
        "BITS-Session-Id": id,
        "Content-Range": "bytes 0-999/5000",
      },
      body,
    );
    expect(sent.status).toBe(200);
    const events = await awaitEvents(server, "events/idle.bin");
    expect(events.map((event) => [event["detail-type"], event.detail.eventId])).toEqual([
      ["Upload Expired", id],
    ]);
    expect(events[0]?.detail).toMatchObject({ size: 5000, bytesHeld: 1000, stored: false });
  });
});

describe("npm start against a table it did not create, whose stream is off", () => {
  let server: Started;
  let transport: Transport & { close(): void };
  const name = `nostream-${Date.now()}`;

  beforeAll(async () => {
    // Its own S3 stand-in, the test's DynamoDB Local with a table made without a stream.
    await createSessionTable(standInClients().dynamodb, name, { stream: false });
    server = await start({
      BITS_DYNAMODB_ENDPOINT: inject("dynamodbEndpoint"),
      BITS_BUCKET: name,
      BITS_TABLE: name,
    });
    transport = httpTransport(server.url);
  }, 90_000);

  afterAll(async () => {
    transport?.close();
    await stop(server);
  });

  it("still serves uploads, and says once that there will be no events", async () => {
    const data = randomBytes(300_000, 9);
    await bitsUpload(transport, "/plain.bin", data);
    expect(sha256(await download(`${server.url}/plain.bin`))).toBe(sha256(data));
    const warnings = server.lines.filter((line) => line.includes("no completion events"));
    expect(warnings).toHaveLength(1);
    expect(server.lines.some((line) => line.startsWith('{"detail-type"'))).toBe(false);
  });
});
