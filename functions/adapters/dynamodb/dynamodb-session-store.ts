import {
  type AttributeValue,
  BatchGetItemCommand,
  BatchWriteItemCommand,
  type DynamoDBClient,
  GetItemCommand,
  PutItemCommand,
  ScanCommand,
} from "@aws-sdk/client-dynamodb";
import type { SessionRecord } from "../../bits/session.ts";
import type { ReplaceResult, SessionStore, StoredItem } from "../../ports/session-store.ts";
import {
  chunkKey,
  fromItem,
  joinEtags,
  parseChunkKey,
  sessionKey,
  splitEtags,
  toItem,
} from "./session-item.ts";

const isConditionFailure = (error: unknown) =>
  (error as { name?: string }).name === "ConditionalCheckFailedException";

/**
 * SessionStore on one DynamoDB table (partition key `pk`, TTL on `exp`). Every change is a
 * conditional PutItem on the version read; a failed condition returns the item as it is now
 * (ReturnValuesOnConditionCheckFailure), so the loser re-decides without another read.
 */
export class DynamoDbSessionStore implements SessionStore {
  constructor(
    private readonly client: DynamoDBClient,
    private readonly table: string,
  ) {}

  async get(id: string): Promise<SessionRecord | undefined> {
    const out = await this.client.send(
      new GetItemCommand({
        TableName: this.table,
        Key: { pk: { S: sessionKey(id) } },
        ConsistentRead: true,
      }),
    );
    return out.Item ? fromItem(out.Item) : undefined;
  }

  async create(record: SessionRecord): Promise<boolean> {
    try {
      await this.client.send(
        new PutItemCommand({
          TableName: this.table,
          Item: toItem(record),
          ConditionExpression: "attribute_not_exists(pk)",
        }),
      );
      return true;
    } catch (error) {
      if (isConditionFailure(error)) return false;
      throw error;
    }
  }

  async replace(record: SessionRecord, expectedVersion: number): Promise<ReplaceResult> {
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
  }

  async putPartChunk(id: string, index: number, etags: readonly string[]): Promise<void> {
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
  }

  async getPartChunks(id: string, count: number): Promise<string[][]> {
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
  }

  async deletePartChunks(id: string, count: number): Promise<void> {
    for (let start = 0; start < count; start += 25) {
      let requests = [];
      for (let i = start; i < Math.min(count, start + 25); i++) {
        requests.push({ DeleteRequest: { Key: { pk: { S: chunkKey(id, i) } } } });
      }
      for (let round = 0; requests.length > 0; round++) {
        if (round > 20) throw new Error("BatchWriteItem kept leaving items unprocessed");
        const out = await this.client.send(
          new BatchWriteItemCommand({ RequestItems: { [this.table]: requests } }),
        );
        requests = (out.UnprocessedItems?.[this.table] ?? []) as typeof requests;
        if (requests.length > 0) await backoff(round);
      }
    }
  }

  async *scan(): AsyncIterable<StoredItem> {
    let start: Record<string, AttributeValue> | undefined;
    do {
      const out = await this.client.send(
        new ScanCommand({ TableName: this.table, ...(start ? { ExclusiveStartKey: start } : {}) }),
      );
      for (const item of out.Items ?? []) {
        const pk = item.pk?.S ?? "";
        const chunk = parseChunkKey(pk);
        if (chunk !== undefined) yield { kind: "chunk", ...chunk };
        else if (pk.startsWith("S#")) yield { kind: "session", record: fromItem(item) };
      }
      start = out.LastEvaluatedKey;
    } while (start !== undefined);
  }
}

const backoff = (round: number) =>
  new Promise((resolve) => setTimeout(resolve, Math.min(1000, 20 * 2 ** round)));
