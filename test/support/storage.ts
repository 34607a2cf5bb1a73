import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { ScanCommand } from "@aws-sdk/client-dynamodb";
import { ListObjectsV2Command, ListPartsCommand, UploadPartCommand } from "@aws-sdk/client-s3";
import { inject } from "vitest";
import { DynamoDbSessionStore } from "../../functions/adapters/dynamodb/dynamodb-session-store.ts";
import { fromItem } from "../../functions/adapters/dynamodb/session-item.ts";
import { MemoryObjectStore } from "../../functions/adapters/memory/memory-object-store.ts";
import { MemorySessionStore } from "../../functions/adapters/memory/memory-session-store.ts";
import { S3ObjectStore } from "../../functions/adapters/s3/s3-object-store.ts";
import type { Authenticator } from "../../functions/auth/types.ts";
import { MAX_ASSEMBLED_BYTES, MiB } from "../../functions/bits/constants.ts";
import type { SessionRecord } from "../../functions/bits/session.ts";
import type { Notifier } from "../../functions/ports/notifier.ts";
import type { ObjectStore } from "../../functions/ports/object-store.ts";
import type { Runtime } from "../../functions/ports/runtime.ts";
import type { SessionStore } from "../../functions/ports/session-store.ts";
import type { ServiceContext, ServiceSettings } from "../../functions/service/context.ts";
import { createUploadService } from "../../functions/service/upload-service.ts";
import { WarmCache } from "../../functions/service/warm-cache.ts";
import { newSessionId } from "../../functions/wiring.ts";
import {
  createBucket,
  createSessionTable,
  motoS3,
  type StandInKind,
  standInDynamoDb,
  standInS3,
} from "../../infra/stand-ins.ts";

export type { StandInKind };

/**
 * The emulations every storage suite runs on: fauxqs with DynamoDB Local, and moto
 * (docs/platform.md, "Two emulations"). For `describe.each`.
 */
export const STAND_INS: readonly StandInKind[] = ["fauxqs", "moto"];

type Clients = { s3: ReturnType<typeof standInS3>; dynamodb: ReturnType<typeof standInDynamoDb> };
const shared = new Map<StandInKind, Clients>();

/**
 * SDK clients for the stand-ins started by the global setup, one pair per kind and test
 * worker: fauxqs and DynamoDB Local (the default), or moto for both.
 */
export function standInClients(kind: StandInKind = "fauxqs"): Clients {
  let clients = shared.get(kind);
  if (clients === undefined) {
    clients =
      kind === "moto"
        ? {
            s3: motoS3(inject("motoEndpoint")),
            dynamodb: standInDynamoDb(inject("motoEndpoint")),
          }
        : {
            s3: standInS3(inject("s3Endpoint")),
            dynamodb: standInDynamoDb(inject("dynamodbEndpoint")),
          };
    shared.set(kind, clients);
  }
  return clients;
}

export interface RealStorage {
  readonly bucket: string;
  readonly table: string;
  readonly objects: S3ObjectStore;
  readonly sessions: DynamoDbSessionStore;
  readonly standIn: StandInKind;
}

/**
 * A new bucket and table on the real stand-ins, so test files never see each other's data.
 * The store is built as the local server builds it for that stand-in (functions/wiring.ts):
 * fauxqs's checksum workaround on fauxqs only.
 */
export async function freshStorage(standIn: StandInKind = "fauxqs"): Promise<RealStorage> {
  const { s3, dynamodb } = standInClients(standIn);
  const name = freshName();
  await Promise.all([createBucket(s3, name), createSessionTable(dynamodb, name)]);
  return {
    bucket: name,
    table: name,
    objects: new S3ObjectStore(s3, name, { fauxqsChecksums: standIn === "fauxqs" }),
    sessions: new DynamoDbSessionStore(dynamodb, name),
    standIn,
  };
}

/** A bucket or table name no other test uses. */
const freshName = () => `t-${randomUUID().slice(0, 8)}`;

/** A new session table only (with its stream), by name. */
export async function freshTable(standIn: StandInKind = "fauxqs"): Promise<string> {
  const name = freshName();
  await createSessionTable(standInClients(standIn).dynamodb, name);
  return name;
}

/**
 * A new table only, for suites of the session store alone: a bucket they would not use costs a
 * CreateBucket on the stand-in.
 */
export async function freshSessionStore(
  standIn: StandInKind = "fauxqs",
): Promise<DynamoDbSessionStore> {
  return new DynamoDbSessionStore(standInClients(standIn).dynamodb, await freshTable(standIn));
}

/**
 * A new bucket only, for suites of the object store alone: a table they would not use costs a
 * CreateTable, DynamoDB Local's slowest call.
 */
export async function freshBucket(standIn: StandInKind = "fauxqs"): Promise<string> {
  const name = freshName();
  await createBucket(standInClients(standIn).s3, name);
  return name;
}

export const STAGING_PREFIX = ".bits-staging/";

export function testSettings(overrides: Partial<ServiceSettings> = {}): ServiceSettings {
  return {
    keyPrefix: "",
    uploadPaths: ["/"],
    stagingPrefix: STAGING_PREFIX,
    limits: {
      maxFragmentBytes: MiB,
      maxUploadBytes: 1024 ** 4,
      partSize: 5 * MiB,
      maxAssembledBytes: MAX_ASSEMBLED_BYTES,
    },
    allowOverwrite: false,
    sessionTimeoutSeconds: 1_209_600,
    tombstoneSeconds: 86_400,
    caps: { perSlot: 1_000, total: 100_000 },
    maxFragmentsPerMiB: 512,
    principalPrefix: "",
    overwritePrincipals: [],
    bucket: "test",
    notifications: [],
    notificationTimeoutMs: 10_000,
    maxReplyBytes: 64 * MiB,
    replyPath: "/.bits-replies",
    maxResponseBody: 700_000,
    ...overrides,
  };
}

/** A runtime whose clock tests can move. */
export function testRuntime(start = Date.now()) {
  let now = start;
  const runtime: Runtime & { advance(ms: number): void } = {
    now: () => now,
    newSessionId,
    // Real time, as before the clock was injected here: a waiting copy of a request must not
    // see a lease expire while the one holding it is still at work. Tests that drive time
    // replace it.
    sleep: async (ms) => sleep(ms),
    log: () => {},
    advance(ms) {
      now += ms;
    },
  };
  return runtime;
}

/**
 * A service over the given stores. Like a warm Lambda instance or the local server, each one
 * has its own WarmCache (`warm: false`, like `cacheBytes: 0`, for an instance that remembers
 * nothing).
 */
export function serviceOver(
  sessions: SessionStore,
  objects: ObjectStore,
  settings: Partial<ServiceSettings> = {},
  {
    warm = true,
    authenticator,
    cacheBytes = 64 * MiB,
    notifier,
  }: {
    warm?: boolean;
    authenticator?: Authenticator;
    cacheBytes?: number;
    notifier?: Notifier;
  } = {},
) {
  const runtime = testRuntime();
  const context: ServiceContext = {
    sessions,
    objects,
    runtime,
    settings: testSettings(settings),
    cache: warm && cacheBytes > 0 ? new WarmCache(cacheBytes) : undefined,
    notifier,
  };
  return { context, runtime, service: createUploadService(context, authenticator) };
}

export async function realService(
  settings: Partial<ServiceSettings> = {},
  { standIn, ...options }: Parameters<typeof serviceOver>[3] & { standIn?: StandInKind } = {},
) {
  const storage = await freshStorage(standIn);
  const all = { bucket: storage.bucket, ...settings };
  return { ...storage, ...serviceOver(storage.sessions, storage.objects, all, options) };
}

export function memoryService(settings: Partial<ServiceSettings> = {}) {
  const objects = new MemoryObjectStore();
  const sessions = new MemorySessionStore();
  return { objects, sessions, ...serviceOver(sessions, objects, settings) };
}

/** Every key in a bucket. */
export async function bucketKeys(bucket: string, standIn?: StandInKind): Promise<string[]> {
  const { s3 } = standInClients(standIn);
  const keys: string[] = [];
  let token: string | undefined;
  do {
    const out = await s3.send(
      new ListObjectsV2Command({ Bucket: bucket, ...(token ? { ContinuationToken: token } : {}) }),
    );
    keys.push(...(out.Contents ?? []).flatMap((item) => (item.Key ? [item.Key] : [])));
    token = out.IsTruncated ? out.NextContinuationToken : undefined;
  } while (token);
  return keys.sort();
}

/** Every item in a table: session records (and anything else, as raw primary keys). */
export async function tableItems(table: string, standIn?: StandInKind) {
  const { dynamodb } = standInClients(standIn);
  const out = await dynamodb.send(new ScanCommand({ TableName: table, ConsistentRead: true }));
  const records: SessionRecord[] = [];
  const others: string[] = [];
  /** Open-session counters (docs/security.md, Caps), by slot; "" is the whole count. */
  const counters = new Map<string, number>();
  for (const item of out.Items ?? []) {
    const pk = item.pk?.S ?? "";
    if (pk.startsWith("S#")) records.push(fromItem(item));
    else if (pk === "N" || pk.startsWith("N#")) counters.set(pk.slice(2), Number(item.n?.N ?? 0));
    else if (!pk.startsWith("X#")) others.push(pk);
  }
  return { records, others, counters };
}

/**
 * True when S3 no longer knows the multipart upload (completed or aborted). Asked with
 * ListParts where the stand-in has it (moto, which answers an UploadPart to a gone upload with
 * 500 rather than NoSuchUpload), with an UploadPart on fauxqs, which has no ListParts.
 */
export async function uploadIsGone(
  bucket: string,
  key: string,
  uploadId: string,
  standIn?: StandInKind,
) {
  const { s3 } = standInClients(standIn);
  const input = { Bucket: bucket, Key: key, UploadId: uploadId };
  try {
    if (standIn === "moto") await s3.send(new ListPartsCommand(input));
    else await s3.send(new UploadPartCommand({ ...input, PartNumber: 1, Body: new Uint8Array(1) }));
    return false;
  } catch (error) {
    return (error as { name?: string }).name === "NoSuchUpload";
  }
}
