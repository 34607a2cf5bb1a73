import { ack } from "../bits/ack.ts";
import { BitsError } from "../bits/errors.ts";
import { type FragmentDecision, planFragment, type Write } from "../bits/fragment-plan.ts";
import type { Packet } from "../bits/packet.ts";
import type { BitsResponse } from "../bits/request.ts";
import { isLive, PART_CHUNK, type SessionRecord } from "../bits/session.ts";
import { nowSeconds, type ServiceContext } from "./context.ts";
import { chainSegments, listSegments, stagedKey, stagingPrefixFor } from "./staging.ts";

type Fragment = Extract<Packet, { type: "fragment" }>;
type Accept = Extract<FragmentDecision, { kind: "accept" }>;

/** How often a handler re-reads the session after losing a conditional write. */
const MAX_ATTEMPTS = 8;

/**
 * Fragment ([MC-BUP] 3.2.5.2.6, bits-protocol.md 5.2). Bytes are written to S3 first and the
 * new offset is recorded after, conditionally on the version read, so the offset never claims
 * a byte that is not stored. A handler that loses the race re-reads and re-decides; what it
 * wrote is the same bytes of the file at the same place, or a staged object cleaned up later.
 */
export async function fragment(context: ServiceContext, packet: Fragment): Promise<BitsResponse> {
  const { sessions, settings } = context;
  let record = await sessions.get(packet.sessionId);
  for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
    if (record === undefined || !isLive(record, nowSeconds(context)) || record.status !== "open") {
      throw new BitsError("sessionNotFound", "no such session");
    }
    const decision = planFragment(record, packet.range, packet.body, settings.limits);
    if (decision.kind !== "accept") {
      return ack(decision.kind === "gap" ? 416 : 200, {
        sessionId: record.id,
        receivedContentRange: decision.offset,
      });
    }
    const { next, consumed } = await write(context, record, decision);
    const result = await sessions.replace(next, record.version);
    if (result.ok) {
      await dropConsumed(context, record.id, consumed);
      return ack(200, { sessionId: record.id, receivedContentRange: next.offset });
    }
    record = result.current;
  }
  throw new BitsError("internal", "session kept changing under this fragment");
}

/**
 * Performs the writes of an accepted fragment. Returns the record to store and the staged
 * objects now held in parts, which may go once that record is stored.
 */
async function write(
  context: ServiceContext,
  record: SessionRecord,
  decision: Accept,
): Promise<{ next: SessionRecord; consumed: string[] }> {
  const { objects, sessions, settings } = context;
  const prefix = stagingPrefixFor(settings.stagingPrefix, record.id);
  let etags = [...record.etags];
  let chunks = record.chunks;
  const consumed: string[] = [];
  for (const step of decision.writes) {
    if (step.kind === "stage") {
      await objects.put(stagedKey(prefix, step.start, step.end), step.bytes, true);
      continue;
    }
    if (step.partNumber !== chunks * PART_CHUNK + etags.length + 1) {
      throw new BitsError("internal", `part ${step.partNumber} out of order`);
    }
    const { bytes, stagedKeys } = await assemblePart(context, prefix, step);
    etags.push(await objects.uploadPart(record.key, record.uploadId, step.partNumber, bytes));
    consumed.push(...stagedKeys);
    while (etags.length >= PART_CHUNK) {
      await sessions.putPartChunk(record.id, chunks, etags.slice(0, PART_CHUNK));
      chunks += 1;
      etags = etags.slice(PART_CHUNK);
    }
  }
  const next: SessionRecord = {
    ...record,
    total: decision.total,
    partSize: decision.partSize,
    offset: decision.offset,
    etags,
    chunks,
    version: record.version + 1,
    expiresAt: nowSeconds(context) + settings.sessionTimeoutSeconds,
  };
  return { next, consumed };
}

/**
 * Staged bytes are deleted only after the part holding them is recorded. Failing here loses
 * nothing: whatever stays is removed when the session ends.
 */
async function dropConsumed(context: ServiceContext, sessionId: string, keys: string[]) {
  if (keys.length === 0) return;
  try {
    await context.objects.delete(keys);
  } catch (error) {
    context.runtime.log("warn", "staged objects left for session end", {
      sessionId,
      error: String(error),
    });
  }
}

/** The bytes of one part: its staged head, read back from S3, then the fragment's slice. */
async function assemblePart(
  context: ServiceContext,
  prefix: string,
  step: Extract<Write, { kind: "part" }>,
): Promise<{ bytes: Uint8Array; stagedKeys: string[] }> {
  if (step.from === step.partStart) return { bytes: step.bytes, stagedKeys: [] };
  const segments = await listSegments(context.objects, prefix);
  const chain = chainSegments(segments, step.partStart, step.from);
  if (chain === undefined) {
    throw new BitsError("internal", `staged bytes of part ${step.partNumber} are missing`);
  }
  const bytes = new Uint8Array(step.from - step.partStart + step.bytes.length);
  for (const segment of chain) {
    const data = await context.objects.get(segment.key);
    if (data === undefined || data.length !== segment.end - segment.start) {
      throw new BitsError("internal", `staged object ${segment.key} vanished`);
    }
    bytes.set(data, segment.start - step.partStart);
  }
  bytes.set(step.bytes, step.from - step.partStart);
  return { bytes, stagedKeys: chain.map((segment) => segment.key) };
}
