import { recordedParts, type SessionRecord } from "../bits/session.ts";
import type { ObjectInfo, ObjectStore } from "../ports/object-store.ts";

const DIGITS = 16;

/** A session's folder name: its GUID without braces, lower-case (`sessionIdOfStagingDir`). */
export function sessionDir(sessionId: string): string {
  return sessionId.replace(/[{}]/g, "").toLowerCase();
}

/** All staged objects of one session share this prefix. */
export function stagingPrefixFor(stagingPrefix: string, sessionId: string): string {
  return `${stagingPrefix}${sessionDir(sessionId)}/`;
}

/** The session ID a staging directory belongs to (IDs are braced upper-case GUIDs). */
export function sessionIdOfStagingDir(dir: string): string | undefined {
  return /^[0-9a-f-]{36}$/.test(dir) ? `{${dir.toUpperCase()}}` : undefined;
}

/**
 * Staged bytes [start, end) of a session, named so that key order is byte order. With their
 * CRC32C (8 hex digits after the range), a staged object describes itself: one listing tells a
 * cold instance which bytes are held and their checksum, without the session record
 * (docs/durability.md).
 */
export function stagedKey(prefix: string, start: number, end: number, crc32c?: number): string {
  const range = `${String(start).padStart(DIGITS, "0")}-${String(end).padStart(DIGITS, "0")}`;
  return crc32c === undefined
    ? `${prefix}${range}`
    : `${prefix}${range}-${(crc32c >>> 0).toString(16).padStart(8, "0")}`;
}

/**
 * The object a part's builder completes into, before it is copied into the part
 * (docs/large-files.md). Not a staged segment: `parseStagedKey` passes over it.
 */
export function builderKey(prefix: string, partNumber: number): string {
  return `${prefix}part-${String(partNumber).padStart(5, "0")}`;
}

/** The open part's builder upload as a record holds it; undefined before its first piece. */
export function openBuilder(
  stagingPrefix: string,
  record: SessionRecord,
): { key: string; uploadId: string } | undefined {
  const uploadId = record.builder?.uploadId;
  if (uploadId === undefined) return undefined;
  const key = builderKey(stagingPrefixFor(stagingPrefix, record.id), recordedParts(record) + 1);
  return { key, uploadId };
}

export interface Segment {
  readonly key: string;
  readonly start: number;
  readonly end: number;
  /** The bytes' CRC32C, as the key names it; undefined for keys staged without one. */
  readonly crc32c?: number | undefined;
}

export function parseStagedKey(prefix: string, object: ObjectInfo): Segment | undefined {
  const match = /^(\d+)-(\d+)(?:-([0-9a-f]{8}))?$/.exec(object.key.slice(prefix.length));
  if (!match) return undefined;
  const start = Number(match[1]);
  const end = Number(match[2]);
  if (end - start !== object.size) return undefined;
  const crc32c = match[3] === undefined ? undefined : Number.parseInt(match[3], 16);
  return { key: object.key, start, end, crc32c };
}

/**
 * The staged segments that carry the bytes on from `start` as far as they go without passing
 * `limit`: the chain to the furthest reachable end (of those, the fewest segments), or an empty
 * chain. The same listing gives every instance the same chain (docs/durability.md, "Rebuilding
 * the tail").
 */
export function longestChain(
  segments: readonly Segment[],
  start: number,
  limit: number,
): Segment[] {
  const via = reach(segments, start, limit);
  const furthest = Math.max(start, ...via.keys());
  return furthest === start ? [] : walkBack(via, start, furthest);
}

/**
 * Picks staged segments that together hold exactly [start, end). Segments left by a writer
 * that lost a race may overlap the recorded ones; their bytes are the same bytes of the file,
 * so any chain that covers the range is right. A breadth-first search over segment ends finds
 * one whenever one exists (the fewest segments), however the segments overlap.
 */
export function chainSegments(
  segments: readonly Segment[],
  start: number,
  end: number,
): Segment[] | undefined {
  if (start === end) return [];
  const via = reach(segments, start, end);
  return via.has(end) ? walkBack(via, start, end) : undefined;
}

/**
 * Breadth-first over segment ends from `start`, never past `limit`: for every end reachable,
 * the segment that first reached it, so that walking back from it takes the fewest segments.
 */
function reach(segments: readonly Segment[], start: number, limit: number) {
  const via = new Map<number, Segment>();
  const queue = [start];
  for (let i = 0; i < queue.length; i++) {
    const position = queue[i] as number;
    for (const segment of segments) {
      const usable = segment.start === position && segment.end > position && segment.end <= limit;
      if (!usable || via.has(segment.end)) continue;
      via.set(segment.end, segment);
      queue.push(segment.end);
    }
  }
  return via;
}

function walkBack(via: ReadonlyMap<number, Segment>, start: number, end: number): Segment[] {
  const chain: Segment[] = [];
  for (let position = end; position !== start; ) {
    const segment = via.get(position) as Segment;
    chain.unshift(segment);
    position = segment.start;
  }
  return chain;
}

/** Lists a session's staged segments. */
export async function listSegments(objects: ObjectStore, prefix: string): Promise<Segment[]> {
  const listed = await objects.list(prefix);
  return listed.flatMap((object) => parseStagedKey(prefix, object) ?? []);
}

/** Deletes everything staged for a session. */
export async function deleteStaged(objects: ObjectStore, prefix: string): Promise<void> {
  const listed = await objects.list(prefix);
  if (listed.length > 0) await objects.delete(listed.map((object) => object.key));
}
