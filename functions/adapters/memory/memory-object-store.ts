import { randomUUID } from "node:crypto";
import { S3_MIN_PART_SIZE } from "../../bits/constants.ts";
import { crc32c, crc32cBase64, crc32cCombine } from "../../bits/crc32c.ts";
import {
  ChecksumMismatchError,
  type CompleteOptions,
  type Completion,
  type Head,
  MAX_PRESIGN_SECONDS,
  type ObjectBytes,
  type ObjectInfo,
  ObjectMissingError,
  type ObjectPage,
  type ObjectStat,
  type ObjectStore,
  type UploadedPart,
  UploadGoneError,
  type WriteOptions,
} from "../../ports/object-store.ts";
import { sameEtag } from "../s3/etag.ts";

interface Part {
  readonly body: Uint8Array;
  readonly etag: string;
  /** CRC32C of `body`, kept as S3 keeps a checksum with every part and object. */
  readonly crc32c: number;
}

interface StoredObject extends Part {
  readonly owner?: string | undefined;
  readonly lastModified: Date;
}

interface Upload {
  readonly key: string;
  readonly owner: string;
  readonly parts: Map<number, Part>;
}

/**
 * An ETag derived from the bytes, so that equal bytes give equal ETags, as S3's do. S3's ETag is
 * opaque to this project (only compared, never recomputed), so the fake formats the CRC32C it
 * keeps anyway and the length as 32 hex digits instead of paying for an MD5 of every part.
 */
const etagOf = (crc: number, length: number) =>
  `"${(crc >>> 0).toString(16).padStart(8, "0")}${length.toString(16).padStart(24, "0")}"`;

/** A stored object owning `body` (the caller gives up the buffer), dated like S3: whole seconds. */
const stored = (body: Uint8Array, owner?: string, crc = crc32c(body)): StoredObject => ({
  body,
  etag: etagOf(crc, body.length),
  crc32c: crc,
  owner,
  lastModified: new Date(Math.floor(Date.now() / 1000) * 1000),
});

const streamOf = (bytes: Uint8Array) =>
  new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(bytes);
      controller.close();
    },
  });

/**
 * An in-memory ObjectStore with S3's multipart rules (parts replaced by number, EntityTooSmall
 * and InvalidPart at completion, ETags that are equal for equal bytes) and S3's checksums: a
 * part whose bytes do not match the CRC32C sent with it is refused, a completion whose
 * full-object CRC32C does not match its parts is invalid, and every object reports its CRC32C.
 * Passes the same contract suite as S3ObjectStore.
 */
export class MemoryObjectStore implements ObjectStore {
  readonly objects = new Map<string, StoredObject>();
  readonly uploads = new Map<string, Upload>();

  /** `minPartBytes` is S3's 5 MiB unless a test scales the part limits down. */
  constructor(private readonly minPartBytes = S3_MIN_PART_SIZE) {}

  async head(key: string): Promise<Head | undefined> {
    const object = this.objects.get(key);
    if (object === undefined) return undefined;
    const checksum = { crc32c: crc32cBase64(object.crc32c), reportedBy: "store" as const };
    return { key, size: object.body.length, owner: object.owner, checksum };
  }

  async createUpload(key: string, owner: string) {
    const id = randomUUID();
    this.uploads.set(id, { key, owner, parts: new Map() });
    return id;
  }

  async uploadPart(
    key: string,
    uploadId: string,
    partNumber: number,
    body: Uint8Array,
    crc?: number,
  ) {
    const upload = this.uploads.get(uploadId);
    if (!upload || upload.key !== key) throw new UploadGoneError(uploadId);
    const partCrc = crc32c(body);
    const part = {
      body: new Uint8Array(body),
      etag: etagOf(partCrc, body.length),
      crc32c: partCrc,
    };
    // S3: BadDigest, and the part is not stored.
    if (crc !== undefined && crc !== part.crc32c)
      throw new ChecksumMismatchError(`part ${partNumber}`);
    upload.parts.set(partNumber, part);
    return part.etag;
  }

  async completeUpload(
    key: string,
    uploadId: string,
    parts: readonly UploadedPart[],
    { overwrite, owner, crc32c: expected, size }: CompleteOptions,
  ): Promise<Completion> {
    const existing = this.objects.get(key);
    const upload = this.uploads.get(uploadId);
    // A completion found done (its answer was lost) reports the object as it is.
    const mine = existing?.owner === owner;
    const earlier: Completion = mine
      ? { result: "completed", crc32c: crc32cBase64(existing?.crc32c ?? 0) }
      : { result: "exists" };
    if (existing && !overwrite) return earlier;
    if (!upload) return mine ? earlier : { result: "missing" };
    const bodies: Uint8Array[] = [];
    let crc = 0;
    for (const [i, { etag, crc32c: partCrc }] of parts.entries()) {
      const part = upload.parts.get(i + 1);
      // S3: InvalidPart, for a wrong ETag or a checksum that is not the part's.
      if (!part || !sameEtag(part.etag, etag)) return { result: "invalid" };
      if (partCrc !== undefined && partCrc !== part.crc32c) return { result: "invalid" };
      if (i < parts.length - 1 && part.body.length < this.minPartBytes)
        return { result: "invalid" };
      bodies.push(part.body);
      crc = crc32cCombine(crc, part.crc32c, part.body.length);
    }
    // S3 with ChecksumType FULL_OBJECT: BadDigest, and the upload stays.
    if (expected !== undefined && expected !== crc) return { result: "invalid" };
    const body = Buffer.concat(bodies);
    // S3: InvalidRequest for a wrong MpuObjectSize.
    if (size !== undefined && size !== body.length) return { result: "invalid" };
    this.objects.set(key, stored(body, upload.owner, crc));
    this.uploads.delete(uploadId);
    return { result: "completed", crc32c: crc32cBase64(crc) };
  }

  async copyToPart(from: string, key: string, uploadId: string, partNumber: number) {
    const upload = this.uploads.get(uploadId);
    if (!upload || upload.key !== key) throw new UploadGoneError(uploadId);
    const source = this.objects.get(from);
    if (!source) throw new ObjectMissingError(from);
    const part = { body: source.body, etag: source.etag, crc32c: source.crc32c };
    upload.parts.set(partNumber, part);
    return { etag: part.etag, crc32c: part.crc32c };
  }

  async abortUpload(_key: string, uploadId: string) {
    this.uploads.delete(uploadId);
  }

  async putObject(key: string, body: Uint8Array, { overwrite, owner }: WriteOptions) {
    const existing = this.objects.get(key);
    if (existing && !overwrite) return existing.owner === owner ? "stored" : "exists";
    this.objects.set(key, stored(new Uint8Array(body), owner));
    return "stored" as const;
  }

  async putStaged(key: string, body: Uint8Array, crc?: number) {
    // S3: BadDigest, and nothing is stored.
    if (crc !== undefined && crc !== crc32c(body)) throw new ChecksumMismatchError(key);
    this.objects.set(key, stored(new Uint8Array(body)));
  }

  async get(key: string) {
    const body = this.objects.get(key)?.body;
    return body && new Uint8Array(body);
  }

  async readStream(key: string) {
    const body = this.objects.get(key)?.body;
    if (body === undefined) return undefined;
    return { size: body.length, stream: streamOf(new Uint8Array(body)) };
  }

  async list(prefix: string): Promise<ObjectInfo[]> {
    return (
      [...this.objects.entries()]
        .filter(([key]) => key.startsWith(prefix))
        // S3 lists keys in the order of their UTF-8 bytes.
        .sort(([a], [b]) => Buffer.compare(Buffer.from(a), Buffer.from(b)))
        .map(([key, object]) => ({ key, size: object.body.length }))
    );
  }

  async listPage(
    prefix: string,
    { after, max = 1000 }: { after?: string | undefined; max?: number | undefined } = {},
  ): Promise<ObjectPage> {
    const from = after === undefined ? undefined : Buffer.from(after);
    const rest = (await this.list(prefix)).filter(
      ({ key }) => from === undefined || Buffer.compare(Buffer.from(key), from) > 0,
    );
    const objects = rest.slice(0, Math.max(1, Math.min(max, 1000)));
    const last = objects.at(-1)?.key;
    return { objects, next: rest.length > objects.length ? last : undefined };
  }

  async delete(keys: readonly string[]) {
    for (const key of keys) this.objects.delete(key);
  }

  async stat(key: string): Promise<ObjectStat | undefined> {
    const object = this.objects.get(key);
    return (
      object && {
        key,
        size: object.body.length,
        etag: object.etag,
        lastModified: object.lastModified,
      }
    );
  }

  async readRange(key: string, start: number, end: number): Promise<ObjectBytes | undefined> {
    if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end < start) {
      throw new RangeError(`not a byte range: ${start}-${end}`);
    }
    const body = this.objects.get(key)?.body;
    if (body === undefined) return undefined;
    if (start >= body.length) throw new RangeError(`bytes ${start}-${end} are not inside ${key}`);
    return { size: body.length, stream: streamOf(body.slice(start, end + 1)) };
  }

  async copy(from: string, to: string, { overwrite, owner }: WriteOptions) {
    const existing = this.objects.get(to);
    if (existing && !overwrite) return existing.owner === owner ? "stored" : "exists";
    const source = this.objects.get(from);
    if (!source) throw new ObjectMissingError(from);
    // Bodies are never changed in place; the checksum goes with them.
    this.objects.set(to, stored(source.body, owner, source.crc32c));
    return "stored" as const;
  }

  /** A `memory://` URL naming the object: it records what was signed but cannot be fetched. */
  async presign(key: string, method: "GET" | "PUT", seconds: number): Promise<string> {
    if (!Number.isInteger(seconds) || seconds < 1 || seconds > MAX_PRESIGN_SECONDS) {
      throw new RangeError(`presign: ${seconds} s is not between 1 and ${MAX_PRESIGN_SECONDS}`);
    }
    const expires = Math.floor(Date.now() / 1000) + seconds;
    return `memory://object/${encodeURIComponent(key)}?method=${method}&expires=${expires}`;
  }
}
