import { DescribeTableCommand, type DynamoDBClient } from "@aws-sdk/client-dynamodb";
import {
  type _Record,
  DescribeStreamCommand,
  DynamoDBStreamsClient,
  type DynamoDBStreamsClientConfig,
  GetRecordsCommand,
  GetShardIteratorCommand,
} from "@aws-sdk/client-dynamodb-streams";
import type { StreamRecordLike } from "./stream-records.ts";

export interface StreamPollerOptions {
  readonly table: string;
  /** Reads the table's stream ARN. */
  readonly dynamodb: DynamoDBClient;
  /** How to reach the Streams API (same endpoint, region and credentials as `dynamodb`). */
  readonly streams: DynamoDBStreamsClientConfig;
  /** Handles one batch of one shard, in order; a throw makes the batch come again. */
  readonly handle: (records: readonly StreamRecordLike[]) => Promise<void>;
  /** `start`: every record the stream still holds; `now`: only what is written from now on. */
  readonly from: "start" | "now";
  readonly intervalMs?: number;
  readonly onError?: (error: unknown) => void;
  /** A client of the caller's own (tests add middleware to it); the poller does not destroy it. */
  readonly client?: DynamoDBStreamsClient;
}

interface Shard {
  readonly id: string;
  iterator: string | undefined;
  /** The last record handled: an iterator that stopped working is renewed after it. */
  last: string | undefined;
  /** The shard is closed and read to its end. */
  done: boolean;
  /** Renewals since the last read that worked: the second reads the shard from its start. */
  renewals: number;
}

/**
 * Errors after which an iterator is of no more use. ExpiredIteratorException: iterators last 15
 * minutes. TrimmedDataAccessException: on AWS, records older than 24 hours are gone; DynamoDB
 * Local also raises it for a LATEST iterator taken on a table's new, empty shard, and raises it
 * again on every later read with that iterator (aws/aws-sdk-java#2923). ResourceNotFoundException:
 * DynamoDB Local's "Invalid ShardId in ShardIterator". Retrying the same iterator would stop
 * the shard for good, so each of these renews it.
 */
const RENEW = new Set([
  "ExpiredIteratorException",
  "TrimmedDataAccessException",
  "ResourceNotFoundException",
]);

/** Sequence numbers are decimal strings of any length. */
const after = (a: string, b: string) => a.length > b.length || (a.length === b.length && a > b);

/**
 * What Lambda's event source mapping does for the deployed function, for the local server: it
 * reads the session table's stream (DynamoDB Local implements the Streams API) and hands each
 * batch to `handle`, in order within a shard, advancing only when a batch was handled. A batch
 * that fails is handed again on the next round: delivery is at least once, as on AWS.
 *
 * Written here because AWS's own Kinesis Client Library adapter is Java; this needs none of its
 * leases or checkpoints: one process reads, and a restart of the in-memory stand-ins starts an
 * empty stream.
 */
export async function startStreamPoller(options: StreamPollerOptions) {
  const { table, dynamodb, handle, from, intervalMs = 250, onError = () => {} } = options;
  const described = await dynamodb.send(new DescribeTableCommand({ TableName: table }));
  const streamArn = described.Table?.LatestStreamArn;
  if (!streamArn) throw new Error(`table ${table} has no stream`);
  const client = options.client ?? new DynamoDBStreamsClient(options.streams);
  /**
   * From `now`: records of earlier minutes are not handed, however a shard is read. A minute,
   * not the second: DynamoDB Local rounds creation times down to the minute. An ending in the
   * minute before the start may thus be announced again after a renewal: at least once.
   */
  const since = from === "now" ? Math.floor(Date.now() / 60_000) * 60 : undefined;
  const shards = new Map<string, Shard>();
  /** Set once the first discovery is done: shards found later are read whole. */
  let started = false;

  const discover = async () => {
    let start: string | undefined;
    do {
      const out = await client.send(
        new DescribeStreamCommand({ StreamArn: streamArn, ExclusiveStartShardId: start }),
      );
      for (const shard of out.StreamDescription?.Shards ?? []) {
        if (!shard.ShardId || shards.has(shard.ShardId)) continue;
        // A shard found after the start began after it: read it whole.
        const type = from === "now" && !started ? "LATEST" : "TRIM_HORIZON";
        const iterator = await client.send(
          new GetShardIteratorCommand({
            StreamArn: streamArn,
            ShardId: shard.ShardId,
            ShardIteratorType: type,
          }),
        );
        shards.set(shard.ShardId, {
          id: shard.ShardId,
          iterator: iterator.ShardIterator,
          last: undefined,
          done: false,
          renewals: 0,
        });
      }
      start = out.StreamDescription?.LastEvaluatedShardId;
    } while (start);
  };

  const readShard = async (shard: Shard) => {
    if (shard.done || !shard.iterator) return;
    let out: Awaited<ReturnType<typeof getRecords>>;
    try {
      out = await getRecords(shard.iterator);
    } catch (error) {
      if (!RENEW.has((error as { name?: string }).name ?? "")) throw error;
      // A new iterator resumes after the last handled record; if that one fails too, the shard
      // is read from its start, and what was handled or is older than `since` is skipped.
      shard.renewals += 1;
      const resume = shard.last !== undefined && shard.renewals === 1;
      const renewed = await client.send(
        new GetShardIteratorCommand({
          StreamArn: streamArn,
          ShardId: shard.id,
          ...(resume
            ? { ShardIteratorType: "AFTER_SEQUENCE_NUMBER", SequenceNumber: shard.last }
            : { ShardIteratorType: "TRIM_HORIZON" }),
        }),
      );
      shard.iterator = renewed.ShardIterator;
      // Read at once with the new iterator (a drain reads everything written so far), twice at
      // most; a shard that keeps failing is tried again on the next round.
      if (shard.renewals <= 2) await readShard(shard);
      return;
    }
    shard.renewals = 0;
    const records = (out.Records ?? []).filter((record) => isNew(shard, record));
    if (records.length > 0) await handle(records as StreamRecordLike[]);
    shard.last = (out.Records ?? []).at(-1)?.dynamodb?.SequenceNumber ?? shard.last;
    shard.iterator = out.NextShardIterator;
    if (!shard.iterator) shard.done = true;
  };
  /** Not handled before (a shard read again from its start), nor from before `since`. */
  const isNew = (shard: Shard, record: _Record) => {
    const sequence = record.dynamodb?.SequenceNumber;
    if (shard.last !== undefined && sequence !== undefined && !after(sequence, shard.last)) {
      return false;
    }
    const created = record.dynamodb?.ApproximateCreationDateTime;
    return since === undefined || created === undefined || created.getTime() / 1000 >= since;
  };
  const getRecords = (iterator: string) =>
    client.send(new GetRecordsCommand({ ShardIterator: iterator }));

  // One reader at a time, so a drain and the loop never hand the same records twice.
  let queue: Promise<unknown> = Promise.resolve();
  const serial = <T>(task: () => Promise<T>): Promise<T> => {
    const run = queue.then(task, task);
    queue = run.catch(() => {});
    return run;
  };
  const readAll = async () => {
    for (const shard of shards.values()) await readShard(shard);
  };

  await discover();
  started = true;
  let stopped = false;
  let wake = () => {};
  let rounds = 0;
  const loop = (async () => {
    while (!stopped) {
      try {
        if (++rounds % 20 === 0) await serial(discover);
        await serial(readAll);
      } catch (error) {
        onError(error);
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, intervalMs);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  })();

  return {
    /** Reads what is there now, once (tests wait on this instead of sleeping). */
    async drain(): Promise<void> {
      await serial(discover);
      await serial(readAll);
    },
    async stop(): Promise<void> {
      stopped = true;
      wake();
      await loop;
      if (options.client === undefined) client.destroy();
    },
  };
}

export type StreamPoller = Awaited<ReturnType<typeof startStreamPoller>>;
