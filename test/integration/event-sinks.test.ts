import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { EventBridgeClient } from "@aws-sdk/client-eventbridge";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  EventBridgeSink,
  EventsNotAcceptedError,
} from "../../functions/adapters/events/eventbridge-sink.ts";
import { JsonLinesSink } from "../../functions/adapters/events/json-lines-sink.ts";
import type { SessionRecord } from "../../functions/bits/session.ts";
import { type UploadEvent, uploadEvent } from "../../functions/bits/upload-event.ts";
import { STAND_IN_CREDENTIALS, STAND_IN_REGION } from "../../infra/stand-ins.ts";
import {
  type EventBridgeStandIn,
  startEventBridgeStandIn,
} from "../support/eventbridge-stand-in.ts";

const RECORD: SessionRecord = {
  id: "{00000000-0000-4000-8000-000000000000}",
  status: "closed",
  key: "reports/a.bin",
  principal: "alice",
  slot: "p:alice",
  overwrite: false,
  maxBytes: 1000,
  fragments: 2,
  uploadId: "u",
  total: 10,
  bytesInParts: 10,
  offset: 10,
  etags: [],
  chunks: 0,
  version: 5,
  expiresAt: 1,
  createdAt: Date.UTC(2026, 10, 29, 12),
  client: "203.0.113.9",
  bytesReceived: 12,
  outcome: { kind: "completed", at: Date.UTC(2026, 10, 29, 12, 5), crc32c: "AAAAAA==" },
};

const events = (count: number): UploadEvent[] =>
  Array.from({ length: count }, (_, i) =>
    uploadEvent({ ...RECORD, id: `{00000000-0000-4000-8000-${String(i).padStart(12, "0")}}` }, "b"),
  );

describe("EventBridgeSink against a PutEvents stand-in, through the real SDK client", () => {
  let standIn: EventBridgeStandIn;
  let sink: EventBridgeSink;

  beforeAll(async () => {
    standIn = await startEventBridgeStandIn();
    const client = new EventBridgeClient({
      endpoint: standIn.endpoint,
      region: STAND_IN_REGION,
      credentials: STAND_IN_CREDENTIALS,
    });
    sink = new EventBridgeSink(client, "uploads-bus", "bits.upload", async () => {});
  });
  afterAll(() => standIn.close());

  it("puts each event as an entry rules can match, at most 10 per call", async () => {
    const before = standIn.calls.length;
    await sink.publish(events(23));
    expect(standIn.calls.slice(before).map((call) => call.length)).toEqual([10, 10, 3]);
    const entry = standIn.accepted.at(-23);
    expect(entry).toMatchObject({
      EventBusName: "uploads-bus",
      Source: "bits.upload",
      DetailType: "Upload Completed",
      Resources: ["arn:aws:s3:::b/reports/a.bin"],
    });
    expect(entry?.Time).toBe(Date.UTC(2026, 10, 29, 12, 5) / 1000);
    expect(JSON.parse(entry?.Detail ?? "{}")).toMatchObject({
      eventId: "{00000000-0000-4000-8000-000000000000}",
      principal: "alice",
      clientAddress: "203.0.113.9",
      checksum: { algorithm: "CRC32C", value: "AAAAAA==", verifiedBy: "server" },
    });
  });

  it("entries EventBridge refuses are sent again, and only those", async () => {
    const before = standIn.calls.length;
    const accepted = standIn.accepted.length;
    standIn.refuseNext(2);
    await sink.publish(events(4));
    expect(standIn.calls.slice(before).map((call) => call.length)).toEqual([4, 2]);
    expect(standIn.accepted.length - accepted).toBe(4);
  });

  it("refused again and again, the publish fails, so the stream delivers the batch again", async () => {
    standIn.refuseNext(100, "InternalFailure");
    await expect(sink.publish(events(1))).rejects.toThrow(EventsNotAcceptedError);
    standIn.refuseNext(0);
  });
});

describe("JsonLinesSink", () => {
  it("appends one line per event to a file, shaped like what a rule's target receives", async () => {
    const dir = mkdtempSync(join(tmpdir(), "bits-events-"));
    try {
      const path = join(dir, "events.jsonl");
      const sink = JsonLinesSink.file("bits.upload", path);
      await sink.publish(events(2));
      await sink.publish(events(1));
      const lines = readFileSync(path, "utf8").trimEnd().split("\n");
      expect(lines).toHaveLength(3);
      expect(JSON.parse(lines[0] ?? "")).toEqual({
        "detail-type": "Upload Completed",
        source: "bits.upload",
        time: "2026-11-29T12:05:00.000Z",
        resources: ["arn:aws:s3:::b/reports/a.bin"],
        detail: events(1)[0]?.detail,
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
