import type { SessionRecord } from "../../bits/session.ts";
import type {
  ClaimResult,
  CreateResult,
  ReplaceResult,
  ScanPage,
  SessionCaps,
  SessionStore,
  StoredItem,
} from "../../ports/session-store.ts";

/** An in-memory SessionStore with the same conditional semantics as the DynamoDB one. */
export class MemorySessionStore implements SessionStore {
  readonly records = new Map<string, SessionRecord>();
  readonly chunks = new Map<string, string[]>();
  /** Open sessions per slot, and in all. */
  readonly counters = new Map<string, number>();
  private total = 0;
  readonly claims = new Map<string, { owner: string; expiresAt: number }>();
  private readonly released = new Set<string>();
  private position: string | undefined;

  async get(id: string) {
    const record = this.records.get(id);
    return record && structuredClone(record);
  }

  async create(record: SessionRecord, caps: SessionCaps): Promise<CreateResult> {
    if (this.records.has(record.id)) return "taken";
    if (this.count(record.slot) >= caps.perSlot) return "slot-full";
    if (this.total >= caps.total) return "server-full";
    this.records.set(record.id, structuredClone(record));
    this.add(record.slot, 1);
    return "created";
  }

  async replace(
    record: SessionRecord,
    expectedVersion: number,
    options: { readonly release?: boolean } = {},
  ): Promise<ReplaceResult> {
    const current = this.records.get(record.id);
    if (current?.version !== expectedVersion) {
      return { ok: false, current: current && structuredClone(current) };
    }
    this.records.set(record.id, structuredClone(record));
    if (options.release) this.add(record.slot, -1);
    return { ok: true };
  }

  async releaseRemoved(record: SessionRecord) {
    if (this.released.has(record.id)) return;
    this.released.add(record.id);
    this.add(record.slot, -1);
  }

  async openSessions(slot?: string) {
    return slot === undefined ? this.total : this.count(slot);
  }

  async claimKey(key: string, owner: string, expiresAt: number, now: number): Promise<ClaimResult> {
    const held = this.claims.get(key);
    if (held !== undefined && held.owner !== owner && held.expiresAt >= now) {
      return { ok: false, owner: held.owner };
    }
    this.claims.set(key, { owner, expiresAt });
    return { ok: true };
  }

  async releaseKey(key: string, owner: string) {
    if (this.claims.get(key)?.owner === owner) this.claims.delete(key);
  }

  async putPartChunk(id: string, index: number, etags: readonly string[]) {
    this.chunks.set(`${id}#${index}`, [...etags]);
  }

  async getPartChunks(id: string, count: number) {
    return Array.from({ length: count }, (_, i) => {
      const chunk = this.chunks.get(`${id}#${i}`);
      if (chunk === undefined) throw new Error(`part chunk ${i} of ${id} is missing`);
      return [...chunk];
    });
  }

  async deletePartChunks(id: string, count: number) {
    for (let i = 0; i < count; i++) this.chunks.delete(`${id}#${i}`);
  }

  async deletePartChunksAt(id: string, indices: readonly number[]) {
    for (const i of indices) this.chunks.delete(`${id}#${i}`);
  }

  /** Pages in the order of the keys the DynamoDB table would give the items. */
  async scanPage({
    after,
    max = 100,
  }: {
    after?: string | undefined;
    max?: number | undefined;
  } = {}): Promise<ScanPage> {
    const keys = [
      ...[...this.records.keys()].map((id) => `S#${id}`),
      ...[...this.chunks.keys()].map((key) => `P#${key}`),
    ]
      .filter((key) => after === undefined || key > after)
      .sort();
    const page = keys.slice(0, Math.max(1, max));
    const items = page.flatMap((key): StoredItem[] => {
      if (key.startsWith("P#")) {
        const hash = key.lastIndexOf("#");
        return [
          { kind: "chunk", sessionId: key.slice(2, hash), index: Number(key.slice(hash + 1)) },
        ];
      }
      const record = this.records.get(key.slice(2));
      return record === undefined ? [] : [{ kind: "session", record: structuredClone(record) }];
    });
    return { items, next: keys.length > page.length ? page.at(-1) : undefined };
  }

  async sweepPosition() {
    return this.position;
  }

  async saveSweepPosition(position: string | undefined) {
    this.position = position;
  }

  private count(slot: string) {
    return this.counters.get(slot) ?? 0;
  }

  private add(slot: string, delta: number) {
    this.counters.set(slot, this.count(slot) + delta);
    this.total += delta;
  }
}
