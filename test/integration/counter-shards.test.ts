import { randomUUID } from "node:crypto";
import { GetItemCommand } from "@aws-sdk/client-dynamodb";
import { describe, expect, it } from "vitest";
import { DynamoDbSessionStore } from "../../functions/adapters/dynamodb/dynamodb-session-store.ts";
import { allCounterKey, counterShard } from "../../functions/adapters/dynamodb/session-item.ts";
import type { SessionRecord } from "../../functions/bits/session.ts";
import { openRecord as contractRecord } from "../contract/session-store.contract.ts";
import { depth } from "../support/depth.ts";
import { freshStorage, standInClients } from "../support/storage.ts";

const SHARDS = 4;
/** Sessions created at once, all in one slot and spread over the shards (deep: 40). */
const CONCURRENT = depth(16, 40);

/** A fleet machine's open session in `slot`. */
function openRecord(slot = `p:${randomUUID()}`): SessionRecord {
  return contractRecord({
    key: "uploads/fleet/file.bin",
    principal: "fleet",
    slot,
    maxBytes: 1024 ** 3,
  });
}

async function sharded() {
  const { table } = await freshStorage();
  const { dynamodb } = standInClients();
  const store = new DynamoDbSessionStore(dynamodb, table, { counterShards: SHARDS });
  /** What each shard item of the count of all holds. */
  const shardCounts = async () =>
    Promise.all(
      Array.from({ length: SHARDS }, async (_, i) => {
        const out = await dynamodb.send(
          new GetItemCommand({ TableName: table, Key: { pk: { S: allCounterKey(i) } } }),
        );
        return Number(out.Item?.n?.N ?? 0);
      }),
    );
  return { store, shardCounts };
}

/** The count of all spread over shards (docs/capacity.md, "Counters"). */
describe("DynamoDbSessionStore with the count of all in shards", () => {
  it("concurrent creates and releases keep the sum exact, each in its session's shard", async () => {
    const { store, shardCounts } = await sharded();
    const caps = { perSlot: 1_000, total: 1_000 };
    const slot = "p:fleet";
    const records = Array.from({ length: CONCURRENT }, () => openRecord(slot));
    const created = await Promise.all(records.map((record) => store.create(record, caps)));
    expect(created.every((result) => result === "created")).toBe(true);
    expect(await store.openSessions()).toBe(CONCURRENT);
    expect(await store.openSessions(slot)).toBe(CONCURRENT);
    const expected = Array.from<number>({ length: SHARDS }).fill(0);
    for (const record of records) {
      const shard = counterShard(record.id, SHARDS);
      expected[shard] = (expected[shard] ?? 0) + 1;
    }
    expect(await shardCounts()).toEqual(expected);
    expect(expected.filter((n) => n > 0).length).toBeGreaterThan(1);

    // Half end through replace-with-release, the rest are removed and released twice each.
    const ended = await Promise.all(
      records
        .slice(0, CONCURRENT / 2)
        .map((record) =>
          store.replace({ ...record, status: "closed", version: 2 }, 1, { release: true }),
        ),
    );
    expect(ended.every((result) => result.ok)).toBe(true);
    const removed = records.slice(CONCURRENT / 2);
    await Promise.all([...removed, ...removed].map((record) => store.releaseRemoved(record)));
    expect(await store.openSessions()).toBe(0);
    expect(await store.openSessions(slot)).toBe(0);
    expect(await shardCounts()).toEqual(Array.from({ length: SHARDS }).fill(0));
  });

  it("each shard is capped at its share of the total; the per-slot cap stays exact", async () => {
    const { store, shardCounts } = await sharded();
    const caps = { perSlot: 5, total: 8 };
    const results: string[] = [];
    for (let i = 0; i < 30; i++) results.push(await store.create(openRecord(), caps));
    const created = results.filter((result) => result === "created").length;
    expect(created).toBeLessThanOrEqual(8);
    expect(results.filter((result) => result === "server-full").length).toBe(30 - created);
    expect(await store.openSessions()).toBe(created);
    for (const n of await shardCounts()) expect(n).toBeLessThanOrEqual(2);

    const slot = "p:one";
    const wide = { perSlot: 3, total: 1_000 };
    const slotResults = await Promise.all(
      Array.from({ length: 10 }, () => store.create(openRecord(slot), wide)),
    );
    expect(slotResults.filter((result) => result === "created")).toHaveLength(3);
    expect(await store.openSessions(slot)).toBe(3);
  });
});
