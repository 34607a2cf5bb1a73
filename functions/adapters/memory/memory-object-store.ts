import { randomUUID } from "node:crypto";
import { S3_MIN_PART_SIZE } from "../../bits/constants.ts";
import type { CompleteResult, ObjectInfo, ObjectStore } from "../../ports/object-store.ts";
import { md5, multipartEtag, sameEtag } from "../s3/etag.ts";

interface StoredObject {
  readonly body: Uint8Array;
  readonly etag: string;
}

interface Upload {
  readonly key: string;
  readonly parts: Map<number, StoredObject>;
}

const etagOf = (body: Uint8Array) => `"${md5(body).toString("hex")}"`;

/**
 * An in-memory ObjectStore with S3's multipart rules (parts replaced by number, EntityTooSmall
 * and InvalidPart at completion, MD5 ETags). Passes the same contract suite as S3ObjectStore.
 */
export class MemoryObjectStore implements ObjectStore {
  readonly objects = new Map<string, StoredObject>();
  readonly uploads = new Map<string, Upload>();

  async head(key: string) {
    const object = this.objects.get(key);
    return object && { key, size: object.body.length, etag: object.etag };
  }

  async createUpload(key: string) {
    const id = randomUUID();
    this.uploads.set(id, { key, parts: new Map() });
    return id;
  }

  async uploadPart(key: string, uploadId: string, partNumber: number, body: Uint8Array) {
    const upload = this.uploads.get(uploadId);
    if (!upload || upload.key !== key) throw new Error("NoSuchUpload");
    const part = { body: body.slice(), etag: etagOf(body) };
    upload.parts.set(partNumber, part);
    return part.etag;
  }

  async completeUpload(
    key: string,
    uploadId: string,
    etags: readonly string[],
    overwrite: boolean,
  ): Promise<CompleteResult> {
    const expected = multipartEtag(etags);
    const existing = this.objects.get(key);
    const upload = this.uploads.get(uploadId);
    if (!upload) return existing && sameEtag(existing.etag, expected) ? "completed" : "missing";
    if (existing && !overwrite) return sameEtag(existing.etag, expected) ? "completed" : "exists";
    const bodies = etags.map((etag, i) => {
      const part = upload.parts.get(i + 1);
      if (!part || !sameEtag(part.etag, etag)) throw new Error("InvalidPart");
      if (i < etags.length - 1 && part.body.length < S3_MIN_PART_SIZE) {
        throw new Error("EntityTooSmall");
      }
      return part.body;
    });
    this.objects.set(key, {
      body: Buffer.concat(bodies),
      etag: expected ?? etagOf(new Uint8Array()),
    });
    this.uploads.delete(uploadId);
    return "completed";
  }

  async abortUpload(_key: string, uploadId: string) {
    this.uploads.delete(uploadId);
  }

  async put(key: string, body: Uint8Array, overwrite: boolean) {
    const existing = this.objects.get(key);
    if (existing && !overwrite) {
      return existing.body.length === 0 && body.length === 0 ? "stored" : "exists";
    }
    this.objects.set(key, { body: body.slice(), etag: etagOf(body) });
    return "stored" as const;
  }

  async get(key: string) {
    return this.objects.get(key)?.body.slice();
  }

  async read(key: string) {
    const body = this.objects.get(key)?.body;
    if (body === undefined) return undefined;
    const stream = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(body.slice());
        controller.close();
      },
    });
    return { size: body.length, stream };
  }

  async list(prefix: string): Promise<ObjectInfo[]> {
    return [...this.objects.entries()]
      .filter(([key]) => key.startsWith(prefix))
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([key, object]) => ({ key, size: object.body.length }));
  }

  async delete(keys: readonly string[]) {
    for (const key of keys) this.objects.delete(key);
  }
}
