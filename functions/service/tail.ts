import { crc32cCombine } from "../bits/crc32c.ts";
import { isComplete, type SessionRecord } from "../bits/session.ts";
import { sessionTag } from "./call.ts";
import type { ServiceContext } from "./context.ts";
import { listSegments, longestChain, stagingPrefixFor } from "./staging.ts";

/**
 * The tail of a session: bytes staged after the stored record's offset by fragments that
 * recorded nothing (docs/durability.md). Their staged objects name their range and CRC32C, so
 * the record can always be carried on from S3 alone.
 */

/**
 * The stored record carried on by the staged objects that follow its offset inside the open
 * unit, as one listing shows them (docs/durability.md, "Rebuilding the tail"). Every instance
 * that lists the same objects rebuilds the same tail. The version stays the stored one: the
 * caller writes the rebuilt record conditionally on it.
 */
export async function rebuildTail(
  context: ServiceContext,
  record: SessionRecord,
): Promise<SessionRecord> {
  const prefix = stagingPrefixFor(context.settings.stagingPrefix, record.id);
  const unitEnd = record.builder?.openPieceEnd ?? record.openPartEnd ?? record.total ?? 0;
  const segments = await listSegments(context.objects, prefix);
  const checksummed = record.receivedCrc32c !== undefined;
  let { offset, receivedCrc32c, fragments } = record;
  let bytesReceived = record.bytesReceived ?? 0;
  for (const segment of longestChain(segments, offset, unitEnd)) {
    const length = segment.end - segment.start;
    if (checksummed) {
      // A segment staged without its CRC32C cannot extend a checksummed record.
      if (segment.crc32c === undefined) break;
      receivedCrc32c = crc32cCombine(receivedCrc32c ?? 0, segment.crc32c, length);
    }
    offset = segment.end;
    fragments += 1;
    bytesReceived += length;
  }
  if (offset === record.offset) return record;
  context.runtime.log("info", "session tail rebuilt from staged objects", {
    session: sessionTag(record.id),
    from: record.offset,
    offset,
  });
  return { ...record, offset, receivedCrc32c, fragments, bytesReceived };
}

/**
 * The stored record of an open session with its tail, for a decision that ends it (Close,
 * Cancel): what this instance remembers when that is the same stored version, otherwise the
 * tail rebuilt from a listing. A complete record has no tail: the last byte is always recorded.
 */
export async function caughtUp(
  context: ServiceContext,
  stored: SessionRecord,
): Promise<SessionRecord> {
  if (stored.status !== "open" || isComplete(stored) || stored.total === undefined) return stored;
  const remembered = context.cache?.record(stored.id);
  if (remembered?.version === stored.version && remembered.status === "open") {
    return remembered.offset >= stored.offset ? remembered : stored;
  }
  return rebuildTail(context, stored);
}
