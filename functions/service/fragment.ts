import { ack } from "../bits/ack.ts";
import {
  crc32c,
  crc32cCombine,
  crc32cFromBase64,
  parsePartEntry,
  partEntry,
} from "../bits/crc32c.ts";
import { BitsError } from "../bits/errors.ts";
import { type FragmentDecision, planFragment, type Write } from "../bits/fragment-plan.ts";
import type { Packet } from "../bits/packet.ts";
import type { BitsResponse } from "../bits/request.ts";
import {
  isComplete,
  isLive,
  mayWriteFragment,
  PART_CHUNK,
  type PartBuilder,
  recordedParts,
  type SessionRecord,
  uploadKey,
} from "../bits/session.ts";
import { type CopiedPart, ObjectMissingError, UploadGoneError } from "../ports/object-store.ts";
import { type Call, ownedBy, redactIds, sessionTag } from "./call.ts";
import { nowSeconds, type ServiceContext } from "./context.ts";
import { failSession } from "./end-session.ts";
import { notifyAndReply } from "./reply.ts";
import { type Attempt, again, done, type Held, untilSettled } from "./retry.ts";
import {
  builderKey,
  chainSegments,
  listSegments,
  openBuilder,
  stagedKey,
  stagingPrefixFor,
} from "./staging.ts";

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
  const builder = current.builder;
  const decision = planFragment(
    {
      ...current,
      parts: recordedParts(current),
      pieces: builder && { ...builder, count: builder.pieces.length },
    },
    packet.range,
    packet.body,
    // A signed URL may allow less than the server does (0 is 0); records older than that
    // field have none and take the server's limit.
    { ...limits, maxUploadBytes: current.maxBytes ?? limits.maxUploadBytes },
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
  if (!mayWriteFragment(current.fragments, decision.offset, settings.maxFragmentsPerMiB)) {
    // A client that writes the file in slivers would make the operator pay a PUT and a write
    // each: the session ends here and the job fails (docs/security.md, Caps).
    await failSession(context, current, "too many fragments for the file's size");
    throw new BitsError("accessDenied", "too many fragments for the file's size");
  }
  const staged: string[] = [];
  const created: CreatedUpload[] = [];
  let written: Awaited<ReturnType<typeof write>>;
  try {
    written = await write(context, current, decision, staged, created);
  } catch (error) {
    await abortQuietly(context, created);
    // A racing handler may have moved the session on (consumed the staged bytes this one
    // read, ended the session): decide again on what is there now. Unchanged, the failure is
    // real.
    const now = await read(context, current.id);
    if (now?.version === current.version) {
      if (error instanceof StagedBytesLost) return done(await rewind(context, current, "unit"));
      if (error instanceof BuilderLost) return done(await rewind(context, current, "part"));
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
    await abortQuietly(context, created);
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
  // The session is this client's own: it may learn why it ended (an operator's cancel, say).
  const why = record.outcome?.reason;
  throw new BitsError(
    "sessionNotFound",
    why === undefined ? "the session has ended" : `the session has ended: ${why}`,
  ).tellingClient();
}

/**
 * Bytes the record counts on are gone (removed behind the server's back, e.g. by a lifecycle
 * rule): staged bytes of the open unit, or a part builder with its pieces. The offset goes back
 * to what S3 still holds, the start of the open unit or of the open part, and the client is
 * told to resend from there (416, [MC-BUP] 3.2.5.2.6).
 */
async function rewind(
  context: ServiceContext,
  record: SessionRecord,
  to: "unit" | "part",
): Promise<BitsResponse> {
  const builder = to === "unit" ? record.builder : undefined;
  const offset = builder?.bytesInPieces ?? record.bytesInParts;
  // What is received is again what the parts (and pieces) hold (docs/checksums.md).
  const receivedCrc32c =
    builder === undefined || record.partsCrc32c === undefined || builder.piecesCrc32c === undefined
      ? record.partsCrc32c
      : crc32cCombine(record.partsCrc32c, builder.piecesCrc32c, offset - record.bytesInParts);
  const rewound = { ...record, offset, receivedCrc32c, builder, version: record.version + 1 };
  const result = await context.sessions.replace(rewound, record.version);
  context.cache?.rememberRecord(result.ok ? rewound : undefined, record.id);
  context.runtime.log(
    "warn",
    `${to === "unit" ? "staged bytes" : "part builder"} lost; resuming from what S3 holds`,
    {
      session: sessionTag(record.id),
      offset,
      rewound: result.ok,
    },
  );
  if (!result.ok) throw new BitsError("internal", "session changed while rewinding");
  const lost = to === "part" ? openBuilder(context.settings.stagingPrefix, record) : undefined;
  if (lost !== undefined) {
    await abortQuietly(context, [lost]);
    // An object it completed into is not to be taken for a finished part later.
    await deleteStagedQuietly(context, record.id, [lost.key]);
  }
  return ack(416, { sessionId: record.id, receivedContentRange: offset });
}

/** Aborts builder uploads nothing records; one left over is ended by the bucket's lifecycle rule. */
async function abortQuietly(context: ServiceContext, uploads: readonly CreatedUpload[]) {
  for (const { key, uploadId } of uploads) {
    await context.objects.abortUpload(key, uploadId).catch(() => undefined);
  }
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

/** A multipart upload this request created for a builder; aborted when the request loses. */
interface CreatedUpload {
  readonly key: string;
  readonly uploadId: string;
}

/**
 * Performs the writes of an accepted fragment. Returns the record to store and the staged
 * objects now held in parts, which may go once that record is stored.
 *
 * Checksums (docs/checksums.md): the writes' bytes are, in order, exactly the new bytes
 * [offset, offset') of the request body, so their CRC32Cs extend `receivedCrc32c`. Each part's
 * (and piece's) CRC32C is computed from its own bytes as uploaded (staged head read back
 * included), sent with it for the store to check, and kept in its entry; a part built from
 * pieces has the CRC32C of its pieces combined. Parts extend `partsCrc32c`. Records older than
 * checksums keep neither and upload parts without one.
 */
async function write(
  context: ServiceContext,
  record: SessionRecord,
  decision: Accept,
  staged: string[],
  created: CreatedUpload[],
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
  let builder: BuilderPieces | undefined = record.builder;
  const addPart = async (etag: string, crc: number | undefined, length: number) => {
    etags.push(partEntry(etag, crc));
    if (crc !== undefined) partsCrc32c = crc32cCombine(partsCrc32c ?? 0, crc, length);
    while (etags.length >= PART_CHUNK) {
      await sessions.putPartChunk(record.id, chunks, etags.slice(0, PART_CHUNK));
      chunks += 1;
      etags = etags.slice(PART_CHUNK);
    }
  };
  const writes = decision.writes;
  for (const [index, step] of writes.entries()) {
    if (step.kind === "seal") {
      const part = await seal(context, record, prefix, step, builder);
      await addPart(part.etag, part.crc, step.partEnd - step.partStart);
      consumed.push(part.key);
      builder = undefined;
      continue;
    }
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
    const unitStart = step.kind === "part" ? step.partStart : step.pieceStart;
    const { bytes, stagedKeys } = await assembleUnit(context, prefix, unitStart, step);
    // A unit that is the request's slice has the slice's CRC; any other is computed afresh.
    const crc = !checksummed ? undefined : bytes === step.bytes ? stepCrc : crc32c(bytes);
    bytesStored += bytes.length;
    consumed.push(...stagedKeys);
    if (step.kind === "part") {
      if (step.partNumber !== chunks * PART_CHUNK + etags.length + 1) {
        throw new BitsError("internal", `part ${step.partNumber} out of order`);
      }
      const key = uploadKey(record);
      await addPart(
        await objects.uploadPart(key, record.uploadId, step.partNumber, bytes, crc),
        crc,
        bytes.length,
      );
      continue;
    }
    const sealNext = writes[index + 1]?.kind === "seal";
    builder = await writePiece(
      context,
      record,
      prefix,
      step,
      bytes,
      crc,
      builder,
      sealNext,
      created,
    );
  }
  const next: SessionRecord = {
    ...record,
    total: decision.total,
    bytesInParts: decision.bytesInParts,
    openPartEnd: decision.openPartEnd,
    builder: decision.pieces && {
      uploadId: builder?.uploadId,
      pieces: builder?.pieces ?? [],
      piecesCrc32c: builder?.piecesCrc32c ?? (checksummed ? 0 : undefined),
      ...decision.pieces,
    },
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

/** What a request's writes change of the open part's builder; its bounds are the decision's. */
type BuilderPieces = Pick<PartBuilder, "uploadId" | "pieces" | "piecesCrc32c">;

/**
 * Uploads a piece of a part built from pieces (docs/large-files.md) as a part of the part's
 * builder upload, creating that upload for the part's first piece. Returns the builder with the
 * piece added.
 */
async function writePiece(
  context: ServiceContext,
  record: SessionRecord,
  prefix: string,
  step: Extract<Write, { kind: "piece" }>,
  bytes: Uint8Array,
  crc: number | undefined,
  builder: BuilderPieces | undefined,
  sealNext: boolean,
  created: CreatedUpload[],
): Promise<BuilderPieces> {
  const pieces = builder?.pieces ?? [];
  if (step.pieceNumber !== pieces.length + 1) {
    throw new BitsError("internal", `piece ${step.pieceNumber} out of order`);
  }
  const key = builderKey(prefix, step.partNumber);
  let uploadId = builder?.uploadId;
  if (uploadId === undefined) {
    uploadId = await context.objects.createUpload(key, record.id);
    created.push({ key, uploadId });
  }
  let etag: string;
  try {
    etag = await context.objects.uploadPart(key, uploadId, step.pieceNumber, bytes, crc);
  } catch (error) {
    if (!(error instanceof UploadGoneError)) throw error;
    // An earlier attempt at this fragment completed the builder and lost its answer or its
    // record write: the seal that follows finds the builder's object. Otherwise the pieces
    // recorded so far are gone with the upload.
    if (!sealNext) throw new BuilderLost(step.partNumber);
    etag = "";
  }
  const length = bytes.length;
  return {
    uploadId,
    pieces: [...pieces, partEntry(etag, crc)],
    piecesCrc32c:
      crc === undefined ? undefined : crc32cCombine(builder?.piecesCrc32c ?? 0, crc, length),
  };
}

/**
 * Every piece of a part is uploaded: completes the builder into its object and copies that
 * object into the part, inside the store, so the part's bytes never pass through the function
 * however large it is. The completion checks the pieces' combined CRC32C and the part's size,
 * and a store that reports the copied part's CRC32C is checked too.
 */
async function seal(
  context: ServiceContext,
  record: SessionRecord,
  prefix: string,
  step: Extract<Write, { kind: "seal" }>,
  builder: BuilderPieces | undefined,
): Promise<{ etag: string; crc: number | undefined; key: string }> {
  const { objects } = context;
  const key = builderKey(prefix, step.partNumber);
  if (builder?.uploadId === undefined) throw new BuilderLost(step.partNumber);
  const crc = builder.piecesCrc32c;
  const completion = await objects.completeUpload(
    key,
    builder.uploadId,
    builder.pieces.map(parsePartEntry),
    { overwrite: true, owner: record.id, crc32c: crc, size: step.partEnd - step.partStart },
  );
  const reported =
    completion.crc32c === undefined ? undefined : crc32cFromBase64(completion.crc32c);
  if (
    completion.result !== "completed" ||
    (crc !== undefined && reported !== undefined && reported !== crc)
  ) {
    throw new BuilderLost(step.partNumber);
  }
  let copied: CopiedPart;
  try {
    copied = await objects.copyToPart(key, uploadKey(record), record.uploadId, step.partNumber);
  } catch (error) {
    // Deleted by a racing writer that recorded the part first: decide again.
    if (error instanceof ObjectMissingError) throw new BuilderLost(step.partNumber);
    throw error;
  }
  if (crc !== undefined && copied.crc32c !== undefined && copied.crc32c !== crc) {
    throw new BuilderLost(step.partNumber);
  }
  return { etag: copied.etag, crc, key };
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
      error: redactIds(String(error)),
    });
  }
}

/**
 * The bytes of one part or piece: its staged head [unitStart, from), then the fragment's slice.
 * The head comes from what this instance staged itself when it can (bytes that fail their
 * CRC32C check are not used), and is otherwise listed and read back from S3. The head is
 * shorter than the unit, and a unit read back is never more than `maxAssembledBytes` long
 * (docs/large-files.md).
 */
async function assembleUnit(
  context: ServiceContext,
  prefix: string,
  unitStart: number,
  step: Extract<Write, { kind: "part" | "piece" }>,
): Promise<{ bytes: Uint8Array; stagedKeys: string[] }> {
  if (step.from === unitStart) return { bytes: step.bytes, stagedKeys: [] };
  const { cache, objects } = context;
  const chain =
    chainSegments(cache?.stagedSegments(prefix) ?? [], unitStart, step.from) ??
    chainSegments(await listSegments(objects, prefix), unitStart, step.from);
  if (chain === undefined) throw new StagedBytesLost(step.partNumber);
  const bytes = new Uint8Array(step.from - unitStart + step.bytes.length);
  // Read in parallel: a unit gathers up to a few hundred staged fragments.
  await mapLimited(chain, STAGED_READS_IN_FLIGHT, async (segment) => {
    const data = cache?.stagedBytesOf(segment.key) ?? (await objects.get(segment.key));
    if (data === undefined || data.length !== segment.end - segment.start) {
      throw new StagedBytesLost(step.partNumber);
    }
    bytes.set(data, segment.start - unitStart);
  });
  bytes.set(step.bytes, step.from - unitStart);
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

/**
 * The builder of a part built from pieces is gone, or its object is not what its pieces make:
 * the session goes back to the part's start (docs/large-files.md).
 */
class BuilderLost extends Error {
  constructor(partNumber: number) {
    super(`the builder of part ${partNumber} is gone`);
    this.name = "BuilderLost";
  }
}

/** The staged head of a part is not (or no longer) in S3. */
class StagedBytesLost extends Error {
  constructor(partNumber: number) {
    super(`staged bytes of part ${partNumber} are missing`);
    this.name = "StagedBytesLost";
  }
}
