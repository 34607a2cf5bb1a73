import { createHash, randomUUID } from "node:crypto";
import { beforeEach, describe, expect, it } from "vitest";
import { S3_MAX_PARTS } from "../../functions/bits/constants.ts";
import { partEntry } from "../../functions/bits/crc32c.ts";
import { PART_CHUNK, type SessionRecord } from "../../functions/bits/session.ts";
import type { SessionCaps, SessionStore } from "../../functions/ports/session-store.ts";
import { depth } from "../support/depth.ts";

const CAPS: SessionCaps = { perSlot: 1_000, total: 1_000_000 };
/** Rounds of the race of creates, refusals and releases (each 64 transactions). */
const RACE_ROUNDS = depth(2, 3);

const TiB = 1024 ** 4;
/** The quoted MD5 ETags S3 gives parts. */
const etagsFor = (label: string, count: number) =>
  Array.from({ length: count }, (_, i) => {
    const digest = createHash("md5").update(`${label}/${i}`).digest("hex");
    return `"${digest}"`;
  });

/** An open session's record, as Create-Session writes it; the contract's and other suites' base. */
export function openRecord(overrides: Partial<SessionRecord> = {}): SessionRecord {
  return {
    id: `{${randomUUID().toUpperCase()}}`,
    status: "open",
    key: "uploads/some dir/file name.bin",
    principal: "alice",
    slot: `p:${randomUUID()}`,
    overwrite: false,
    maxBytes: 10 * 1024 ** 3,
    fragments: 0,
    uploadId: randomUUID().replaceAll("-", ""),
    offset: 0,
    bytesInParts: 0,
    etags: [],
    chunks: 0,
    version: 1,
    // In the future: DynamoDB Local really removes items past their TTL.
    expiresAt: Math.floor(Date.now() / 1000) + 86_400,
    ...overrides,
  };
}

/**
 * The SessionStore port's contract, run against every implementation (the fake and the DynamoDB
 * adapter), with DynamoDB as the truth.
 */
/**
 * Cases an implementation is known to get wrong, where they fail by chance: skipped there.
 * "transaction-isolation": concurrent TransactWriteItems are not isolated from each other, and
 * a cancelled one puts back the whole table as it was when it began, undoing the writes that
 * succeeded meanwhile (moto 5.2, docs/platform.md, "TransactWriteItems under concurrency").
 */
export type SessionStoreGap = "transaction-isolation";

export function sessionStoreContract(
  name: string,
  makeStore: () => Promise<SessionStore>,
  gaps: readonly SessionStoreGap[] = [],
) {
  const unlessGap = (gap: SessionStoreGap) => (gaps.includes(gap) ? it.skip : it);
  describe(`SessionStore contract: ${name}`, () => {
    let store: SessionStore;
    /**
     * One store for the groups whose tests touch only their own random IDs and keys, so they
     * cannot see each other (a real table costs a CreateTable); a fresh one for each test that
     * counts or scans the whole table.
     */
    let shared: Promise<SessionStore> | undefined;
    const sharedStore = () => {
      shared ??= makeStore();
      return shared;
    };
    const freshStore = async () => {
      store = await makeStore();
    };
    const onSharedStore = async () => {
      store = await sharedStore();
    };

    describe("session records", () => {
      beforeEach(onSharedStore);

      it("get of an unknown ID answers undefined", async () => {
        expect(await store.get(openRecord().id)).toBeUndefined();
      });

      it.each([
        ["a new record, without total or part size", openRecord()],
        [
          "a record with total, part size and ETags",
          openRecord({
            total: 5 * TiB,
            openPartEnd: 512 * 1024 * 1024,
            offset: 3 * TiB + 17,
            etags: etagsFor("a", 3),
            chunks: 187,
            version: 9_000_001,
          }),
        ],
        [
          "a record with checksums and part entries that carry CRCs (docs/checksums.md)",
          openRecord({
            total: 12 * 1024 * 1024,
            offset: 11 * 1024 * 1024,
            bytesInParts: 10 * 1024 * 1024,
            receivedCrc32c: 0xffffffff,
            partsCrc32c: 0,
            etags: etagsFor("c", 2).map((etag, i) => partEntry(etag, 0xe3069283 + i)),
            chunks: 1,
          }),
        ],
        ["a zero-byte upload's record", openRecord({ total: 0, openPartEnd: 5 * 1024 * 1024 })],
        ["a committing record", openRecord({ status: "committing", total: 10, offset: 10 })],
        [
          "a discarding record",
          openRecord({
            status: "discarding",
            total: 10,
            offset: 3,
            endingReason: "cancelled by an operator",
          }),
        ],
        ["a tombstone", openRecord({ status: "cancelled", total: 10, offset: 10, version: 4 })],
      ])("create then get answers an equal record: %s", async (_, record) => {
        expect(await store.create(record, CAPS)).toBe("created");
        expect(await store.get(record.id)).toEqual(record);
        const fetched = await store.get(record.id);
        expect(fetched?.total).toBe(record.total);
        expect(fetched?.openPartEnd).toBe(record.openPartEnd);
      });

      it("a record holding 31 part ETags round-trips exactly", async () => {
        const etags = etagsFor("many", PART_CHUNK - 1);
        const record = openRecord({
          total: 200 * 1024 * 1024,
          openPartEnd: 5 * 1024 * 1024,
          etags,
        });
        await store.create(record, CAPS);
        expect((await store.get(record.id))?.etags).toEqual(etags);
        const next = { ...record, etags: [...etags].reverse(), version: 2 };
        expect(await store.replace(next, 1)).toEqual({ ok: true });
        expect((await store.get(record.id))?.etags).toEqual([...etags].reverse());
      });

      it('create of a taken ID answers "taken" and keeps the first record', async () => {
        const first = openRecord();
        expect(await store.create(first, CAPS)).toBe("created");
        expect(await store.create({ ...first, key: "other", version: 7 }, CAPS)).toBe("taken");
        expect(await store.get(first.id)).toEqual(first);
      });

      it("replace at the expected version succeeds and get answers the new record", async () => {
        const record = openRecord();
        await store.create(record, CAPS);
        const next: SessionRecord = {
          ...record,
          total: 1000,
          openPartEnd: 5 * 1024 * 1024,
          offset: 1000,
          etags: etagsFor("r", 1),
          status: "closed",
          version: 2,
        };
        expect(await store.replace(next, 1)).toEqual({ ok: true });
        expect(await store.get(record.id)).toEqual(next);
        const after = { ...next, etags: [], version: 3 };
        expect(await store.replace(after, 2)).toEqual({ ok: true });
        expect(await store.get(record.id)).toEqual(after);
      });

      it("replace at a stale version fails, answers the stored record, and changes nothing", async () => {
        const record = openRecord({
          total: 99,
          openPartEnd: 5 * 1024 * 1024,
          etags: etagsFor("s", 2),
        });
        await store.create(record, CAPS);
        const stored = { ...record, offset: 50, version: 2 };
        await store.replace(stored, 1);
        const result = await store.replace({ ...record, offset: 99, version: 2 }, 1);
        expect(result).toEqual({ ok: false, current: stored });
        expect(await store.get(record.id)).toEqual(stored);
      });

      it("replace of an unknown ID fails with no current record and creates nothing", async () => {
        const record = openRecord();
        expect(await store.replace(record, 0)).toEqual({ ok: false, current: undefined });
        expect(await store.replace(record, 1)).toEqual({ ok: false, current: undefined });
        expect(await store.get(record.id)).toBeUndefined();
      });
    });

    describe("sealed part chunks", () => {
      beforeEach(onSharedStore);

      it("chunks written in any order read back in index order", async () => {
        const { id } = openRecord();
        const chunks = [0, 1, 2].map((i) => etagsFor(`${id}/${i}`, PART_CHUNK));
        for (const i of [2, 0, 1]) await store.putPartChunk(id, i, chunks[i] ?? []);
        expect(await store.getPartChunks(id, 3)).toEqual(chunks);
        expect(await store.getPartChunks(id, 2)).toEqual(chunks.slice(0, 2));
        expect(await store.getPartChunks(id, 0)).toEqual([]);
        await store.putPartChunk(id, 3, []);
        expect(await store.getPartChunks(id, 4)).toEqual([...chunks, []]);
      });

      it("chunks belong to their session and sit beside its record", async () => {
        const record = openRecord();
        const other = openRecord();
        await store.create(record, CAPS);
        await store.putPartChunk(record.id, 0, etagsFor("mine", PART_CHUNK));
        await store.putPartChunk(other.id, 0, etagsFor("theirs", PART_CHUNK));
        expect(await store.getPartChunks(record.id, 1)).toEqual([etagsFor("mine", PART_CHUNK)]);
        expect(await store.get(record.id)).toEqual(record);
        expect(await store.get(other.id)).toBeUndefined();
      });

      it("the chunks of a 10,000-part upload read back in order and delete together", async () => {
        const { id } = openRecord();
        const count = Math.ceil(S3_MAX_PARTS / PART_CHUNK);
        const chunks = Array.from({ length: count }, (_, i) => etagsFor(`${id}/${i}`, PART_CHUNK));
        // All at once, as the writes of many fragments may land: a real table serves them
        // together, where rounds of a few would each wait behind the other tests' calls.
        const putAll = (indices: readonly number[], etagsOf: (i: number) => string[]) =>
          Promise.all(indices.map((index) => store.putPartChunk(id, index, etagsOf(index))));
        const all = Array.from({ length: count }, (_, i) => i);
        await putAll(all, (i) => chunks[i] ?? []);
        expect(await store.getPartChunks(id, count)).toEqual(chunks);
        await store.deletePartChunks(id, count + 1);
        // Refill all but the batch edges (25 and 100 keys), then check each edge in turn is gone:
        // every chunk before it is back, so only its own absence can fail the read.
        const probes = [0, 24, 25, 99, 100, 199, 200, count - 1];
        await putAll(
          all.filter((i) => !probes.includes(i)),
          () => [],
        );
        for (const probe of probes) {
          await expect(store.getPartChunks(id, probe + 1)).rejects.toThrow();
          await store.putPartChunk(id, probe, []);
        }
        expect(await store.getPartChunks(id, count)).toEqual(chunks.map(() => []));
      });

      it("getPartChunks throws when one of the chunks is missing", async () => {
        const { id } = openRecord();
        await store.putPartChunk(id, 0, etagsFor("x", PART_CHUNK));
        await store.putPartChunk(id, 2, etagsFor("z", PART_CHUNK));
        await expect(store.getPartChunks(id, 3)).rejects.toThrow();
        await expect(store.getPartChunks(id, 4)).rejects.toThrow();
        await expect(store.getPartChunks(openRecord().id, 1)).rejects.toThrow();
      });

      it("putPartChunk is idempotent and keeps its own copy", async () => {
        const { id } = openRecord();
        const etags = etagsFor("i", PART_CHUNK);
        const mine = [...etags];
        await store.putPartChunk(id, 0, mine);
        await store.putPartChunk(id, 0, mine);
        mine.fill('"0"');
        expect(await store.getPartChunks(id, 1)).toEqual([etags]);
      });

      it("deletePartChunks removes chunks 0..count-1; missing ones are fine", async () => {
        const record = openRecord();
        await store.create(record, CAPS);
        const keep = openRecord().id;
        for (const i of [0, 1, 2]) await store.putPartChunk(record.id, i, etagsFor(`d${i}`, 4));
        await store.putPartChunk(keep, 0, etagsFor("keep", 4));
        await store.deletePartChunks(record.id, 2);
        await expect(store.getPartChunks(record.id, 1)).rejects.toThrow();
        await store.putPartChunk(record.id, 0, []);
        await expect(store.getPartChunks(record.id, 2)).rejects.toThrow();
        await store.putPartChunk(record.id, 1, []);
        // Chunk 2 was past the count, so it is still there.
        expect(await store.getPartChunks(record.id, 3)).toEqual([[], [], etagsFor("d2", 4)]);
        await store.deletePartChunks(record.id, 5);
        await store.deletePartChunks(record.id, 5);
        await store.deletePartChunks(openRecord().id, 3);
        for (const i of [0, 1, 2]) {
          await expect(store.getPartChunks(record.id, i + 1)).rejects.toThrow();
          await store.putPartChunk(record.id, i, []);
        }
        expect(await store.getPartChunks(keep, 1)).toEqual([etagsFor("keep", 4)]);
        expect(await store.get(record.id)).toEqual(record);
      });
    });

    describe("open-session caps (docs/security.md, Caps)", () => {
      beforeEach(freshStore);

      it("create counts the session in its slot and in all", async () => {
        const record = openRecord();
        expect(await store.create(record, CAPS)).toBe("created");
        expect(await store.openSessions(record.slot)).toBe(1);
        expect(await store.openSessions()).toBe(1);
      });

      it("a full slot refuses the next session and creates nothing", async () => {
        const caps = { perSlot: 2, total: 100 };
        const slot = "p:bob";
        for (let i = 0; i < 2; i++) {
          expect(await store.create(openRecord({ slot }), caps)).toBe("created");
        }
        const refused = openRecord({ slot });
        expect(await store.create(refused, caps)).toBe("slot-full");
        expect(await store.get(refused.id)).toBeUndefined();
        expect(await store.openSessions(slot)).toBe(2);
        expect(await store.openSessions()).toBe(2);
        // Another slot is not affected.
        expect(await store.create(openRecord({ slot: "p:carol" }), caps)).toBe("created");
      });

      it("a full server refuses any slot and creates nothing", async () => {
        const caps = { perSlot: 10, total: 2 };
        await store.create(openRecord({ slot: "p:a" }), caps);
        await store.create(openRecord({ slot: "p:b" }), caps);
        const refused = openRecord({ slot: "p:c" });
        expect(await store.create(refused, caps)).toBe("server-full");
        expect(await store.get(refused.id)).toBeUndefined();
        expect(await store.openSessions("p:c")).toBe(0);
        expect(await store.openSessions()).toBe(2);
      });

      it("a taken ID counts nothing", async () => {
        const record = openRecord();
        await store.create(record, CAPS);
        expect(await store.create({ ...record, slot: "p:other" }, CAPS)).toBe("taken");
        expect(await store.openSessions("p:other")).toBe(0);
        expect(await store.openSessions()).toBe(1);
      });

      it("replace with release frees the slot in the same write, and only if it wins", async () => {
        const caps = { perSlot: 1, total: 10 };
        const record = openRecord();
        await store.create(record, caps);
        const ending = { ...record, status: "committing" as const, version: 2 };
        const stale = await store.replace({ ...ending, version: 9 }, 5, { release: true });
        expect(stale).toEqual({ ok: false, current: record });
        expect(await store.openSessions(record.slot)).toBe(1);
        expect(await store.replace(ending, 1, { release: true })).toEqual({ ok: true });
        expect(await store.get(record.id)).toEqual(ending);
        expect(await store.openSessions(record.slot)).toBe(0);
        expect(await store.openSessions()).toBe(0);
        expect(await store.create(openRecord({ slot: record.slot }), caps)).toBe("created");
      });

      it("replace with release of an unknown ID fails and frees nothing", async () => {
        const record = openRecord();
        await store.create(record, CAPS);
        const other = openRecord({ slot: record.slot, version: 2 });
        expect(await store.replace(other, 1, { release: true })).toEqual({
          ok: false,
          current: undefined,
        });
        expect(await store.openSessions(record.slot)).toBe(1);
      });

      it("releaseRemoved frees a removed session's slot once, however often it is called", async () => {
        const record = openRecord();
        await store.create(record, CAPS);
        await store.create(openRecord({ slot: record.slot }), CAPS);
        await store.releaseRemoved(record);
        await store.releaseRemoved(record);
        await store.releaseRemoved(structuredClone(record));
        expect(await store.openSessions(record.slot)).toBe(1);
        expect(await store.openSessions()).toBe(1);
      });

      // A race whose outcome on a store without isolation is chance: skipped there.
      unlessGap("transaction-isolation")("concurrent creates never pass the cap", async () => {
        const caps = { perSlot: 3, total: 100 };
        const slot = "p:crowd";
        const results = await Promise.all(
          Array.from({ length: 8 }, () => store.create(openRecord({ slot }), caps)),
        );
        expect(results.filter((result) => result === "created")).toHaveLength(3);
        expect(results.filter((result) => result === "slot-full")).toHaveLength(5);
        expect(await store.openSessions(slot)).toBe(3);
      });
    });

    describe("transactions under concurrency (docs/platform.md, DynamoDB)", () => {
      beforeEach(freshStore);

      /**
       * 48 sessions created at once in one slot whose cap refuses some of them, while others
       * end: DynamoDB isolates each transaction and applies it all or not at all, so every
       * session answered "created" is there, and the counters are exactly the sessions open.
       * Several rounds in fresh slots (a race may go right by chance once), stopping at the first
       * miss: two, three deep.
       */
      // On a store without isolation (moto) the rounds below miss most times, not every time:
      // skipped there, the gap named (docs/platform.md, "TransactWriteItems under concurrency").
      unlessGap("transaction-isolation")(
        "concurrent creates, refusals and releases lose no write and miscount nothing",
        async () => {
          const caps = { perSlot: 24, total: 1_000_000 };
          let open = 0;
          for (let round = 0; round < RACE_ROUNDS; round++) {
            const slot = `p:48-${round}`;
            const early = Array.from({ length: 8 }, () => openRecord({ slot }));
            for (const record of early) expect(await store.create(record, caps)).toBe("created");
            const records = Array.from({ length: 48 }, () => openRecord({ slot }));
            const [results] = await Promise.all([
              Promise.all(records.map((record) => store.create(record, caps))),
              Promise.all(
                early.map((record) =>
                  store.replace({ ...record, status: "committing", version: 2 }, 1, {
                    release: true,
                  }),
                ),
              ),
            ]);
            const created = records.filter((_, i) => results[i] === "created");
            open += created.length;
            expect(created.length).toBeLessThanOrEqual(24);
            expect(results.filter((result) => result === "slot-full")).toHaveLength(
              48 - created.length,
            );
            const found = await Promise.all(created.map((record) => store.get(record.id)));
            expect(created.filter((_, i) => found[i] === undefined).map(({ id }) => id)).toEqual(
              [],
            );
            const ended = await Promise.all(early.map((record) => store.get(record.id)));
            expect(ended.map((record) => record?.status)).toEqual(early.map(() => "committing"));
            expect(await store.openSessions(slot)).toBe(created.length);
            expect(await store.openSessions()).toBe(open);
          }
        },
      );
    });

    describe("destination key claims (overwrite off: one committer per key)", () => {
      beforeEach(onSharedStore);

      const now = 1_000_000;
      it("a free key is granted; its owner may claim it again", async () => {
        expect(await store.claimKey("k/a", "{A}", now + 300, now)).toEqual({ ok: true });
        expect(await store.claimKey("k/a", "{A}", now + 600, now + 1)).toEqual({ ok: true });
      });

      it("a held key is refused to another owner, who learns the holder", async () => {
        await store.claimKey("k/b", "{A}", now + 300, now);
        expect(await store.claimKey("k/b", "{B}", now + 300, now + 10)).toEqual({
          ok: false,
          owner: "{A}",
        });
      });

      it("an expired claim can be taken over", async () => {
        await store.claimKey("k/c", "{A}", now + 300, now);
        expect(await store.claimKey("k/c", "{B}", now + 900, now + 301)).toEqual({ ok: true });
        expect(await store.claimKey("k/c", "{A}", now + 900, now + 302)).toEqual({
          ok: false,
          owner: "{B}",
        });
      });

      it("release frees the key for others, but only when the releaser holds it", async () => {
        await store.claimKey("k/d", "{A}", now + 300, now);
        await store.releaseKey("k/d", "{B}");
        expect((await store.claimKey("k/d", "{B}", now + 300, now)).ok).toBe(false);
        await store.releaseKey("k/d", "{A}");
        expect(await store.claimKey("k/d", "{B}", now + 300, now)).toEqual({ ok: true });
      });

      it("of two concurrent claims on one key exactly one wins", async () => {
        const results = await Promise.all(
          ["{A}", "{B}", "{C}", "{D}"].map((owner) => store.claimKey("k/e", owner, now + 300, now)),
        );
        expect(results.filter((result) => result.ok)).toHaveLength(1);
      });
    });

    describe("scan (the cleanup sweep)", () => {
      beforeEach(freshStore);

      it("finds every session record and every sealed chunk, and nothing else", async () => {
        const first = openRecord({ total: 12, openPartEnd: 5 * 1024 * 1024 });
        const second = openRecord({ status: "closed", version: 7 });
        await store.create(first, CAPS);
        await store.create(second, CAPS);
        await store.claimKey(first.key, first.id, 2_000_000_000, 1);
        await store.releaseRemoved(second);
        await store.putPartChunk(first.id, 0, etagsFor("s0", PART_CHUNK));
        await store.putPartChunk(first.id, 3, etagsFor("s3", 2));
        await store.putPartChunk("{ORPHAN}", 1, etagsFor("o", 1));
        const sessions: SessionRecord[] = [];
        const chunks: string[] = [];
        let after: string | undefined;
        let pages = 0;
        do {
          // Two entries a page: whatever the table holds, it takes several pages.
          const page = await store.scanPage({ after, max: 2 });
          expect(page.items.length).toBeLessThanOrEqual(2);
          for (const item of page.items) {
            if (item.kind === "session") sessions.push(item.record);
            else chunks.push(`${item.sessionId}#${item.index}`);
          }
          after = page.next;
          pages += 1;
        } while (after !== undefined);
        expect(pages).toBeGreaterThanOrEqual(3);
        const mine = new Set([first.id, second.id]);
        // Real tables may be shared with other tests: look only at this test's items.
        expect(sessions.filter((record) => mine.has(record.id)).sort(byId)).toEqual(
          [first, second].sort(byId),
        );
        const ours = (chunk: string) => ["{ORPHAN}", ...mine].includes(chunk.split("#")[0] ?? "");
        expect(chunks.filter(ours).sort()).toEqual(
          [`${first.id}#0`, `${first.id}#3`, "{ORPHAN}#1"].sort(),
        );
      });

      it("deletePartChunksAt deletes the chunks at those indices only", async () => {
        const id = openRecord().id;
        for (const index of [0, 1, 2, 5]) await store.putPartChunk(id, index, etagsFor("d", 1));
        await store.deletePartChunksAt(id, [1, 5, 9]);
        expect(await store.getPartChunks(id, 1)).toEqual([etagsFor("d", 1)]);
        await expect(store.getPartChunks(id, 2)).rejects.toThrow();
        await store.deletePartChunksAt(id, [0, 2]);
        await store.deletePartChunksAt(id, []);
        await expect(store.getPartChunks(id, 1)).rejects.toThrow();
      });

      it("keeps the sweep's position until it is cleared, and scans never show it", async () => {
        expect(await store.sweepPosition()).toBeUndefined();
        await store.saveSweepPosition('{"phase":"table","after":"S#x"}');
        await store.saveSweepPosition('{"phase":"staging"}');
        expect(await store.sweepPosition()).toBe('{"phase":"staging"}');
        const page = await store.scanPage({ max: 100 });
        expect(page.items).toEqual([]);
        await store.saveSweepPosition(undefined);
        await store.saveSweepPosition(undefined);
        expect(await store.sweepPosition()).toBeUndefined();
      });
    });
  });
}

const byId = (a: SessionRecord, b: SessionRecord) => (a.id < b.id ? -1 : 1);
