import { describe, expect, it } from "vitest";
import type { SessionRecord } from "../../../functions/bits/session.ts";
import { endedBy, removedUnended, uploadEvent } from "../../../functions/bits/upload-event.ts";

const OPEN: SessionRecord = {
  id: "{11111111-2222-4333-8444-555555555555}",
  status: "open",
  key: "in/a.bin",
  principal: "alice",
  slot: "p:alice",
  overwrite: false,
  maxBytes: 100,
  fragments: 3,
  uploadId: "u",
  total: 10,
  bytesInParts: 0,
  offset: 4,
  etags: [],
  chunks: 0,
  version: 3,
  expiresAt: 100,
  createdAt: 1_000,
  client: "192.0.2.1",
  bytesReceived: 6,
};
const closed: SessionRecord = {
  ...OPEN,
  status: "closed",
  offset: 10,
  version: 5,
  outcome: { kind: "completed", at: 2_000, versionId: "v1", crc32c: "q83vEg==", verifiedBy: "s3" },
};

describe("which change ends a session (docs/events.md)", () => {
  it("the write that gives the record its outcome, and no later write of the tombstone", () => {
    expect(endedBy({ before: { ...OPEN, status: "committing" }, after: closed })).toBe(closed);
    expect(endedBy({ before: closed, after: { ...closed, version: 6 } })).toBeUndefined();
    expect(endedBy({ before: OPEN, after: { ...OPEN, version: 4 } })).toBeUndefined();
    expect(endedBy({ before: closed, after: undefined })).toBeUndefined();
  });

  it("a removal ends a session only if nothing ended it before", () => {
    expect(removedUnended({ before: OPEN })).toBe(OPEN);
    expect(removedUnended({ before: { ...OPEN, status: "committing" } })).toBeDefined();
    expect(removedUnended({ before: closed })).toBeUndefined();
    expect(removedUnended({ before: { ...OPEN, status: "cancelled" } })).toBeUndefined();
    expect(removedUnended({ before: OPEN, after: OPEN })).toBeUndefined();
  });
});

describe("uploadEvent", () => {
  it("says what was stored, by whom, from where, and how it ended", () => {
    expect(uploadEvent(closed, "bkt")).toEqual({
      detailType: "Upload Completed",
      time: 2_000,
      resource: "arn:aws:s3:::bkt/in/a.bin",
      detail: {
        version: 1,
        eventId: OPEN.id,
        outcome: "completed",
        sessionId: OPEN.id,
        bucket: "bkt",
        key: "in/a.bin",
        stored: true,
        versionId: "v1",
        size: 10,
        checksum: { algorithm: "CRC32C", value: "q83vEg==", verifiedBy: "s3" },
        principal: "alice",
        clientAddress: "192.0.2.1",
        startedAt: "1970-01-01T00:00:01.000Z",
        endedAt: "1970-01-01T00:00:02.000Z",
        fragments: 3,
        bytesReceived: 6,
        bytesHeld: 10,
      },
    });
  });

  it("an upload-reply session stores an object only if its reply asked for a copy", () => {
    const notify = { type: "value", target: "https://app", originalUrl: "u", token: "t" } as const;
    const kept = { ...closed, notify, reply: { url: "r", copied: true } };
    const handed = { ...closed, notify, reply: { url: "r", copied: false } };
    expect(uploadEvent(kept, "b").detail).toMatchObject({
      stored: true,
      uploadReply: { copied: true },
    });
    expect(uploadEvent(handed, "b").detail).toMatchObject({
      stored: false,
      uploadReply: { copied: false },
    });
    expect(uploadEvent(handed, "b").detail.versionId).toBeUndefined();
  });

  it("a session that never got a fragment has no size; an unended one has no event", () => {
    const { total: _, ...empty } = OPEN;
    const expired = { ...empty, outcome: { kind: "expired" as const, at: 5, reason: "timeout" } };
    expect(uploadEvent(expired, "b")).toMatchObject({
      detailType: "Upload Expired",
      detail: { size: null, stored: false, reason: "timeout" },
    });
    expect(() => uploadEvent(OPEN, "b")).toThrow();
  });
});
