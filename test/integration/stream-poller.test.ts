import { PutItemCommand } from "@aws-sdk/client-dynamodb";
import { DynamoDBStreamsClient } from "@aws-sdk/client-dynamodb-streams";
import { describe, expect, inject, it } from "vitest";
import { startStreamPoller } from "../../functions/adapters/dynamodb/stream-poller.ts";
import type { StreamRecordLike } from "../../functions/adapters/dynamodb/stream-records.ts";
import { STAND_IN_CREDENTIALS, STAND_IN_REGION } from "../../infra/stand-ins.ts";
import { freshTable, standInClients } from "../support/storage.ts";

/**
 * The local server's stream reader on DynamoDB Local, when reads with an iterator start failing
 * the way DynamoDB Local's do (TrimmedDataAccessException for a LATEST iterator taken on a new
 * table, "Invalid ShardId in ShardIterator", an expired iterator): it takes a new iterator and
 * goes on, handing every record written after its start exactly once, in order. Before, it tried
 * the same iterator forever and the table's later endings were never announced.
 */

interface Failures {
  readonly name: string;
  /** How many more iterators break at their next read. */
  left: number;
  readonly broken: Set<string>;
}

const streamsClient = (failures: Failures) => {
  const client = new DynamoDBStreamsClient({
    endpoint: inject("dynamodbEndpoint"),
    region: STAND_IN_REGION,
    credentials: STAND_IN_CREDENTIALS,
  });
  client.middlewareStack.add(
    (next, context) => async (args) => {
      if (context.commandName === "GetRecordsCommand") {
        // As DynamoDB Local does: an iterator that failed once fails on every later read.
        const iterator = (args.input as { ShardIterator: string }).ShardIterator;
        if (failures.left > 0) {
          failures.left -= 1;
          failures.broken.add(iterator);
        }
        if (failures.broken.has(iterator)) {
          throw Object.assign(new Error(`${failures.name} (injected)`), { name: failures.name });
        }
      }
      return next(args);
    },
    { step: "initialize", name: "failGetRecords" },
  );
  return client;
};

const put = (table: string, pk: string) =>
  standInClients().dynamodb.send(
    new PutItemCommand({ TableName: table, Item: { pk: { S: pk }, n: { N: "1" } } }),
  );

const keysOf = (records: readonly StreamRecordLike[]) =>
  records.map((record) => (record.dynamodb?.NewImage as { pk?: { S?: string } })?.pk?.S);

describe("the stream reader renews an iterator that stopped working", () => {
  it.each([
    ["no error", 0, "later"],
    // DynamoDB Local's own case: the first read after the first write to a new table.
    ["TrimmedDataAccessException", 1, "first"],
    ["TrimmedDataAccessException", 5, "first"],
    ["TrimmedDataAccessException", 1, "later"],
    ["TrimmedDataAccessException", 5, "later"],
    ["ResourceNotFoundException", 1, "later"],
    ["ExpiredIteratorException", 2, "later"],
  ] as const)(
    "after %s (%i reads in a row, from the %s read): every record since its start, once, in order",
    async (name, times, when) => {
      const table = await freshTable();
      // Written before the reader starts ("from now"): not handed, unless a renewal before
      // anything was handed reads the shard from its start (the same minute: at least once).
      await put(table, "before");
      const failures: Failures = { name, left: when === "first" ? times : 0, broken: new Set() };
      const client = streamsClient(failures);
      const handed: StreamRecordLike[] = [];
      const errors: unknown[] = [];
      const poller = await startStreamPoller({
        table,
        dynamodb: standInClients().dynamodb,
        streams: {},
        client,
        from: "now",
        intervalMs: 60_000,
        handle: async (records) => {
          handed.push(...records);
        },
        onError: (error) => errors.push(error),
      });
      try {
        await put(table, "a");
        await poller.drain();
        if (when === "later") failures.left = times;
        await put(table, "b");
        await put(table, "c");
        for (let i = 0; i < 10 && keysOf(handed).at(-1) !== "c"; i++) await poller.drain();
        await put(table, "d");
        await poller.drain();
        const keys = keysOf(handed);
        expect(keys.filter((key) => key !== "before")).toEqual(["a", "b", "c", "d"]);
        const early = when === "first" && times > 0 ? 1 : 0;
        expect(keys.filter((key) => key === "before").length).toBeLessThanOrEqual(early);
        expect(failures.left).toBe(0);
        expect(errors).toEqual([]);
      } finally {
        await poller.stop();
        client.destroy();
      }
    },
  );
});
