import { ack } from "../bits/ack.ts";
import { crc32c, crc32cCombine, partEntry } from "../bits/crc32c.ts";
import { BitsError } from "../bits/errors.ts";
import { type FragmentDecision, planFragment, type Write } from "../bits/fragment-plan.ts";
import type { Packet } from "../bits/packet.ts";
import type { BitsResponse } from "../bits/request.ts";
import {
  fragmentAllowance,
  isComplete,
  isLive,
  PART_CHUNK,
  recordedParts,
  type SessionRecord,
  uploadKey,
} from "../bits/session.ts";
import { UploadGoneError } from "../ports/object-store.ts";
import { type Call, ownedBy, sessionTag } from "./call.ts";
import { nowSeconds, type ServiceContext } from "./context.ts";
import { failSession } from "./end-session.ts";
import { notifyAndReply } from "./reply.ts";
import { type Attempt, again, done, type Held, untilSettled } from "./retry.ts";
import { chainSegments, listSegments, stagedKey, stagingPrefixFor } from "./staging.ts";

type Fragment = Extract<Packet, { type: "fragment" }>;
type Accept = Extract<FragmentDecision, { kind: "accept" }>;

/**
 * Fragment ([MC-BUP] 3.2.5.2.6; docs/protocol.md, "Fragments and offsets"): load the session,
 * decide what the fragment means for it, apply that. Bytes are written to S3 first and the new
 * offset is recorded after, conditionally on the version read, so the offset never claims a
 * byte that is not stored. A handler that loses the race decides again on the record as it is
 * now; what it wrote is the same bytes of the file at the same place (a part's bounds come from
 * the record, not from the request), or staged objects that the session's end deletes.
 */
export async function fragment(
  context: ServiceContext,
  packet: Fragment,
  call: Call,
): Promise<BitsResponse> {
  const first = await load(context, packet.sessionId);
  return untilSettled(
    first,
    async (held) => {
      const decided = decide(context, held, packet, call);
      switch (decided.kind) {
        case "answer":
          return done(await decided.answer());
        case "reread":
          return again(await read(context, packet.sessionId));
        case "accept":
          return apply(context, decided.record, decided.decision, packet, call);
      }
    },
    "fragment",
  );
}

/**
 * The session as this instance remembers it, or as the table has it. A warm instance writes on
 * the record it remembers and reads only when that fails: a sequential client then costs one
 * DynamoDB request per fragment.
 */
async function load(context: ServiceContext, id: string): Promise<Held> {
  const remembered = context.cache?.record(id);
  if (remembered !== undefined) return { record: remembered, fresh: false };
  return { record: await read(context, id), fresh: true };
}

async function read(context: ServiceContext, id: string) {
  const record = await context.sessions.get(id);
  context.cache?.rememberRecord(record, id);
  return record;
}

type Decided =
  /** The fragment is answered without writing (a settled session, a duplicate, a gap). */
  | { readonly kind: "answer"; readonly answer: () => Promise<BitsResponse> }
  /** What was remembered cannot be trusted for this answer: read the table first. */
  | { readonly kind: "reread" }
  | { readonly kind: "accept"; readonly record: SessionRecord; readonly decision: Accept };

/** What the fragment means for the session as held; writes nothing. */
function decide(context: ServiceContext, held: Held, packet: Fragment, call: Call): Decided {
  const { record, fresh } = held;
  if (!fresh && (record?.status !== "open" || !isLive(record, nowSeconds(context)))) {
    return { kind: "reread" };
  }
  const settled = settledAnswer(context, record, packet, call);
  if (settled !== undefined) return { kind: "answer", answer: async () => settled };
  const current = record as SessionRecord;
  const { limits } = context.settings;
  const decision = planFragment(
    { ...current, parts: recordedParts(current) },
    packet.range,
    packet.body,
    // A signed URL may allow less than the server does; records older than that field, more.
    { ...limits, maxUploadBytes: current.maxBytes || limits.maxUploadBytes },
  );
  if (decision.kind === "accept") return { kind: "accept", record: current, decision };
  // An offset the client is told must be the stored one, never a remembered one.
  if (!fresh) return { kind: "reread" };
  // Upload-reply: a resent final fragment gets the reply, notifying first if the last
  // notification failed ([MC-BUP] 3.2.5.1.2-3).
  if (decision.kind === "held" && current.notify && isComplete(current)) {
    return { kind: "answer", answer: () => notifyAndReply(context, current, call) };
  }
  const status = decision.kind === "gap" ? 416 : 200;
  const answer = ack(status, { sessionId: current.id, receivedContentRange: decision.offset });
  return { kind: "answer", answer: async () => answer };
}

/**
 * Writes an accepted fragment's bytes, then records them, conditionally on the version the
 * decision was made on.
 */
async function apply(
  context: ServiceContext,
  current: SessionRecord,
  decision: Accept,
  packet: Fragment,
  call: Call,
): Promise<Attempt<BitsResponse>> {
  const { sessions, settings, cache } = context;
  if (current.fragments >= fragmentAllowance(decision.total, settings.maxFragmentsPerMiB)) {
    // A client that writes the file in slivers would make the operator pay a PUT and a write
    // each: the session ends here and the job fails (docs/security.md, Caps).
    await failSession(context, current, "too many fragments for the file's size");
    throw new BitsError("accessDenied", "too many fragments for the file's size");
  }
  const staged: string[] = [];
  let written: Awaited<ReturnType<typeof write>>;
  try {
    written = await write(context, current, decision, staged);
  } catch (error) {
    // A racing handler may have moved the session on (consumed the staged bytes this one
    // read, ended the session): decide again on what is there now. Unchanged, the failure is
    // real.
    const now = await read(context, current.id);
    if (now?.version === current.version) {
      if (error instanceof StagedBytesLost) return done(await rewind(context, current));
      if (error instanceof UploadGoneError) {
        // The bytes held so far are gone with it: the client starts over ([MC-BUP] 3.1.5.2.1).
        await failSession(context, current, "the session's multipart upload is gone");
        throw new BitsError("sessionNotFound", "the session's upload is gone");
      }
      throw error;
    }
    await deleteStagedIfEnded(context, now, staged);
    return again(now);
  }
  // Every body that counted, overlapping resends included, for the completion event.
  const bytesReceived = (current.bytesReceived ?? 0) + packet.body.length;
  const next = { ...written.next, bytesReceived };
  const result = await sessions.replace(next, current.version);
  call.audit.bytesStored += written.bytesStored;
  if (!result.ok) {
    cache?.rememberRecord(result.current, current.id);
    await deleteStagedIfEnded(context, result.current, staged);
    return again(result.current);
  }
  cache?.rememberRecord(next);
  await deleteStagedQuietly(context, current.id, written.consumed);
  if (next.notify && isComplete(next)) return done(await notifyAndReply(context, next, call));
  return done(ack(200, { sessionId: current.id, receivedContentRange: next.offset }));
}

/**
 * The answer for a session that no longer takes bytes. One that is committing or was closed
 * complete answers a resent fragment with the total, like the final Ack ([MC-BUP] 3.2.5.2.6);
 * unknown, expired, discarded or cancelled sessions are not found ([MC-BUP] 3.2.5.2.3).
 */
function settledAnswer(
  context: ServiceContext,
  record: SessionRecord | undefined,
  packet: Fragment,
  call: Call,
) {
  if (record === undefined || !isLive(record, nowSeconds(context))) {
    throw new BitsError("sessionNotFound", "no such session");
  }
  if (!ownedBy(record, packet, call)) {
    throw new BitsError("sessionNotFound", "no such session for this client and URL");
  }
  if (record.status === "open") return undefined;
  if ((record.status === "committing" || record.status === "closed") && isComplete(record)) {
    return ack(200, { sessionId: record.id, receivedContentRange: record.offset });
  }
  throw new BitsError("sessionNotFound", "the session has ended");
}

/**
 * Staged bytes the record counts on are gone (removed behind the server's back, e.g. by a
 * lifecycle rule). The offset goes back to the end of the recorded parts, which S3 still holds,
 * and the client is told to resend from there (416, [MC-BUP] 3.2.5.2.6).
 */
async function rewind(context: ServiceContext, record: SessionRecord): Promise<BitsResponse> {
  const offset = record.bytesInParts;
  // What is received is again what the parts hold (docs/checksums.md).
  const rewound = {
    ...record,
    offset,
    receivedCrc32c: record.partsCrc32c,
    version: record.version + 1,
  };
  const result = await context.sessions.replace(rewound, record.version);
  context.cache?.rememberRecord(result.ok ? rewound : undefined, record.id);
  context.runtime.log("warn", "staged bytes lost; resuming from the recorded parts", {
    session: sessionTag(record.id),
    offset,
    rewound: result.ok,
  });
  if (!result.ok) throw new BitsError("internal", "session changed while rewinding");
  return ack(416, { sessionId: record.id, receivedContentRange: offset });
}

/** A handler that lost to the end of its session deletes what it staged after that end. */
async function deleteStagedIfEnded(
  context: ServiceContext,
  record: SessionRecord | undefined,
  staged: string[],
) {
  if (record === undefined || record.status !== "open") {
    await deleteStagedQuietly(context, record?.id ?? "", staged);
  }
}

/**
 * Performs the writes of an accepted fragment. Returns the record to store and the staged
 * objects now held in parts, which may go once that record is stored.
 *
 * Checksums (docs/checksums.md): the writes' bytes are, in order, exactly the new bytes
 * [offset, offset') of the request body, so their CRC32Cs extend `receivedCrc32c`. Each part's
 * CRC32C is computed from the part's own bytes as uploaded (staged head read back included),
 * sent with the part for the store to check, kept in its entry, and extends `partsCrc32c`.
 * Records older than checksums keep neither and upload parts without one.
 */
async function write(
  context: ServiceContext,
  record: SessionRecord,
  decision: Accept,
  staged: string[],
): Promise<{ next: SessionRecord; consumed: string[]; bytesStored: number }> {
  const { objects, sessions, settings } = context;
  const prefix = stagingPrefixFor(settings.stagingPrefix, record.id);
  let etags = [...record.etags];
  let chunks = record.chunks;
  const consumed: string[] = [];
  let bytesStored = 0;
  const checksummed = record.receivedCrc32c !== undefined && record.partsCrc32c !== undefined;
  let receivedCrc32c = record.receivedCrc32c;
  let partsCrc32c = record.partsCrc32c;
  for (const step of decision.writes) {
    const stepCrc = checksummed ? crc32c(step.bytes) : 0;
    if (checksummed) {
      receivedCrc32c = crc32cCombine(receivedCrc32c ?? 0, stepCrc, step.bytes.length);
    }
    if (step.kind === "stage") {
      const key = stagedKey(prefix, step.start, step.end);
      staged.push(key);
      // The bytes' CRC32C, already computed for the received checksum, goes with them.
      await objects.putStaged(key, step.bytes, checksummed ? stepCrc : undefined);
      bytesStored += step.bytes.length;
      context.cache?.rememberStaged(key, step.bytes, checksummed ? stepCrc : undefined);
      continue;
    }
    if (step.partNumber !== chunks * PART_CHUNK + etags.length + 1) {
      throw new BitsError("internal", `part ${step.partNumber} out of order`);
    }
    const { bytes, stagedKeys } = await assemblePart(context, prefix, step);
    // A part that is the request's slice has the slice's CRC; any other is computed afresh.
    const partCrc = !checksummed ? undefined : bytes === step.bytes ? stepCrc : crc32c(bytes);
    const key = uploadKey(record);
    const etag = await objects.uploadPart(key, record.uploadId, step.partNumber, bytes, partCrc);
    etags.push(partEntry(etag, partCrc));
    if (partCrc !== undefined) partsCrc32c = crc32cCombine(partsCrc32c ?? 0, partCrc, bytes.length);
    bytesStored += bytes.length;
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
    bytesInParts: decision.bytesInParts,
    openPartEnd: decision.openPartEnd,
    offset: decision.offset,
    receivedCrc32c,
    partsCrc32c,
    etags,
    chunks,
    fragments: record.fragments + 1,
    version: record.version + 1,
    expiresAt: nowSeconds(context) + settings.sessionTimeoutSeconds,
  };
  return { next, consumed, bytesStored };
}

/**
 * Staged bytes are deleted only after the part holding them is recorded. Failing here loses
 * nothing: whatever stays is deleted when the session ends.
 */
async function deleteStagedQuietly(context: ServiceContext, sessionId: string, keys: string[]) {
  if (keys.length === 0) return;
  context.cache?.forgetStaged(keys);
  try {
    await context.objects.delete(keys);
  } catch (error) {
    context.runtime.log("warn", "staged objects left for session end", {
      session: sessionTag(sessionId),
      error: String(error),
    });
  }
}

/**
 * The bytes of one part: its staged head, then the fragment's slice. The head comes from what
 * this instance staged itself when it can (bytes that fail their CRC32C check are not used),
 * and is otherwise listed and read back from S3.
 */
async function assemblePart(
  context: ServiceContext,
  prefix: string,
  step: Extract<Write, { kind: "part" }>,
): Promise<{ bytes: Uint8Array; stagedKeys: string[] }> {
  if (step.from === step.partStart) return { bytes: step.bytes, stagedKeys: [] };
  const { cache, objects } = context;
  const chain =
    chainSegments(cache?.stagedSegments(prefix) ?? [], step.partStart, step.from) ??
    chainSegments(await listSegments(objects, prefix), step.partStart, step.from);
  if (chain === undefined) throw new StagedBytesLost(step.partNumber);
  const bytes = new Uint8Array(step.from - step.partStart + step.bytes.length);
  // Read in parallel: a part gathers up to a few hundred staged fragments.
  await mapLimited(chain, STAGED_READS_IN_FLIGHT, async (segment) => {
    const data = cache?.stagedBytesOf(segment.key) ?? (await objects.get(segment.key));
    if (data === undefined || data.length !== segment.end - segment.start) {
      throw new StagedBytesLost(step.partNumber);
    }
    bytes.set(data, segment.start - step.partStart);
  });
  bytes.set(step.bytes, step.from - step.partStart);
  return { bytes, stagedKeys: chain.map((segment) => segment.key) };
}

const STAGED_READS_IN_FLIGHT = 8;

/** Runs `task` on every item, at most `limit` at a time; fails with the first failure. */
async function mapLimited<T>(items: readonly T[], limit: number, task: (item: T) => Promise<void>) {
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const item = items[next++] as T;
      await task(item);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

/** The staged head of a part is not (or no longer) in S3. */
class StagedBytesLost extends Error {
  constructor(partNumber: number) {
    super(`staged bytes of part ${partNumber} are missing`);
    this.name = "StagedBytesLost";
  }
}
