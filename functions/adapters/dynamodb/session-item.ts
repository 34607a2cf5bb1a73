import type { AttributeValue } from "@aws-sdk/client-dynamodb";
import type {
  PartBuilder,
  SessionOutcome,
  SessionRecord,
  SessionStatus,
} from "../../bits/session.ts";

type Item = Record<string, AttributeValue>;

/** Partition key of a session's record, and of its sealed part chunks. */
export const sessionKey = (id: string) => `S#${id}`;
export const chunkKey = (id: string, index: number) => `P#${id}#${index}`;
/**
 * Counters of open sessions: one per slot, and the count of all spread over shards
 * (docs/capacity.md, "Counters"). Shard 0 keeps the name of the single counter it replaced.
 */
export const slotKey = (slot: string) => `N#${slot}`;
export const allCounterKey = (shard: number) => (shard === 0 ? "N" : `N*${shard}`);

/** The shard of the count of all that a session is counted in: a hash of its ID (FNV-1a). */
export function counterShard(id: string, shards: number): number {
  if (shards <= 1) return 0;
  let hash = 0x811c9dc5;
  for (let i = 0; i < id.length; i++) {
    hash ^= id.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return (hash >>> 0) % shards;
}
/** A destination key claimed by the session completing it. */
export const claimKey = (key: string) => `K#${key}`;
/** Marks a removed session whose slot was released. */
export const releasedKey = (id: string) => `X#${id}`;
/**
 * Where an unfinished cleanup sweep stopped (docs/cleanup.md). Not a session (`S#`): the
 * stream's filter and its consumer pass over its writes.
 */
export const SWEEP_POSITION = "C#sweep";

export function parseChunkKey(pk: string): { sessionId: string; index: number } | undefined {
  const match = /^P#(.+)#(\d+)$/.exec(pk);
  return match?.[1] && match[2] ? { sessionId: match[1], index: Number(match[2]) } : undefined;
}

const n = (value: number): AttributeValue => ({ N: String(value) });
const s = (value: string): AttributeValue => ({ S: value });

/**
 * Part entries (ETag and CRC, crc32c.ts `partEntry`) travel as one comma-joined string: compact,
 * and an empty list is just "".
 */
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
    who: s(record.principal),
    slot: s(record.slot),
    ow: { BOOL: record.overwrite },
    fr: n(record.fragments),
    uid: s(record.uploadId),
    off: n(record.offset),
    etags: s(joinEtags(record.etags)),
    ch: n(record.chunks),
    pe: n(record.bytesInParts),
    ver: n(record.version),
    exp: n(record.expiresAt),
  };
  if (record.maxBytes !== undefined) item.max = n(record.maxBytes);
  if (record.total !== undefined) item.tot = n(record.total);
  if (record.auth !== undefined) item.am = s(record.auth);
  if (record.requestKey !== undefined) item.rk = s(record.requestKey);
  if (record.notify !== undefined) {
    item.nt = s(record.notify.type);
    item.ntg = s(record.notify.target);
    item.nou = s(record.notify.originalUrl);
    item.ntk = s(record.notify.token);
  }
  if (record.reply !== undefined) {
    item.rurl = s(record.reply.url);
    item.rcp = { BOOL: record.reply.copied };
  }
  if (record.notifyingUntil !== undefined) item.nlu = n(record.notifyingUntil);
  if (record.openPartEnd !== undefined) item.npe = n(record.openPartEnd);
  if (record.builder !== undefined) item.bld = s(JSON.stringify(record.builder));
  if (record.receivedCrc32c !== undefined) item.rc = n(record.receivedCrc32c);
  if (record.partsCrc32c !== undefined) item.pc = n(record.partsCrc32c);
  if (record.createdAt !== undefined) item.ca = n(record.createdAt);
  if (record.client !== undefined) item.cli = s(record.client);
  if (record.bytesReceived !== undefined) item.br = n(record.bytesReceived);
  // Read by the stream consumer that announces the ending (docs/events.md).
  if (record.outcome !== undefined) item.out = s(JSON.stringify(record.outcome));
  if (record.endingReason !== undefined) item.er = s(record.endingReason);
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
    // Records written before sessions were bound to principals match no principal.
    principal: item.who?.S ?? "",
    slot: item.slot?.S ?? "",
    overwrite: item.ow?.BOOL ?? false,
    maxBytes: num(item, "max"),
    fragments: num(item, "fr") ?? 0,
    auth: item.am?.S,
    requestKey: item.rk?.S,
    notify:
      item.nt?.S === undefined
        ? undefined
        : {
            type: item.nt.S as "reference" | "value",
            target: str(item, "ntg"),
            originalUrl: str(item, "nou"),
            token: str(item, "ntk"),
          },
    reply:
      item.rurl?.S === undefined
        ? undefined
        : { url: item.rurl.S, copied: item.rcp?.BOOL ?? false },
    notifyingUntil: num(item, "nlu"),
    uploadId: str(item, "uid"),
    total: num(item, "tot"),
    bytesInParts: num(item, "pe") ?? 0,
    openPartEnd: num(item, "npe"),
    builder: builderOf(item.bld?.S),
    offset: num(item, "off") ?? 0,
    etags: splitEtags(item.etags?.S),
    // Records older than checksums have neither: their file is completed unverified.
    receivedCrc32c: num(item, "rc"),
    partsCrc32c: num(item, "pc"),
    chunks: num(item, "ch") ?? 0,
    version: num(item, "ver") ?? 0,
    expiresAt: num(item, "exp") ?? 0,
    createdAt: num(item, "ca"),
    client: item.cli?.S,
    bytesReceived: num(item, "br"),
    outcome: outcomeOf(item.out?.S),
    endingReason: item.er?.S,
  };
}

function outcomeOf(text: string | undefined): SessionOutcome | undefined {
  if (text === undefined) return undefined;
  const value = JSON.parse(text) as SessionOutcome;
  if (typeof value?.kind !== "string" || typeof value.at !== "number") {
    throw new Error("session item with a malformed outcome");
  }
  return value;
}

function builderOf(text: string | undefined): PartBuilder | undefined {
  if (text === undefined) return undefined;
  const value = JSON.parse(text) as PartBuilder;
  if (
    typeof value?.bytesInPieces !== "number" ||
    typeof value.openPieceEnd !== "number" ||
    !Array.isArray(value.pieces)
  ) {
    throw new Error("session item with a malformed part builder");
  }
  return value;
}
