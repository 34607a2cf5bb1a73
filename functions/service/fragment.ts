import { ack } from "../bits/ack.ts";
import {
  crc32c,
  crc32cCombine,
  crc32cFromBase64,
  parsePartEntry,
  partEntry,
} from "../bits/crc32c.ts";
import { BitsError } from "../bits/errors.ts";
import {
  type FragmentDecision,
  limitsFor,
  planFragment,
  planStateOf,
  type Write,
} from "../bits/fragment-plan.ts";
import type { Packet } from "../bits/packet.ts";
import type { BitsResponse } from "../bits/request.ts";
import {
  isComplete,
  isLive,
  mayWriteFragment,
  PART_CHUNK,
  recordedParts,
  type SessionRecord,
  uploadKey,
} from "../bits/session.ts";
import { type CopiedPart, ObjectMissingError, UploadGoneError } from "../ports/object-store.ts";
import { type Call, liveAndOwned, redactIds, sessionTag } from "./call.ts";
import { nowSeconds, type ServiceContext } from "./context.ts";
import { failSession } from "./endings.ts";
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
import { rebuildTail } from "./tail.ts";

type Fragment = Extract<Packet, { type: "fragment" }>;
type Accept = Extract<FragmentDecision, { kind: "accept" }>;

/**
 * Fragment ([MC-BUP] 3.2.5.2.6; docs/protocol.md, "Fragments and offsets"; docs/durability.md):
 * load the session, decide what the fragment means for it, apply that. Bytes are written to S3
 * first and the Ack follows, so the offset never claims a byte that is not stored. A fragment
 * that completes a part (or a piece, or ends the file) records the new offset, conditionally on
 * the version read; one that only stages bytes on an instance that remembers the session
 * records nothing: its staged object names its range and CRC32C, and the record catches up at
 * the next part boundary, or when an instance that does not remember the session rebuilds the
 * tail from one listing. A handler that loses the race decides again on the record as it is
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
        case "rebuild":
          return again(await catchUp(context, decided.record), { rebuilt: true });
        case "accept":
          return apply(context, held, decided.record, decided.decision, packet, call);
      }
    },
    "fragment",
  );
}

/**
 * The session as this instance remembers it (the record as stored, carried on by the bytes
 * this instance staged since), or as the table has it. A warm instance decides on what it
 * remembers and reads only when that cannot answer: a sequential client then costs one
 * DynamoDB request per part, not per fragment.
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
  /** The stored record may lag behind staged bytes: rebuild its tail from a listing first. */
  | { readonly kind: "rebuild"; readonly record: SessionRecord }
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
  const limits = limitsFor(current, context.settings.limits);
  const decision = planFragment(planStateOf(current), packet.range, packet.body, limits);
  if (decision.kind === "accept") return { kind: "accept", record: current, decision };
  // An offset the client is told must be the stored one, never a remembered one.
  if (!fresh) return { kind: "reread" };
  // The stored offset may lag behind bytes staged without a record write: the answer's offset
  // is the one the staged objects show (docs/durability.md, 3).
  if (!held.rebuilt && current.total !== undefined && !isComplete(current)) {
    return { kind: "rebuild", record: current };
  }
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
 * The record catches up with a tail rebuilt from a listing (docs/durability.md, 3): written
 * conditionally on the version it was read at, so that every instance, and the table's
 * readers, see the bytes held. A lost write hands on the record as it is now.
 */
async function catchUp(context: ServiceContext, stored: SessionRecord) {
  const rebuilt = await rebuildTail(context, stored);
  if (rebuilt === stored) return stored;
  const next = { ...rebuilt, version: stored.version + 1 };
  const result = await context.sessions.replace(next, stored.version);
  context.cache?.rememberRecord(result.ok ? next : result.current, stored.id);
  return result.ok ? next : result.current;
}

/**
 * Writes an accepted fragment's bytes, then records them, conditionally on the version the
 * decision was made on; or, for bytes that only stage on a remembered session, remembers them
 * (docs/durability.md).
 */
async function apply(
  context: ServiceContext,
  held: Held,
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
  const writer = new FragmentWriter(context, current);
  // A deferred Ack rests on the session being as remembered: a consistent read, in parallel
  // with the staged PUT, tells (docs/durability.md, 1). It never rejects; it is always awaited.
  const check = mayDefer(context, held, current, decision)
    ? sessions.get(current.id).then(
        (stored) => ({ stored }),
        (error: unknown) => ({ error }),
      )
    : undefined;
  let written: Written;
  try {
    written = await writer.write(decision);
  } catch (error) {
    await check;
    await abortQuietly(context, writer.created);
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
    await deleteStagedIfEnded(context, now, writer.staged);
    return again(now);
  }
  // Every body that counted, overlapping resends included, for the completion event.
  const bytesReceived = (current.bytesReceived ?? 0) + packet.body.length;
  const next = { ...written.next, bytesReceived };
  call.audit.bytesStored += written.bytesStored;
  if (check !== undefined) {
    const checked = await check;
    if ("error" in checked) throw checked.error;
    const { stored } = checked;
    if (stored?.version === current.version && stored.status === "open") {
      // Staged bytes describe themselves: the record catches up later (docs/durability.md, 1).
      cache?.rememberRecord({ ...next, version: current.version, expiresAt: current.expiresAt });
      return done(ack(200, { sessionId: current.id, receivedContentRange: next.offset }));
    }
    // What this instance remembered is stale (another instance moved the session on, or ended
    // it): decide again on the record as it is.
    cache?.rememberRecord(stored, current.id);
    await deleteStagedIfEnded(context, stored, writer.staged);
    return again(stored);
  }
  let result: Awaited<ReturnType<typeof sessions.replace>>;
  try {
    result = await sessions.replace(next, current.version);
  } catch (error) {
    // Whether the write landed is unknown: what this instance remembers is no longer a base.
    cache?.rememberRecord(undefined, current.id);
    throw error;
  }
  if (!result.ok) {
    cache?.rememberRecord(result.current, current.id);
    await abortQuietly(context, writer.created);
    await deleteStagedIfEnded(context, result.current, writer.staged);
    return again(result.current);
  }
  cache?.rememberRecord(next);
  await deleteStagedQuietly(context, current.id, written.consumed);
  if (next.notify && isComplete(next)) return done(await notifyAndReply(context, next, call));
  return done(ack(200, { sessionId: current.id, receivedContentRange: next.offset }));
}

/**
 * Whether an accepted fragment's Ack may go without a record write (docs/durability.md, 1): it
 * only staged bytes, on a session this instance remembers, whose total is recorded, and whose
 * stored expiry is not near (a record write renews it). Everything else is recorded now: parts,
 * pieces and seals, the first fragment, the last byte, and a decision made on a record just
 * read, which is how the record catches up with a rebuilt tail.
 */
function mayDefer(
  context: ServiceContext,
  held: Held,
  current: SessionRecord,
  decision: Accept,
): boolean {
  const [only, ...rest] = decision.writes;
  const renewBy = current.expiresAt - context.settings.sessionTimeoutSeconds / 2;
  return (
    context.settings.deferStagedRecords === true &&
    context.cache !== undefined &&
    !held.fresh &&
    only?.kind === "stage" &&
    rest.length === 0 &&
    current.total !== undefined &&
    decision.offset < decision.total &&
    nowSeconds(context) < renewBy
  );
}

/**
 * The answer for a session that no longer takes bytes. One that is committing or was closed
 * complete answers a resent fragment with the total, like the final Ack ([MC-BUP] 3.2.5.2.6);
 * unknown, expired, discarded or cancelled sessions are not found ([MC-BUP] 3.2.5.2.3).
 */
function settledAnswer(
  context: ServiceContext,
  stored: SessionRecord | undefined,
  packet: Fragment,
  call: Call,
) {
  const record = liveAndOwned(stored, packet, call, nowSeconds(context));
  if (record.status === "open") return undefined;
  if ((record.status === "committing" || record.status === "closed") && isComplete(record)) {
    return ack(200, { sessionId: record.id, receivedContentRange: record.offset });
  }
  // The session is this client's own: it may learn why it ended (an operator's cancel, say).
  const why = record.outcome?.reason ?? record.endingReason;
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

/** What the writes of an accepted fragment come to. */
interface Written {
  /** The record to store (or remember), version and expiry moved on. */
  readonly next: SessionRecord;
  /** Staged objects now held in parts: they may go once `next` is stored. */
  readonly consumed: readonly string[];
  /** Bytes uploaded to S3, for the audit line. */
  readonly bytesStored: number;
}

/**
 * The open part's builder as a request's writes move it on (docs/large-files.md): which part it
 * builds, its upload (undefined before the first piece) and its pieces' entries and CRC32C.
 */
interface OpenBuilder {
  readonly partNumber: number;
  readonly uploadId: string | undefined;
  readonly pieceEntries: readonly string[];
  readonly piecesCrc32c: number | undefined;
}

type StageWrite = Extract<Write, { kind: "stage" }>;
type UnitWrite = Extract<Write, { kind: "part" | "piece" }>;
type PieceWrite = Extract<Write, { kind: "piece" }>;
type SealWrite = Extract<Write, { kind: "seal" }>;

/**
 * Performs the writes of one accepted fragment, in order, and owns what they change: the part
 * entries and chunks, the running checksums, the open builder, and what was staged, created
 * and consumed on the way (which the caller cleans up when the request loses).
 *
 * Checksums (docs/checksums.md): the writes' bytes are, in order, exactly the new bytes
 * [offset, offset') of the request body, so their CRC32Cs extend `receivedCrc32c`. Each part's
 * (and piece's) CRC32C is computed from its own bytes as uploaded (staged head read back
 * included), sent with it for the store to check, and kept in its entry; a part built from
 * pieces has the CRC32C of its pieces combined. Parts extend `partsCrc32c`. Records older than
 * checksums keep neither and upload parts without one.
 */
class FragmentWriter {
  /** Staged objects this request wrote. */
  readonly staged: string[] = [];
  /** Builder uploads this request created. */
  readonly created: CreatedUpload[] = [];
  private readonly consumed: string[] = [];
  private readonly prefix: string;
  private readonly checksummed: boolean;
  private bytesStored = 0;
  private partEntries: string[];
  private chunks: number;
  private receivedCrc32c: number | undefined;
  private partsCrc32c: number | undefined;
  private builder: OpenBuilder | undefined;

  constructor(
    private readonly context: ServiceContext,
    private readonly record: SessionRecord,
  ) {
    this.prefix = stagingPrefixFor(context.settings.stagingPrefix, record.id);
    this.checksummed = record.receivedCrc32c !== undefined && record.partsCrc32c !== undefined;
    this.partEntries = [...record.etags];
    this.chunks = record.chunks;
    this.receivedCrc32c = record.receivedCrc32c;
    this.partsCrc32c = record.partsCrc32c;
    const builder = record.builder;
    this.builder = builder && {
      partNumber: recordedParts(record) + 1,
      uploadId: builder.uploadId,
      pieceEntries: builder.pieces,
      piecesCrc32c: builder.piecesCrc32c,
    };
  }

  async write(decision: Accept): Promise<Written> {
    const { writes } = decision;
    for (const [index, step] of writes.entries()) {
      switch (step.kind) {
        case "seal":
          await this.seal(step);
          break;
        case "stage":
          await this.stage(step);
          break;
        case "part":
          await this.part(step);
          break;
        case "piece":
          await this.piece(step, writes[index + 1]?.kind === "seal");
          break;
      }
    }
    const { record, context, builder } = this;
    const next: SessionRecord = {
      ...record,
      total: decision.total,
      bytesInParts: decision.bytesInParts,
      openPartEnd: decision.openPartEnd,
      builder: decision.pieces && {
        uploadId: builder?.uploadId,
        pieces: builder?.pieceEntries ?? [],
        piecesCrc32c: builder?.piecesCrc32c ?? (this.checksummed ? 0 : undefined),
        ...decision.pieces,
      },
      offset: decision.offset,
      receivedCrc32c: this.receivedCrc32c,
      partsCrc32c: this.partsCrc32c,
      etags: this.partEntries,
      chunks: this.chunks,
      fragments: record.fragments + 1,
      version: record.version + 1,
      expiresAt: nowSeconds(context) + context.settings.sessionTimeoutSeconds,
    };
    return { next, consumed: this.consumed, bytesStored: this.bytesStored };
  }

  /** The CRC32C of bytes the request brings, which extends the received checksum. */
  private received(bytes: Uint8Array): number | undefined {
    if (!this.checksummed) return undefined;
    const crc = crc32c(bytes);
    this.receivedCrc32c = crc32cCombine(this.receivedCrc32c ?? 0, crc, bytes.length);
    return crc;
  }

  /** Bytes that finish no unit: a staged object named by their range and CRC32C. */
  private async stage(step: StageWrite) {
    const crc = this.received(step.bytes);
    const key = stagedKey(this.prefix, step.start, step.end, crc);
    this.staged.push(key);
    await this.context.objects.putStaged(key, step.bytes, crc);
    this.bytesStored += step.bytes.length;
    this.context.cache?.rememberStaged(key, step.bytes, crc);
  }

  /** A part assembled whole: its staged head and the request's slice, uploaded as the part. */
  private async part(step: Extract<Write, { kind: "part" }>) {
    const crc = await this.assemble(step, step.partStart);
    const expected = this.chunks * PART_CHUNK + this.partEntries.length + 1;
    if (step.partNumber !== expected) {
      throw new BitsError("internal", `part ${step.partNumber} out of order`);
    }
    const etag = await this.context.objects.uploadPart(
      uploadKey(this.record),
      this.record.uploadId,
      step.partNumber,
      crc.bytes,
      crc.crc,
    );
    await this.addPart(etag, crc.crc, crc.bytes.length);
  }

  /**
   * A piece of a part built from pieces (docs/large-files.md): uploaded as a part of the part's
   * builder upload, which the part's first piece creates.
   */
  private async piece(step: PieceWrite, sealNext: boolean) {
    const { bytes, crc } = await this.assemble(step, step.pieceStart);
    const builder = this.builder ?? {
      partNumber: step.partNumber,
      uploadId: undefined,
      pieceEntries: [],
      piecesCrc32c: undefined,
    };
    if (builder.partNumber !== step.partNumber) {
      throw new BitsError(
        "internal",
        `piece of part ${step.partNumber} in part ${builder.partNumber}`,
      );
    }
    if (step.pieceNumber !== builder.pieceEntries.length + 1) {
      throw new BitsError("internal", `piece ${step.pieceNumber} out of order`);
    }
    const { objects } = this.context;
    const key = builderKey(this.prefix, builder.partNumber);
    let uploadId = builder.uploadId;
    if (uploadId === undefined) {
      uploadId = await objects.createUpload(key, this.record.id);
      this.created.push({ key, uploadId });
    }
    let etag: string;
    try {
      etag = await objects.uploadPart(key, uploadId, step.pieceNumber, bytes, crc);
    } catch (error) {
      if (!(error instanceof UploadGoneError)) throw error;
      // An earlier attempt at this fragment completed the builder and lost its answer or its
      // record write: the seal that follows finds the builder's object. Otherwise the pieces
      // recorded so far are gone with the upload.
      if (!sealNext) throw new BuilderLost(builder.partNumber);
      etag = "";
    }
    this.builder = {
      partNumber: builder.partNumber,
      uploadId,
      pieceEntries: [...builder.pieceEntries, partEntry(etag, crc)],
      piecesCrc32c:
        crc === undefined ? undefined : crc32cCombine(builder.piecesCrc32c ?? 0, crc, bytes.length),
    };
  }

  /**
   * Every piece of a part is uploaded: completes the builder into its object and copies that
   * object into the part, inside the store, so the part's bytes never pass through the function
   * however large it is. The completion checks the pieces' combined CRC32C and the part's size,
   * and a store that reports the copied part's CRC32C is checked too.
   */
  private async seal(step: SealWrite) {
    const { objects } = this.context;
    const builder = this.builder;
    if (builder?.uploadId === undefined || builder.partNumber !== step.partNumber) {
      throw new BuilderLost(step.partNumber);
    }
    const key = builderKey(this.prefix, builder.partNumber);
    const crc = builder.piecesCrc32c;
    const completion = await objects.completeUpload(
      key,
      builder.uploadId,
      builder.pieceEntries.map(parsePartEntry),
      { overwrite: true, owner: this.record.id, crc32c: crc, size: step.partEnd - step.partStart },
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
      copied = await objects.copyToPart(
        key,
        uploadKey(this.record),
        this.record.uploadId,
        builder.partNumber,
      );
    } catch (error) {
      // Deleted by a racing writer that recorded the part first: decide again.
      if (error instanceof ObjectMissingError) throw new BuilderLost(step.partNumber);
      throw error;
    }
    if (crc !== undefined && copied.crc32c !== undefined && copied.crc32c !== crc) {
      throw new BuilderLost(step.partNumber);
    }
    await this.addPart(copied.etag, crc, step.partEnd - step.partStart);
    this.consumed.push(key);
    this.builder = undefined;
  }

  /**
   * The bytes of a part or piece starting at `unitStart`, and their CRC32C: the request's slice
   * extends the received checksum; a unit that is the slice alone has the slice's CRC32C, any
   * other is computed afresh over the assembled bytes. The staged head is consumed.
   */
  private async assemble(step: UnitWrite, unitStart: number) {
    const sliceCrc = this.received(step.bytes);
    const { bytes, stagedKeys } = await assembleUnit(this.context, this.prefix, unitStart, step);
    const crc = !this.checksummed ? undefined : bytes === step.bytes ? sliceCrc : crc32c(bytes);
    this.bytesStored += bytes.length;
    this.consumed.push(...stagedKeys);
    return { bytes, crc };
  }

  /** Records a part's entry; every PART_CHUNK entries go to a chunk beside the record. */
  private async addPart(etag: string, crc: number | undefined, length: number) {
    this.partEntries.push(partEntry(etag, crc));
    if (crc !== undefined) this.partsCrc32c = crc32cCombine(this.partsCrc32c ?? 0, crc, length);
    while (this.partEntries.length >= PART_CHUNK) {
      const chunk = this.partEntries.slice(0, PART_CHUNK);
      await this.context.sessions.putPartChunk(this.record.id, this.chunks, chunk);
      this.chunks += 1;
      this.partEntries = this.partEntries.slice(PART_CHUNK);
    }
  }
}

/**
 * Staged bytes are deleted only after the part holding them is recorded. Failing here loses
 * nothing: whatever stays is deleted when the session ends.
 */
async function deleteStagedQuietly(
  context: ServiceContext,
  sessionId: string,
  keys: readonly string[],
) {
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
