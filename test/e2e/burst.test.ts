import { BatchGetItemCommand, ScanCommand } from "@aws-sdk/client-dynamodb";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { allCounterKey } from "../../functions/adapters/dynamodb/session-item.ts";
import { sha256 } from "../support/checks.ts";
import { depth } from "../support/depth.ts";
import { type Started, start } from "../support/npm-start.ts";
import { bucketKeys, freshStorage, standInClients, tableItems } from "../support/storage.ts";
import { throttlingProxy } from "../support/throttling-proxy.ts";
import { httpTransport, type Transport } from "../support/transports.ts";
import { bitsUpload, randomBytes, seeded } from "../support/windows-client.ts";

/**
 * A fleet's burst through `npm start`: over a hundred sessions at once (several hundred deep)
 * against a lowered cap on open sessions counted in shards, with DynamoDB and S3 throttling some
 * calls. Every file must arrive exactly, every refused client must finish later, and the
 * counters must come back to zero: no session lost or counted twice (docs/capacity.md,
 * "Counters").
 */
const CLIENTS = Number(process.env.BURST_CLIENTS ?? depth(120, 300));
/** A third of the clients (deep: 100 of 300) may be open at once: the rest are refused at first. */
const CAP = depth(40, 100);
const SHARDS = 4;
/** The client's retry delay after a 5xx: BITS' shortest MinimumRetryDelay. */
const RETRY_DELAY_MS = 5_000;
/** Share of DynamoDB calls throttled; S3 gets half as many. */
const THROTTLE = Number(process.env.BURST_THROTTLE ?? 0.04);

/** A transport whose client waits its retry delay after a transient answer, as BITS does. */
function retrying(inner: Transport, random: () => number): Transport {
  return async (request) => {
    const answer = await inner(request);
    if (answer.status >= 500) {
      await new Promise((resolve) => setTimeout(resolve, RETRY_DELAY_MS * (0.5 + random())));
    }
    return answer;
  };
}

describe(`burst: ${CLIENTS} sessions at once, at most ${CAP} open, storage throttled`, () => {
  let server: Started;
  let storage: Awaited<ReturnType<typeof freshStorage>>;
  let proxies: Awaited<ReturnType<typeof throttlingProxy>>[];

  beforeAll(async () => {
    storage = await freshStorage();
    proxies = await Promise.all([
      throttlingProxy(inject("dynamodbEndpoint"), "dynamodb", {
        rate: THROTTLE,
        random: seeded(11),
      }),
      throttlingProxy(inject("s3Endpoint"), "s3", { rate: THROTTLE / 2, random: seeded(12) }),
    ]);
    const [dynamodb, s3] = proxies as [(typeof proxies)[0], (typeof proxies)[0]];
    server = await start({
      BITS_STAND_INS: "external",
      BITS_DYNAMODB_ENDPOINT: dynamodb.url,
      BITS_S3_ENDPOINT: s3.url,
      BITS_BUCKET: storage.bucket,
      BITS_TABLE: storage.table,
      BITS_MAX_SESSIONS: String(CAP),
      BITS_SESSION_COUNTER_SHARDS: String(SHARDS),
      // Every client here is 127.0.0.1, one anonymous slot: its exact cap stays out of the way.
      BITS_MAX_SESSIONS_PER_PRINCIPAL: "100000",
      // All the clients connect at once (300 deep); the local server's connection cap (128) would close the
      // rest, which a fleet behind a load balancer never meets.
      BITS_LOCAL_MAX_CONNECTIONS: "1000",
      BITS_LOG_LEVEL: "warn",
    });
  });
  afterAll(async () => {
    server?.child.kill("SIGTERM");
    await Promise.all(proxies?.map((proxy) => proxy.close()) ?? []);
  });

  it("every file exact, every refused client done later, the counters back to zero", async () => {
    const { dynamodb } = standInClients();
    const counterKeys = Array.from({ length: SHARDS }, (_, i) => allCounterKey(i));
    const counters = async () => {
      const out = await dynamodb.send(
        new BatchGetItemCommand({
          RequestItems: {
            [storage.table]: {
              Keys: counterKeys.map((pk) => ({ pk: { S: pk } })),
              ConsistentRead: true,
            },
          },
        }),
      );
      const found = new Map<string, number>();
      for (const item of out.Responses?.[storage.table] ?? []) {
        found.set(item.pk?.S ?? "", Number(item.n?.N ?? 0));
      }
      return found;
    };
    // Watch the shards while the burst runs: none may pass its share of the cap.
    let highest = 0;
    let watching = true;
    const watcher = (async () => {
      for (let round = 0; watching && round < 3_000; round++) {
        const now = await counters();
        for (let i = 0; i < SHARDS; i++)
          highest = Math.max(highest, now.get(allCounterKey(i)) ?? 0);
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    })();

    const started = Date.now();
    const results = await Promise.all(
      Array.from({ length: CLIENTS }, async (_, i) => {
        const random = seeded(500 + i);
        const data = randomBytes(5_000 + Math.floor(random() * 60_000), 9_000 + i);
        const path = `/fleet/machine-${String(i).padStart(3, "0")}.bin`;
        const connection = httpTransport(server.url);
        try {
          const outcome = await bitsUpload(retrying(connection, random), path, data, {
            random,
            initialFragment: 64 * 1024,
            maxRequests: 2_000,
          });
          return { path, expected: sha256(data), outcome };
        } finally {
          connection.close();
        }
      }),
    );
    const seconds = (Date.now() - started) / 1000;
    watching = false;
    await watcher;

    for (const { path, expected } of results) {
      const stored = await fetch(`${server.url}${path}`);
      expect(stored.status, path).toBe(200);
      expect(sha256(new Uint8Array(await stored.arrayBuffer())), path).toBe(expected);
    }
    expect((await bucketKeys(storage.bucket)).filter((key) => key.startsWith("fleet/"))).toEqual(
      results.map(({ path }) => path.slice(1)).sort(),
    );
    // The cap was met: clients were refused (503) and still finished.
    const refused = results.filter(({ outcome }) => outcome.statuses.includes(503));
    expect(refused.length).toBeGreaterThan(0);
    expect(highest).toBeLessThanOrEqual(Math.ceil(CAP / SHARDS));
    // Throttling happened on both stores.
    for (const proxy of proxies) expect(proxy.counts.throttled).toBeGreaterThan(0);

    // Nothing lost or counted twice: every count is back to zero and no session is open.
    // Every counter item (the shards of all, and the clients' slot) is back to zero.
    const scanned = await dynamodb.send(new ScanCommand({ TableName: storage.table }));
    const counterItems = (scanned.Items ?? []).filter((item) => item.pk?.S?.startsWith("N"));
    expect(counterItems.length).toBeGreaterThan(1);
    for (const item of counterItems) expect(Number(item.n?.N), item.pk?.S).toBe(0);
    const { records } = await tableItems(storage.table);
    expect(records.filter((record) => record.status === "open")).toEqual([]);
    console.info(
      `burst: ${CLIENTS} clients in ${seconds.toFixed(1)} s, ${refused.length} refused at first, ` +
        `highest shard ${highest}, throttled ${proxies.map((p) => p.counts.throttled).join("/")}`,
    );
  }, 400_000);
});
