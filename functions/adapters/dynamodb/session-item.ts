import type { AttributeValue } from "@aws-sdk/client-dynamodb";
import type { SessionRecord, SessionStatus } from "../../bits/session.ts";

type Item = Record<string, AttributeValue>;

/** Partition key of a session's record, and of its sealed part chunks. */
export const sessionKey = (id: string) => `S#${id}`;
export const chunkKey = (id: string, index: number) => `P#${id}#${index}`;

export function parseChunkKey(pk: string): { sessionId: string; index: number } | undefined {
  const match = /^P#(.+)#(\d+)$/.exec(pk);
  return match?.[1] && match[2] ? { sessionId: match[1], index: Number(match[2]) } : undefined;
}

const n = (value: number): AttributeValue => ({ N: String(value) });
const s = (value: string): AttributeValue => ({ S: value });

/** ETags travel as one comma-joined string: compact, and an empty list is just "". */
export const joinEtags = (etags: readonly string[]) => etags.join(",");
export const splitEtags = (value: string | undefined) =>
  value === undefined || value === "" ? [] : value.split(",");

/**
 * Maps a record to a DynamoDB item. `exp` is the TTL attribute (epoch seconds), so DynamoDB
 * removes ended and abandoned sessions by itself; the stream of those removals drives cleanup.
 */
export function toItem(record: SessionRecord): Item {
  const item: Item = {
    pk: s(sessionKey(record.id)),
    id: s(record.id),
    st: s(record.status),
    key: s(record.key),
    uid: s(record.uploadId),
    off: n(record.offset),
    etags: s(joinEtags(record.etags)),
    ch: n(record.chunks),
    pe: n(record.partsEnd),
    ver: n(record.version),
    exp: n(record.expiresAt),
  };
  if (record.total !== undefined) item.tot = n(record.total);
  if (record.nextPartEnd !== undefined) item.npe = n(record.nextPartEnd);
  return item;
}

function num(item: Item, name: string): number | undefined {
  const value = item[name]?.N;
  return value === undefined ? undefined : Number(value);
}

function str(item: Item, name: string): string {
  const value = item[name]?.S;
  if (value === undefined) throw new Error(`session item without ${name}`);
  return value;
}

export function fromItem(item: Item): SessionRecord {
  return {
    id: str(item, "id"),
    status: str(item, "st") as SessionStatus,
    key: str(item, "key"),
    uploadId: str(item, "uid"),
    total: num(item, "tot"),
    partsEnd: num(item, "pe") ?? 0,
    nextPartEnd: num(item, "npe"),
    offset: num(item, "off") ?? 0,
    etags: splitEtags(item.etags?.S),
    chunks: num(item, "ch") ?? 0,
    version: num(item, "ver") ?? 0,
    expiresAt: num(item, "exp") ?? 0,
  };
}
