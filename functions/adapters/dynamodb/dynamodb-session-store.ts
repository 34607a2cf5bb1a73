import {
  type AttributeValue,
  BatchGetItemCommand,
  BatchWriteItemCommand,
  DeleteItemCommand,
  type DynamoDBClient,
  GetItemCommand,
  PutItemCommand,
  ScanCommand,
  type TransactWriteItem,
  TransactWriteItemsCommand,
} from "@aws-sdk/client-dynamodb";
import type { SessionRecord } from "../../bits/session.ts";
import type {
  ClaimResult,
  CreateResult,
  ReplaceResult,
  ScanPage,
  SessionCaps,
  SessionStore,
  StoredItem,
} from "../../ports/session-store.ts";
import { translated } from "../storage-failure.ts";
import {
  allCounterKey,
  chunkKey,
  claimKey,
  counterShard,
  fromItem,
  joinEtags,
  parseChunkKey,
  releasedKey,
  SWEEP_POSITION,
  sessionKey,
  slotKey,
  splitEtags,
  toItem,
} from "./session-item.ts";

const isConditionFailure = (error: unknown) =>
  (error as { name?: string }).name === "ConditionalCheckFailedException";

type Reason = { Code?: string; Item?: Record<string, AttributeValue> };

/** Why a transaction was cancelled, one reason per action; undefined for other errors. */
function cancellation(error: unknown): Reason[] | undefined {
  const e = error as { name?: string; CancellationReasons?: Reason[] };
  return e.name === "TransactionCanceledException" ? (e.CancellationReasons ?? []) : undefined;
}

/** The session store's port names no errors of its own: every failure is a StorageError. */
const passNone = () => false;

/** Transactions touching the same counter at once conflict; they are simply tried again. */
const MAX_CONFLICT_RETRIES = 8;

/** How long a release marker is kept: longer than the stream retries a batch (docs/security.md). */
const RELEASE_MARKER_SECONDS = 7 * 86_400;

/**
 * SessionStore on one DynamoDB table (partition key `pk`, TTL on `exp`). Every change is a
 * conditional PutItem on the version read; a failed condition returns the item as it is now
 * (ReturnValuesOnConditionCheckFailure), so the loser re-decides without another read.
 *
 * Open sessions are counted exactly per slot. The count of all is spread over `counterShards`
 * items, so that no single item takes every create and close (one item serves about 1,000
 * write units a second, and transactions on it conflict long before): a session is counted in
 * the shard its ID hashes to, each shard capped at its share of the total. The sum of the
 * shards is exact; the cap is reached when the session's shard is full, so with several shards
 * it refuses a little before `total` (docs/capacity.md, "Counters").
 */
export class DynamoDbSessionStore implements SessionStore {
  private readonly shards: number;

  constructor(
    private readonly client: DynamoDBClient,
    private readonly table: string,
    options: { readonly counterShards?: number | undefined } = {},
  ) {
    this.shards = Math.max(1, Math.floor(options.counterShards ?? 1));
  }

  /** The counter of all that `id` is counted in. */
  private allCounter(id: string): string {
    return allCounterKey(counterShard(id, this.shards));
  }

  get(id: string): Promise<SessionRecord | undefined> {
    return translated("DynamoDB GetItem", passNone, async () => {
      const out = await this.client.send(
        new GetItemCommand({
          TableName: this.table,
          Key: { pk: { S: sessionKey(id) } },
          ConsistentRead: true,
        }),
      );
      return out.Item ? fromItem(out.Item) : undefined;
    });
  }

  /**
   * One transaction: the record (if the ID is free) and the two counters (if below their caps).
   * Nothing is half-created: a refused cap leaves no record, a taken ID counts nothing.
   */
  create(record: SessionRecord, caps: SessionCaps): Promise<CreateResult> {
    return translated("DynamoDB TransactWriteItems", passNone, async () => {
      const items: TransactWriteItem[] = [
        {
          Put: {
            TableName: this.table,
            Item: toItem(record),
            ConditionExpression: "attribute_not_exists(pk)",
          },
        },
        this.count(slotKey(record.slot), 1, caps.perSlot),
        this.count(this.allCounter(record.id), 1, Math.ceil(caps.total / this.shards)),
      ];
      const reasons = await this.transact(items);
      if (reasons === undefined) return "created";
      const failed = (i: number) => reasons[i]?.Code === "ConditionalCheckFailed";
      if (failed(0)) return "taken";
      if (failed(1)) return "slot-full";
      if (failed(2)) return "server-full";
      throw new Error(`session creation cancelled: ${reasons.map((r) => r.Code).join(",")}`);
    });
  }

  replace(
    record: SessionRecord,
    expectedVersion: number,
    options: { readonly release?: boolean } = {},
  ): Promise<ReplaceResult> {
    return translated("DynamoDB PutItem", passNone, async () => {
      if (options.release) return this.replaceAndRelease(record, expectedVersion);
      try {
        await this.client.send(
          new PutItemCommand({
            TableName: this.table,
            Item: toItem(record),
            ConditionExpression: "ver = :v",
            ExpressionAttributeValues: { ":v": { N: String(expectedVersion) } },
            ReturnValuesOnConditionCheckFailure: "ALL_OLD",
          }),
        );
        return { ok: true };
      } catch (error) {
        if (!isConditionFailure(error)) throw error;
        const item = (error as { Item?: Record<string, AttributeValue> }).Item;
        return { ok: false, current: item ? fromItem(item) : undefined };
      }
    });
  }

  private async replaceAndRelease(
    record: SessionRecord,
    expectedVersion: number,
  ): Promise<ReplaceResult> {
    const reasons = await this.transact([
      {
        Put: {
          TableName: this.table,
          Item: toItem(record),
          ConditionExpression: "ver = :v",
          ExpressionAttributeValues: { ":v": { N: String(expectedVersion) } },
          ReturnValuesOnConditionCheckFailure: "ALL_OLD",
        },
      },
      this.count(slotKey(record.slot), -1),
      this.count(this.allCounter(record.id), -1),
    ]);
    if (reasons === undefined) return { ok: true };
    if (reasons[0]?.Code !== "ConditionalCheckFailed") {
      throw new Error(`session release cancelled: ${reasons.map((r) => r.Code).join(",")}`);
    }
    const item = reasons[0].Item;
    return { ok: false, current: item ? fromItem(item) : await this.get(record.id) };
  }

  /** A marker item makes the release happen once, however often the stream delivers it. */
  releaseRemoved(record: SessionRecord): Promise<void> {
    return translated("DynamoDB TransactWriteItems", passNone, async () => {
      const expires = Math.floor(Date.now() / 1000) + RELEASE_MARKER_SECONDS;
      await this.transact([
        {
          Put: {
            TableName: this.table,
            Item: { pk: { S: releasedKey(record.id) }, exp: { N: String(expires) } },
            ConditionExpression: "attribute_not_exists(pk)",
          },
        },
        this.count(slotKey(record.slot), -1),
        this.count(this.allCounter(record.id), -1),
      ]);
    });
  }

  openSessions(slot?: string): Promise<number> {
    if (slot !== undefined) return this.counter(slotKey(slot));
    return translated("DynamoDB BatchGetItem", passNone, async () => {
      let keys = Array.from({ length: this.shards }, (_, i) => ({ pk: { S: allCounterKey(i) } }));
      let total = 0;
      for (let round = 0; keys.length > 0; round++) {
        if (round > 20) throw new Error("BatchGetItem kept leaving keys unprocessed");
        const out = await this.client.send(
          new BatchGetItemCommand({
            RequestItems: { [this.table]: { Keys: keys, ConsistentRead: true } },
          }),
        );
        for (const item of out.Responses?.[this.table] ?? []) total += Number(item.n?.N ?? 0);
        keys = (out.UnprocessedKeys?.[this.table]?.Keys ?? []) as typeof keys;
        if (keys.length > 0) await backoff(round);
      }
      return total;
    });
  }

  private counter(pk: string): Promise<number> {
    return translated("DynamoDB GetItem", passNone, async () => {
      const out = await this.client.send(
        new GetItemCommand({ TableName: this.table, Key: { pk: { S: pk } }, ConsistentRead: true }),
      );
      return Number(out.Item?.n?.N ?? 0);
    });
  }

  claimKey(key: string, owner: string, expiresAt: number, now: number): Promise<ClaimResult> {
    return translated("DynamoDB PutItem", passNone, async () => {
      try {
        await this.client.send(
          new PutItemCommand({
            TableName: this.table,
            Item: {
              pk: { S: claimKey(key) },
              owner: { S: owner },
              exp: { N: String(expiresAt) },
            },
            ConditionExpression: "attribute_not_exists(pk) OR #o = :me OR #e < :now",
            ExpressionAttributeNames: { "#o": "owner", "#e": "exp" },
            ExpressionAttributeValues: { ":me": { S: owner }, ":now": { N: String(now) } },
            ReturnValuesOnConditionCheckFailure: "ALL_OLD",
          }),
        );
        return { ok: true };
      } catch (error) {
        if (!isConditionFailure(error)) throw error;
        const item = (error as { Item?: Record<string, AttributeValue> }).Item;
        return { ok: false, owner: item?.owner?.S ?? "" };
      }
    });
  }

  releaseKey(key: string, owner: string): Promise<void> {
    return translated("DynamoDB DeleteItem", passNone, async () => {
      try {
        await this.client.send(
          new DeleteItemCommand({
            TableName: this.table,
            Key: { pk: { S: claimKey(key) } },
            ConditionExpression: "#o = :me",
            ExpressionAttributeNames: { "#o": "owner" },
            ExpressionAttributeValues: { ":me": { S: owner } },
          }),
        );
      } catch (error) {
        if (!isConditionFailure(error)) throw error;
      }
    });
  }

  /** An update of a counter item; with `max`, only while the counter is below it. */
  private count(pk: string, delta: number, max?: number): TransactWriteItem {
    return {
      Update: {
        TableName: this.table,
        Key: { pk: { S: pk } },
        UpdateExpression: "ADD n :d",
        ...(max === undefined
          ? { ExpressionAttributeValues: { ":d": { N: String(delta) } } }
          : {
              ConditionExpression: "attribute_not_exists(n) OR n < :max",
              ExpressionAttributeValues: {
                ":d": { N: String(delta) },
                ":max": { N: String(max) },
              },
            }),
      },
    };
  }

  /**
   * Runs a transaction; undefined when it succeeded, else the reasons it was cancelled for a
   * failed condition. Conflicts with concurrent transactions on a counter are retried.
   */
  private async transact(items: TransactWriteItem[]): Promise<Reason[] | undefined> {
    for (let round = 0; ; round++) {
      try {
        await this.client.send(new TransactWriteItemsCommand({ TransactItems: items }));
        return undefined;
      } catch (error) {
        const reasons = cancellation(error);
        const conflict =
          (error as { name?: string }).name === "TransactionConflictException" ||
          reasons?.some((reason) => reason.Code === "TransactionConflict");
        if (conflict && round < MAX_CONFLICT_RETRIES) {
          await backoff(round, true);
          continue;
        }
        if (reasons === undefined || conflict) throw error;
        return reasons;
      }
    }
  }

  putPartChunk(id: string, index: number, etags: readonly string[]): Promise<void> {
    return translated("DynamoDB PutItem", passNone, async () => {
      await this.client.send(
        new PutItemCommand({
          TableName: this.table,
          Item: {
            pk: { S: chunkKey(id, index) },
            // No TTL: a session renewed by progress may outlive any fixed one. Chunks go when the
            // session ends, or with its expiry through the cleanup function.
            etags: { S: joinEtags(etags) },
          },
        }),
      );
    });
  }

  getPartChunks(id: string, count: number): Promise<string[][]> {
    return translated("DynamoDB BatchGetItem", passNone, async () => {
      const found = new Map<string, string[]>();
      for (let start = 0; start < count; start += 100) {
        let keys: Record<string, AttributeValue>[] = [];
        for (let i = start; i < Math.min(count, start + 100); i++) {
          keys.push({ pk: { S: chunkKey(id, i) } });
        }
        for (let round = 0; keys.length > 0; round++) {
          if (round > 20) throw new Error("BatchGetItem kept leaving keys unprocessed");
          const out = await this.client.send(
            new BatchGetItemCommand({
              RequestItems: { [this.table]: { Keys: keys, ConsistentRead: true } },
            }),
          );
          for (const item of out.Responses?.[this.table] ?? []) {
            const pk = item.pk?.S;
            if (pk !== undefined) found.set(pk, splitEtags(item.etags?.S));
          }
          keys = out.UnprocessedKeys?.[this.table]?.Keys ?? [];
          if (keys.length > 0) await backoff(round);
        }
      }
      return Array.from({ length: count }, (_, i) => {
        const chunk = found.get(chunkKey(id, i));
        if (chunk === undefined) throw new Error(`part chunk ${i} of ${id} is missing`);
        return chunk;
      });
    });
  }

  deletePartChunks(id: string, count: number): Promise<void> {
    return this.deletePartChunksAt(
      id,
      Array.from({ length: count }, (_, i) => i),
    );
  }

  deletePartChunksAt(id: string, indices: readonly number[]): Promise<void> {
    return translated("DynamoDB BatchWriteItem", passNone, async () => {
      for (let start = 0; start < indices.length; start += 25) {
        let requests = indices.slice(start, start + 25).map((i) => ({
          DeleteRequest: { Key: { pk: { S: chunkKey(id, i) } } },
        }));
        for (let round = 0; requests.length > 0; round++) {
          if (round > 20) throw new Error("BatchWriteItem kept leaving items unprocessed");
          const out = await this.client.send(
            new BatchWriteItemCommand({ RequestItems: { [this.table]: requests } }),
          );
          requests = (out.UnprocessedItems?.[this.table] ?? []) as typeof requests;
          if (requests.length > 0) await backoff(round);
        }
      }
    });
  }

  /** The position is the key of the last item read (a Scan's LastEvaluatedKey): only `pk`. */
  scanPage({
    after,
    max = 100,
  }: {
    after?: string | undefined;
    max?: number | undefined;
  } = {}): Promise<ScanPage> {
    return translated("DynamoDB Scan", passNone, async () => {
      const out = await this.client.send(
        new ScanCommand({
          TableName: this.table,
          Limit: Math.max(1, max),
          ...(after === undefined ? {} : { ExclusiveStartKey: { pk: { S: after } } }),
        }),
      );
      const items: StoredItem[] = [];
      for (const item of out.Items ?? []) {
        const pk = item.pk?.S ?? "";
        const chunk = parseChunkKey(pk);
        if (chunk !== undefined) items.push({ kind: "chunk", ...chunk });
        else if (pk.startsWith("S#")) items.push({ kind: "session", record: fromItem(item) });
      }
      return { items, next: out.LastEvaluatedKey?.pk?.S };
    });
  }

  sweepPosition(): Promise<string | undefined> {
    return translated("DynamoDB GetItem", passNone, async () => {
      const out = await this.client.send(
        new GetItemCommand({
          TableName: this.table,
          Key: { pk: { S: SWEEP_POSITION } },
          ConsistentRead: true,
        }),
      );
      return out.Item?.pos?.S;
    });
  }

  saveSweepPosition(position: string | undefined): Promise<void> {
    return translated("DynamoDB PutItem", passNone, async () => {
      const Key = { pk: { S: SWEEP_POSITION } };
      if (position === undefined) {
        await this.client.send(new DeleteItemCommand({ TableName: this.table, Key }));
      } else {
        await this.client.send(
          new PutItemCommand({ TableName: this.table, Item: { ...Key, pos: { S: position } } }),
        );
      }
    });
  }
}

const backoff = (round: number, jitter = false) =>
  new Promise((resolve) =>
    setTimeout(resolve, Math.min(1000, 20 * 2 ** round) * (jitter ? Math.random() : 1)),
  );
