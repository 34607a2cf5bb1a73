import { createHash } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BITS_PROTOCOL_GUID, MiB } from "../../functions/bits/constants.ts";
import { sha256 } from "../support/checks.ts";
import { depth } from "../support/depth.ts";
import { localServer } from "../support/local.ts";
import { bucketKeys, STAGING_PREFIX, tableItems, uploadIsGone } from "../support/storage.ts";
import { httpTransport, type Transport, type WireResponse } from "../support/transports.ts";
import { bitsUpload, type ClientOptions, randomBytes, seeded } from "../support/windows-client.ts";

/**
 * Load through the local HTTP server over the real stand-ins: many sessions at once, and the
 * same fragment arriving on several connections at once. Every object must be stored exactly
 * and nothing else may be left in the bucket.
 */

/**
 * Parts of S3's smallest size (8 MiB deep) and files just past one part (16 MiB deep): every
 * file still crosses a part boundary, and every pattern still ends some part and stages the rest.
 */
const PART = depth(5 * MiB, 8 * MiB);
const LIMITS = { maxFragmentBytes: MiB, maxUploadBytes: 1 << 30, partSize: PART };
const SESSIONS = 64;
const FILE = depth(6 * MiB, 16 * MiB);
/** The six-copies file: past one part, in 1 MiB fragments and in fragments across the boundary. */
const COPIES = depth(6 * MiB, 12 * MiB);

/** SHA-256 of an object fetched with a plain GET of its upload path, streamed. */
async function downloadHash(url: string): Promise<string> {
  const res = await fetch(url);
  expect(res.status).toBe(200);
  const hash = createHash("sha256");
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) hash.update(chunk);
  return hash.digest("hex");
}

/** A different way of cutting the file for every session. */
function patternFor(i: number): ClientOptions {
  const random = seeded(7_000 + i);
  switch (i % 4) {
    case 0:
      // Windows' default: starts at 5 KB, doubles, is told 413 above 1 MiB and shrinks.
      return { random };
    case 1:
      return { random, initialFragment: MiB, maxFragment: MiB };
    case 2:
      // Retransmissions below the offset, overlaps, gaps and lost answers.
      return {
        random,
        dropRate: 0.03,
        ping: true,
        nextFragment: (offset, total, _size, r) => {
          const roll = r();
          const length = 5 * 1024 + Math.floor(r() * (MiB - 5 * 1024));
          if (roll < 0.15)
            return { start: Math.max(0, offset - Math.floor(r() * 300_000)), length };
          if (roll < 0.2)
            return { start: Math.min(total - 1, offset + 1 + Math.floor(r() * 1000)), length };
          return { start: offset, length };
        },
      };
    default:
      // Random sizes in order, some ending exactly on a part boundary.
      return {
        random,
        ping: true,
        nextFragment: (offset, _total, _size, r) => {
          const toBoundary = PART - (offset % PART);
          if (toBoundary <= MiB && r() < 0.5) return { start: offset, length: toBoundary };
          return { start: offset, length: 1 + Math.floor(r() * MiB) };
        },
      };
  }
}

describe(`load: ${SESSIONS} sessions at once, each on its own keep-alive connection`, () => {
  let env: Awaited<ReturnType<typeof localServer>>;

  beforeAll(async () => {
    env = await localServer({ limits: LIMITS });
  });
  afterAll(async () => {
    await env.server.close();
    // Free the stand-in's memory for the rest of the run.
    const keys = await bucketKeys(env.bucket);
    if (keys.length > 0) await env.objects.delete(keys);
  });

  it(`${SESSIONS} different ${FILE / MiB} MiB files are all stored exactly, and nothing else`, async () => {
    const started = Date.now();
    const upload = async (i: number) => {
      const path = `/load/file-${String(i).padStart(2, "0")}.bin`;
      // Generated inside the task; only the hash outlives the upload.
      let data: Uint8Array | undefined = randomBytes(FILE, 1_000 + i);
      const expected = sha256(data);
      const transport = httpTransport(env.server.url);
      try {
        const outcome = await bitsUpload(transport, path, data, patternFor(i));
        data = undefined;
        return { i, path, expected, outcome };
      } finally {
        transport.close();
      }
    };
    const results = await Promise.all(Array.from({ length: SESSIONS }, (_, i) => upload(i)));
    const uploaded = Date.now();

    for (const { path, expected } of results) {
      expect(await downloadHash(`${env.server.url}${path}`), path).toBe(expected);
    }
    const keys = results.map(({ path }) => path.slice(1)).sort();
    expect(await bucketKeys(env.bucket)).toEqual(keys);

    const sessionIds = new Set(results.flatMap(({ outcome }) => outcome.sessionIds));
    const { records } = await tableItems(env.table);
    const ours = records.filter((record) => sessionIds.has(record.id));
    expect(ours.length).toBe(sessionIds.size);
    for (const record of ours) {
      expect(await uploadIsGone(env.bucket, record.key, record.uploadId), record.key).toBe(true);
    }
    // Each pattern did what it is for: 413s for the growing client, drops and resends for the
    // messy one.
    expect(
      results.filter(({ i }) => i % 4 === 0).every(({ outcome }) => outcome.statuses.includes(413)),
    ).toBe(true);
    expect(
      results.filter(({ i }) => i % 4 === 2).some(({ outcome }) => outcome.statuses.includes(416)),
    ).toBe(true);
    const requests = results.reduce((sum, { outcome }) => sum + outcome.requests, 0);
    console.info(
      `load: ${SESSIONS} x ${FILE / MiB} MiB in ${((uploaded - started) / 1000).toFixed(1)} s ` +
        `(${requests} requests), verified in ${((Date.now() - uploaded) / 1000).toFixed(1)} s`,
    );
  }, 600_000);
});

/** One BITS packet over a transport. */
function post(
  transport: Transport,
  path: string,
  headers: Record<string, string>,
  body: Uint8Array = new Uint8Array(0),
): Promise<WireResponse> {
  return transport({ method: "BITS_POST", path, headers, body });
}

describe("the same fragment sent six times at once on six connections", () => {
  let env: Awaited<ReturnType<typeof localServer>>;
  let connections: ReturnType<typeof httpTransport>[];

  beforeAll(async () => {
    env = await localServer({ limits: LIMITS });
    connections = Array.from({ length: 6 }, () => httpTransport(env.server.url));
  });
  afterAll(async () => {
    for (const connection of connections) connection.close();
    await env.server.close();
  });

  it.each([
    { name: "1 MiB fragments", size: COPIES, fragment: MiB, seed: 61 },
    {
      name: "fragments across part boundaries",
      size: COPIES + 4321,
      fragment: 777_777,
      seed: 62,
    },
  ])(
    "$name: stored exactly, every answer 200 at or past the fragment's end",
    async ({ name, size, fragment, seed }) => {
      const path = `/copies/${seed}.bin`;
      const data = randomBytes(size, seed);
      const [first] = connections;
      if (first === undefined) throw new Error("no connection");
      const created = await post(first, path, {
        "BITS-Packet-Type": "Create-Session",
        "BITS-Supported-Protocols": BITS_PROTOCOL_GUID,
      });
      expect(created.status).toBe(200);
      const sessionId = created.headers.get("bits-session-id") ?? "";
      expect(sessionId).not.toBe("");

      for (let start = 0; start < size; start += fragment) {
        const end = Math.min(size, start + fragment);
        const answers = await Promise.all(
          connections.map((connection) =>
            post(
              connection,
              path,
              {
                "BITS-Packet-Type": "Fragment",
                "BITS-Session-Id": sessionId,
                "Content-Range": `bytes ${start}-${end - 1}/${size}`,
              },
              data.subarray(start, end),
            ),
          ),
        );
        for (const answer of answers) {
          const where = `${name}: [${start}, ${end}) -> ${answer.status} ${JSON.stringify([...answer.headers])}`;
          expect(answer.status, where).toBe(200);
          expect(answer.headers.get("bits-packet-type"), where).toBe("Ack");
          const received = Number(answer.headers.get("bits-received-content-range"));
          expect(received, where).toBeGreaterThanOrEqual(end);
          expect(received, where).toBeLessThanOrEqual(size);
        }
      }

      const closed = await post(first, path, {
        "BITS-Packet-Type": "Close-Session",
        "BITS-Session-Id": sessionId,
      });
      expect(closed.status).toBe(200);
      expect(await downloadHash(`${env.server.url}${path}`)).toBe(sha256(data));
      const keys = await bucketKeys(env.bucket);
      expect(keys.filter((key) => key.startsWith(STAGING_PREFIX))).toEqual([]);
      expect(keys).toContain(path.slice(1));
      const record = (await tableItems(env.table)).records.find((r) => r.id === sessionId);
      expect(record && (await uploadIsGone(env.bucket, record.key, record.uploadId))).toBe(true);
    },
  );

  it("afterwards the bucket holds exactly the two objects", async () => {
    expect(await bucketKeys(env.bucket)).toEqual(["copies/61.bin", "copies/62.bin"]);
  });
});
