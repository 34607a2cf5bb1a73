import type { ObjectInfo, ObjectStore } from "../ports/object-store.ts";

const DIGITS = 16;

/** All staged objects of one session share this prefix. */
export function stagingPrefixFor(stagingPrefix: string, sessionId: string): string {
  return `${stagingPrefix}${sessionId.replace(/[{}]/g, "").toLowerCase()}/`;
}

/** The session ID a staging directory belongs to (IDs are braced upper-case GUIDs). */
export function sessionIdOfStagingDir(dir: string): string | undefined {
  return /^[0-9a-f-]{36}$/.test(dir) ? `{${dir.toUpperCase()}}` : undefined;
}

/** Staged bytes [start, end) of a session, named so that key order is byte order. */
export function stagedKey(prefix: string, start: number, end: number): string {
  return `${prefix}${String(start).padStart(DIGITS, "0")}-${String(end).padStart(DIGITS, "0")}`;
}

interface Segment {
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
 * so any chain that covers the range is right. Prefers the longest segment at each step.
 */
export function chainSegments(
  segments: readonly Segment[],
  start: number,
  end: number,
): Segment[] | undefined {
  const chain: Segment[] = [];
  let position = start;
  while (position < end) {
    let best: Segment | undefined;
    for (const segment of segments) {
      if (segment.start === position && segment.end <= end) {
        if (best === undefined || segment.end > best.end) best = segment;
      }
    }
    if (best === undefined) return undefined;
    chain.push(best);
    position = best.end;
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
