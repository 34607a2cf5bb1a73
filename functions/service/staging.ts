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

/** Staged bytes [start, end) of a session, named so that key order is byte order. */
export function stagedKey(prefix: string, start: number, end: number): string {
  return `${prefix}${String(start).padStart(DIGITS, "0")}-${String(end).padStart(DIGITS, "0")}`;
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
}

export function parseStagedKey(prefix: string, object: ObjectInfo): Segment | undefined {
  const match = /^(\d+)-(\d+)$/.exec(object.key.slice(prefix.length));
  if (!match) return undefined;
  const start = Number(match[1]);
  const end = Number(match[2]);
  if (end - start !== object.size) return undefined;
  return { key: object.key, start, end };
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
  const via = new Map<number, Segment>();
  const queue = [start];
  for (let i = 0; i < queue.length; i++) {
    const position = queue[i] as number;
    for (const segment of segments) {
      const usable = segment.start === position && segment.end > position && segment.end <= end;
      if (!usable || via.has(segment.end)) continue;
      via.set(segment.end, segment);
      if (segment.end === end) return walkBack(via, start, end);
      queue.push(segment.end);
    }
  }
  return undefined;
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
