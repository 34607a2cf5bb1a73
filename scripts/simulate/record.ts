/**
 * Records what the real handlers ask of S3 and DynamoDB for each kind of request, so the fleet
 * simulation costs requests in this server's own calls (docs/capacity.md, "The model"). The
 * upload service runs in-process over the real adapters and SDK clients; middleware on the
 * clients notes every command, which items and key prefixes it touched, and the request units
 * DynamoDB bills for it.
 */
import type { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import type { S3Client } from "@aws-sdk/client-s3";
import { DynamoDbSessionStore } from "../../functions/adapters/dynamodb/dynamodb-session-store.ts";
import { S3ObjectStore } from "../../functions/adapters/s3/s3-object-store.ts";
import { BITS_PROTOCOL_GUID, MAX_ASSEMBLED_BYTES, MiB } from "../../functions/bits/constants.ts";
import { headerMap } from "../../functions/bits/request.ts";
import type { ServiceSettings } from "../../functions/service/context.ts";
import { createUploadService } from "../../functions/service/upload-service.ts";
import { newSessionId } from "../../functions/wiring.ts";
import { FRONT_DOORS, type FrontDoor, fragmentClass, type RequestClass } from "./model.ts";

/** DynamoDB items by role, as the session store names their keys (session-item.ts). */
export type ItemRole = "session" | "slotCounter" | "allCounter" | "chunk" | "claim" | "marker";

/** What one kind of request costs, on average per request. */
export interface ClassCost {
  readonly requests: number;
  readonly dynamodb: {
    readonly calls: number;
    readonly readUnits: number;
    readonly writeUnits: number;
    /** Write units per item role: the counters are the items that many requests share. */
    readonly writesByItem: Partial<Record<ItemRole, number>>;
  };
  readonly s3: {
    /** PUT-class requests under the session's staging prefix, and under the destination's. */
    readonly stagingPuts: number;
    readonly destinationPuts: number;
    /** GET-class requests (GET, HEAD) under each. */
    readonly stagingGets: number;
    readonly destinationGets: number;
    readonly deletes: number;
  };
}

export type ClassCosts = Record<RequestClass, ClassCost>;

interface Tally {
  requests: number;
  ddbCalls: number;
  readUnits: number;
  writeUnits: number;
  writesByItem: Partial<Record<ItemRole, number>>;
  stagingPuts: number;
  destinationPuts: number;
  stagingGets: number;
  destinationGets: number;
  deletes: number;
}

const emptyTally = (): Tally => ({
  requests: 0,
  ddbCalls: 0,
  readUnits: 0,
  writeUnits: 0,
  writesByItem: {},
  stagingPuts: 0,
  destinationPuts: 0,
  stagingGets: 0,
  destinationGets: 0,
  deletes: 0,
});

export function itemRole(pk: string): ItemRole {
  if (pk.startsWith("S#")) return "session";
  if (pk.startsWith("P#")) return "chunk";
  if (pk.startsWith("K#")) return "claim";
  if (pk.startsWith("X#")) return "marker";
  if (pk.startsWith("N#")) return "slotCounter";
  return pk.startsWith("N") ? "allCounter" : "marker";
}

type Attr = Record<string, Record<string, unknown>>;

/** Billed size of an item: attribute names plus values (DynamoDB's item size rules, roughly). */
function itemBytes(item: Attr | undefined): number {
  let bytes = 0;
  for (const [name, value] of Object.entries(item ?? {})) {
    bytes += name.length;
    for (const inner of Object.values(value)) bytes += String(inner).length;
  }
  return bytes;
}

const pkOf = (item: Attr | undefined) => String(item?.pk?.S ?? "");
const writeUnits = (item: Attr | undefined) => Math.max(1, Math.ceil(itemBytes(item) / 1024));

// biome-ignore lint/suspicious/noExplicitAny: one middleware shape serves both SDK clients.
type Middleware = (next: any, context: { commandName?: string }) => (args: any) => Promise<any>;

const S3_GET_CLASS = new Set(["GetObjectCommand", "HeadObjectCommand"]);
const S3_FREE = new Set([
  "DeleteObjectCommand",
  "DeleteObjectsCommand",
  "AbortMultipartUploadCommand",
]);

/** Adds the recording middleware; `into()` names the tally the next calls are counted in. */
function recorder(s3: S3Client, dynamodb: DynamoDBClient, stagingPrefix: string) {
  let tally = emptyTally();
  const write = (role: ItemRole, units: number) => {
    tally.writeUnits += units;
    tally.writesByItem[role] = (tally.writesByItem[role] ?? 0) + units;
  };
  const s3Counter: Middleware = (next, context) => async (args) => {
    const name = context.commandName ?? "";
    const input = args.input as { Key?: string; Prefix?: string };
    const staging = (input.Key ?? input.Prefix ?? "").startsWith(stagingPrefix);
    if (S3_FREE.has(name)) tally.deletes += 1;
    else if (S3_GET_CLASS.has(name)) {
      if (staging) tally.stagingGets += 1;
      else tally.destinationGets += 1;
    } else if (staging) tally.stagingPuts += 1;
    else tally.destinationPuts += 1;
    return next(args);
  };
  const dynamodbCounter: Middleware = (next, context) => async (args) => {
    const name = context.commandName ?? "";
    const input = args.input as {
      Item?: Attr;
      Key?: Attr;
      TransactItems?: { Put?: { Item: Attr }; Update?: { Key: Attr }; Delete?: { Key: Attr } }[];
      RequestItems?: Record<string, { DeleteRequest?: { Key: Attr } }[] | { Keys?: Attr[] }>;
    };
    tally.ddbCalls += 1;
    const result = await next(args);
    if (name === "GetItemCommand") {
      const item = (result.output as { Item?: Attr }).Item;
      tally.readUnits += Math.max(1, Math.ceil(itemBytes(item) / 4096));
    } else if (name === "PutItemCommand") {
      write(itemRole(pkOf(input.Item)), writeUnits(input.Item));
    } else if (name === "DeleteItemCommand" || name === "UpdateItemCommand") {
      write(itemRole(pkOf(input.Key)), 1);
    } else if (name === "TransactWriteItemsCommand") {
      // A transaction bills two write units per KB of each item it writes.
      for (const action of input.TransactItems ?? []) {
        const item = action.Put?.Item;
        const key = item ?? action.Update?.Key ?? action.Delete?.Key;
        write(itemRole(pkOf(key)), 2 * writeUnits(item));
      }
    } else if (name === "BatchWriteItemCommand") {
      for (const requests of Object.values(input.RequestItems ?? {})) {
        for (const request of Array.isArray(requests) ? requests : []) {
          write(itemRole(pkOf(request.DeleteRequest?.Key)), 1);
        }
      }
    } else if (name === "BatchGetItemCommand") {
      for (const requests of Object.values(input.RequestItems ?? {})) {
        tally.readUnits += Array.isArray(requests) ? 0 : (requests.Keys?.length ?? 0);
      }
    }
    return result;
  };
  s3.middlewareStack.add(s3Counter, { step: "initialize", name: "fleetRecorder" });
  dynamodb.middlewareStack.add(dynamodbCounter as never, {
    step: "initialize",
    name: "fleetRecorder",
  });
  return {
    take(): Tally {
      const taken = tally;
      tally = emptyTally();
      return taken;
    },
    remove() {
      s3.middlewareStack.remove("fleetRecorder");
      dynamodb.middlewareStack.remove("fleetRecorder");
    },
  };
}

const STAGING_PREFIX = ".bits-staging/";

/** The deployed defaults that shape the calls (serverless.yml params), for a front door. */
export function recordingSettings(door: FrontDoor, bucket: string): ServiceSettings {
  return {
    keyPrefix: "uploads/",
    uploadPaths: ["/"],
    stagingPrefix: STAGING_PREFIX,
    limits: {
      maxFragmentBytes: FRONT_DOORS[door].serverMaxFragment,
      maxUploadBytes: 10 * 1024 * MiB,
      partSize: 8 * MiB,
      maxAssembledBytes: MAX_ASSEMBLED_BYTES,
    },
    allowOverwrite: false,
    sessionTimeoutSeconds: 1_209_600,
    tombstoneSeconds: 86_400,
    caps: { perSlot: 1_000_000, total: 1_000_000 },
    maxFragmentsPerMiB: 512,
    principalPrefix: "",
    overwritePrincipals: [],
    bucket,
    notifications: [],
    notificationTimeoutMs: 10_000,
    maxReplyBytes: 64 * MiB,
    replyPath: "/.bits-replies",
    maxResponseBody: 700_000,
  };
}

/**
 * Uploads one file of `fileBytes` as a Windows client does behind `door` (fragments that
 * double from 5 KB up to what the front door passes) and returns the calls per request class.
 * No instance cache: behind a load balancer a fleet's consecutive fragments rarely meet the
 * same warm instance, so every staged byte is read back from S3.
 */
export async function recordUpload(
  clients: { s3: S3Client; dynamodb: DynamoDBClient },
  storage: { bucket: string; table: string },
  door: FrontDoor,
  fileBytes: number,
): Promise<ClassCosts> {
  const settings = recordingSettings(door, storage.bucket);
  const service = createUploadService({
    sessions: new DynamoDbSessionStore(clients.dynamodb, storage.table),
    objects: new S3ObjectStore(clients.s3, storage.bucket),
    runtime: {
      now: () => Date.now(),
      newSessionId,
      log: () => {},
      sleep: (ms: number) => new Promise((resolve) => setTimeout(resolve, ms)),
    },
    settings,
  });
  const meter = recorder(clients.s3, clients.dynamodb, STAGING_PREFIX);
  const tallies = new Map<RequestClass, Tally>();
  const send = async (cls: RequestClass, headers: Record<string, string>, body?: Uint8Array) => {
    const data = body ?? new Uint8Array(0);
    const response = await service.handle({
      method: "BITS_POST",
      path: `/fleet/${door}.bin`,
      headers: headerMap(Object.entries({ "Content-Length": String(data.length), ...headers })),
      body: data,
    });
    const spent = meter.take();
    if (response.status !== 200) throw new Error(`${cls} answered ${response.status}`);
    const into = tallies.get(cls) ?? emptyTally();
    into.requests += 1;
    into.ddbCalls += spent.ddbCalls;
    into.readUnits += spent.readUnits;
    into.writeUnits += spent.writeUnits;
    for (const [role, units] of Object.entries(spent.writesByItem) as [ItemRole, number][]) {
      into.writesByItem[role] = (into.writesByItem[role] ?? 0) + units;
    }
    into.stagingPuts += spent.stagingPuts;
    into.destinationPuts += spent.destinationPuts;
    into.stagingGets += spent.stagingGets;
    into.destinationGets += spent.destinationGets;
    into.deletes += spent.deletes;
    tallies.set(cls, into);
    return response;
  };
  try {
    const created = await send("create", {
      "BITS-Packet-Type": "Create-Session",
      "BITS-Supported-Protocols": BITS_PROTOCOL_GUID,
    });
    const id = created.headers["BITS-Session-Id"] ?? "";
    const file = new Uint8Array(fileBytes).map((_, i) => (i * 31) & 0xff);
    const passes = FRONT_DOORS[door].bodyLimit;
    for (let offset = 0, size = 5 * 1024; offset < fileBytes; ) {
      const length = Math.min(size, fileBytes - offset);
      const end = offset + length;
      await send(
        fragmentClass(offset, end, fileBytes, settings.limits.partSize),
        {
          "BITS-Packet-Type": "Fragment",
          "BITS-Session-Id": id,
          "Content-Range": `bytes ${offset}-${end - 1}/${fileBytes}`,
        },
        file.subarray(offset, end),
      );
      offset = end;
      if (size * 2 <= passes) size *= 2;
    }
    await send("close", { "BITS-Packet-Type": "Close-Session", "BITS-Session-Id": id });
  } finally {
    meter.remove();
  }
  const costs = {} as Record<RequestClass, ClassCost>;
  for (const [cls, t] of tallies) {
    const per = (value: number) => Math.round((value / t.requests) * 100) / 100;
    costs[cls] = {
      requests: t.requests,
      dynamodb: {
        calls: per(t.ddbCalls),
        readUnits: per(t.readUnits),
        writeUnits: per(t.writeUnits),
        writesByItem: Object.fromEntries(
          Object.entries(t.writesByItem).map(([role, units]) => [role, per(units)]),
        ),
      },
      s3: {
        stagingPuts: per(t.stagingPuts),
        destinationPuts: per(t.destinationPuts),
        stagingGets: per(t.stagingGets),
        destinationGets: per(t.destinationGets),
        deletes: per(t.deletes),
      },
    };
  }
  return costs;
}
