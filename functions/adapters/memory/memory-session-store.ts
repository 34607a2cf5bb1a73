import type { SessionRecord } from "../../bits/session.ts";
import type { ReplaceResult, SessionStore, StoredItem } from "../../ports/session-store.ts";

/** An in-memory SessionStore with the same conditional semantics as the DynamoDB one. */
export class MemorySessionStore implements SessionStore {
  readonly records = new Map<string, SessionRecord>();
  readonly chunks = new Map<string, string[]>();

  async get(id: string) {
    const record = this.records.get(id);
    return record && structuredClone(record);
  }

  async create(record: SessionRecord) {
    if (this.records.has(record.id)) return false;
    this.records.set(record.id, structuredClone(record));
    return true;
  }

  async replace(record: SessionRecord, expectedVersion: number): Promise<ReplaceResult> {
    const current = this.records.get(record.id);
    if (current?.version !== expectedVersion) {
      return { ok: false, current: current && structuredClone(current) };
    }
    this.records.set(record.id, structuredClone(record));
    return { ok: true };
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

  async *scan(): AsyncIterable<StoredItem> {
    for (const record of this.records.values()) {
      yield { kind: "session", record: structuredClone(record) };
    }
    for (const key of this.chunks.keys()) {
      const hash = key.lastIndexOf("#");
      yield { kind: "chunk", sessionId: key.slice(0, hash), index: Number(key.slice(hash + 1)) };
    }
  }
}
