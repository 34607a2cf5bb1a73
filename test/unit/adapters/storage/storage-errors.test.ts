import { DynamoDBServiceException } from "@aws-sdk/client-dynamodb";
import { S3ServiceException } from "@aws-sdk/client-s3";
import { describe, expect, it } from "vitest";
import { DynamoDbSessionStore } from "../../../../functions/adapters/dynamodb/dynamodb-session-store.ts";
import { S3ObjectStore } from "../../../../functions/adapters/s3/s3-object-store.ts";
import {
  ChecksumMismatchError,
  type ObjectStore,
  UploadGoneError,
} from "../../../../functions/ports/object-store.ts";
import { StorageError } from "../../../../functions/ports/storage-error.ts";
import { createSession, fragment } from "../../../support/calls.ts";
import { memoryService } from "../../../support/storage.ts";

/** An error as the S3 client rejects with, for an answer with this status and code. */
const s3Answer = (status: number, name: string) =>
  new S3ServiceException({
    name,
    $fault: status >= 500 ? "server" : "client",
    $metadata: { httpStatusCode: status },
    message: `${name} from the double`,
  });

/** A client double for either SDK: every `send` ends as `answer` says. */
const clientDouble = <T>(answer: (command: object) => Promise<unknown>) =>
  ({ send: answer }) as unknown as T;

const s3Over = (answer: (command: object) => Promise<unknown>) =>
  new S3ObjectStore(clientDouble(answer), "bucket");

const ALWAYS_500 = () => Promise.reject(s3Answer(500, "InternalError"));

/** Every method of the port that calls S3, with arguments that reach the call. */
const S3_CALLS: Record<string, (store: ObjectStore) => Promise<unknown>> = {
  head: (store) => store.head("k"),
  createUpload: (store) => store.createUpload("k", "owner"),
  uploadPart: (store) => store.uploadPart("k", "u", 1, new Uint8Array(3), 7),
  completeUpload: (store) =>
    store.completeUpload("k", "u", [{ etag: '"e"' }], { overwrite: true, owner: "o" }),
  abortUpload: (store) => store.abortUpload("k", "u"),
  putObject: (store) => store.putObject("k", new Uint8Array(3), { overwrite: true, owner: "o" }),
  putStaged: (store) => store.putStaged("k", new Uint8Array(3)),
  get: (store) => store.get("k"),
  readStream: (store) => store.readStream("k"),
  list: (store) => store.list("p/"),
  listPage: (store) => store.listPage("p/", { max: 5 }),
  delete: (store) => store.delete(["k"]),
  stat: (store) => store.stat("k"),
  readRange: (store) => store.readRange("k", 0, 9),
  copy: (store) => store.copy("a", "b", { overwrite: true, owner: "o" }),
};

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error("expected a rejection");
}

describe("S3ObjectStore: S3's errors stay in the adapter", () => {
  it.each(Object.keys(S3_CALLS))(
    "%s: an S3 500 surfaces as a retryable StorageError",
    async (name) => {
      const error = await rejection(
        (S3_CALLS[name] as (store: ObjectStore) => Promise<unknown>)(s3Over(ALWAYS_500)),
      );
      expect(error).toBeInstanceOf(StorageError);
      expect(error).not.toBeInstanceOf(S3ServiceException);
      expect((error as StorageError).retryable).toBe(true);
      expect((error as StorageError).cause).toBeInstanceOf(S3ServiceException);
      expect((error as StorageError).message).toMatch(/^S3 \w+ failed: InternalError \(500\)/);
    },
  );

  it("a refusal that repeating cannot fix is not retryable", async () => {
    const store = s3Over(() => Promise.reject(s3Answer(403, "AccessDenied")));
    const error = await rejection(store.putStaged("k", new Uint8Array(1)));
    expect(error).toBeInstanceOf(StorageError);
    expect((error as StorageError).retryable).toBe(false);
  });

  it("throttling and a dropped connection are retryable", async () => {
    const slowDown = await rejection(
      s3Over(() => Promise.reject(s3Answer(503, "SlowDown"))).get("k"),
    );
    expect((slowDown as StorageError).retryable).toBe(true);
    const reset = Object.assign(new Error("socket hang up"), { code: "ECONNRESET" });
    const dropped = await rejection(s3Over(() => Promise.reject(reset)).get("k"));
    expect(dropped).toBeInstanceOf(StorageError);
    expect((dropped as StorageError).retryable).toBe(true);
  });

  it("the port's own errors and answers stay what they were", async () => {
    const gone = s3Over(() => Promise.reject(s3Answer(404, "NoSuchUpload")));
    expect(await rejection(gone.uploadPart("k", "u", 1, new Uint8Array(1), 5))).toBeInstanceOf(
      UploadGoneError,
    );
    const damaged = s3Over(() => Promise.reject(s3Answer(400, "BadDigest")));
    expect(await rejection(damaged.putStaged("k", new Uint8Array(1)))).toBeInstanceOf(
      ChecksumMismatchError,
    );
    const missing = s3Over(() => Promise.reject(s3Answer(404, "NoSuchKey")));
    expect(await missing.get("k")).toBeUndefined();
    await expect(missing.abortUpload("k", "u")).resolves.toBeUndefined();
    expect(await rejection(missing.readRange("k", 5, 1))).toBeInstanceOf(RangeError);
  });

  it("a body that fails mid-stream fails with a StorageError", async () => {
    const reset = Object.assign(new Error("aborted"), { code: "ECONNRESET" });
    let pulls = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (pulls++ === 0) controller.enqueue(new Uint8Array([1, 2, 3]));
        else controller.error(reset);
      },
    });
    const store = s3Over(async () => ({
      ContentLength: 10,
      Body: { transformToWebStream: () => body },
    }));
    const read = await store.readStream("k");
    const reader = read?.stream.getReader();
    expect((await reader?.read())?.value).toEqual(new Uint8Array([1, 2, 3]));
    const error = await rejection(reader?.read() ?? Promise.resolve());
    expect(error).toBeInstanceOf(StorageError);
    expect((error as StorageError).cause).toBe(reset);
  });
});

/** An error as the DynamoDB client rejects with. */
const dynamoAnswer = (status: number, name: string, extra: object = {}) =>
  Object.assign(
    new DynamoDBServiceException({
      name,
      $fault: status >= 500 ? "server" : "client",
      $metadata: { httpStatusCode: status },
      message: `${name} from the double`,
    }),
    extra,
  );

const dynamoOver = (answer: (command: object) => Promise<unknown>) =>
  new DynamoDbSessionStore(clientDouble(answer), "table");

describe("DynamoDbSessionStore: DynamoDB's errors stay in the adapter", () => {
  it("a 500 or throttling surfaces as a retryable StorageError", async () => {
    const down = dynamoOver(() => Promise.reject(dynamoAnswer(500, "InternalServerError")));
    for (const call of [
      down.get("{S}"),
      down.openSessions(),
      down.putPartChunk("{S}", 0, ["e"]),
      down.claimKey("k", "o", 2, 1),
    ]) {
      const error = await rejection(call);
      expect(error).toBeInstanceOf(StorageError);
      expect((error as StorageError).retryable).toBe(true);
      expect((error as StorageError).cause).toBeInstanceOf(DynamoDBServiceException);
    }
    const throttled = dynamoOver(() =>
      Promise.reject(dynamoAnswer(400, "ProvisionedThroughputExceededException")),
    );
    const error = await rejection(throttled.get("{S}"));
    expect((error as StorageError).retryable).toBe(true);
  });

  it("a scan page that fails fails with a StorageError", async () => {
    const down = dynamoOver(() => Promise.reject(dynamoAnswer(503, "ServiceUnavailable")));
    const error = await rejection(down.scanPage({ max: 10 }));
    expect(error).toBeInstanceOf(StorageError);
  });

  it("a missing table is not retryable", async () => {
    const store = dynamoOver(() => Promise.reject(dynamoAnswer(400, "ResourceNotFoundException")));
    const error = await rejection(store.get("{S}"));
    expect(error).toBeInstanceOf(StorageError);
    expect((error as StorageError).retryable).toBe(false);
  });

  it("a failed condition is still an answer, not an error", async () => {
    const store = dynamoOver(() =>
      Promise.reject(dynamoAnswer(400, "ConditionalCheckFailedException")),
    );
    expect(await store.claimKey("k", "o", 2, 1)).toEqual({ ok: false, owner: "" });
    await expect(store.releaseKey("k", "o")).resolves.toBeUndefined();
  });
});

describe("what a client sees of a StorageError", () => {
  it("is what it saw of any unexpected failure: 500 with E_FAIL", async () => {
    const env = memoryService();
    const id = await createSession(env.service);
    const down = () =>
      Promise.reject(new StorageError("S3 failed", { cause: new Error("down"), retryable: true }));
    env.objects.putStaged = down;
    env.objects.uploadPart = down;
    const answer = await fragment(env.service, id, new Uint8Array(100), 0, 99);
    expect(answer.status).toBe(500);
    expect(answer.headers["BITS-Error-Code"]).toBe("0x80004005");
  });
});
