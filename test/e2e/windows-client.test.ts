import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MiB } from "../../functions/bits/constants.ts";
import { expectOnlyResults, sha256 } from "../support/checks.ts";
import { depth } from "../support/depth.ts";
import { localServer } from "../support/local.ts";
import { realService } from "../support/storage.ts";
import {
  download,
  type EventShape,
  httpTransport,
  lambdaTransport,
} from "../support/transports.ts";
import { bitsUpload, type ClientOptions, randomBytes, seeded } from "../support/windows-client.ts";

/** The large file in 1 MiB fragments: three 8 MiB parts and more (64 MiB at the deep depth). */
const BIG = depth(26 * MiB, 64 * MiB);
/** Each messy upload: past the first 8 MiB part boundary (20 MiB at the deep depth). */
const MESSY = depth(10 * MiB, 20 * MiB);
/** Each Lambda upload: one 8 MiB part and a remainder (12 MiB at the deep depth). */
const LAMBDA = depth(9 * MiB, 12 * MiB);

/** Random sizes, retransmissions below the offset, overlaps, gaps and lost answers. */
const messy = (seed: number, maxFragment: number): ClientOptions => ({
  random: seeded(seed),
  dropRate: 0.05,
  ping: true,
  nextFragment: (offset, total, _size, random) => {
    const roll = random();
    const length = 5 * 1024 + Math.floor(random() * (maxFragment - 5 * 1024));
    if (roll < 0.15) return { start: Math.max(0, offset - Math.floor(random() * 300_000)), length };
    if (roll < 0.2)
      return { start: Math.min(total - 1, offset + 1 + Math.floor(random() * 1000)), length };
    return { start: offset, length };
  },
});

describe("a Windows-like client uploads over HTTP to the local server (DynamoDB Local, fauxqs)", () => {
  let env: Awaited<ReturnType<typeof localServer>>;
  let transport: ReturnType<typeof httpTransport>;
  const stored: string[] = [];

  beforeAll(async () => {
    env = await localServer({
      limits: { maxFragmentBytes: MiB, maxUploadBytes: 1 << 30, partSize: 8 * MiB },
    });
    transport = httpTransport(env.server.url);
  });
  afterAll(async () => {
    transport.close();
    await env.server.close();
  });

  const upload = async (name: string, data: Uint8Array, options: ClientOptions = {}) => {
    await bitsUpload(transport, `/uploads/${name}`, data, options);
    stored.push(`uploads/${name}`);
    expect(sha256(await download(`${env.server.url}/uploads/${name}`))).toBe(sha256(data));
  };

  it("a 1-byte file", async () => {
    await upload("one.bin", randomBytes(1, 1));
  });

  it("a 0-byte file (Content-Range: bytes */0)", async () => {
    await upload("empty.bin", new Uint8Array(0));
  });

  it("a file smaller than one fragment", async () => {
    await upload("small.txt", randomBytes(4892, 2));
  });

  it(`a ${BIG / MiB} MiB random file in 1 MiB fragments`, async () => {
    await upload("big.bin", randomBytes(BIG, 3), { initialFragment: MiB, maxFragment: MiB });
  });

  it("fragments that start too large shrink after 413 down to what the server takes", async () => {
    const outcome = bitsUpload(transport, "/uploads/shrink.bin", randomBytes(3 * MiB, 4), {
      initialFragment: 4 * MiB,
      maxFragment: 4 * MiB,
    });
    const { statuses } = await outcome;
    stored.push("uploads/shrink.bin");
    expect(statuses).toContain(413);
    expect(sha256(await download(`${env.server.url}/uploads/shrink.bin`))).toBe(
      sha256(randomBytes(3 * MiB, 4)),
    );
  });

  it.each([11, 12, 13])(
    "random fragment sizes with retransmissions, overlaps, gaps and drops (seed %i)",
    async (seed) => {
      await upload(`messy-${seed}.bin`, randomBytes(MESSY + seed, seed), messy(seed, MiB));
    },
  );

  it("afterwards the bucket holds only the objects and the table only tombstones", async () => {
    await expectOnlyResults(env.bucket, env.table, stored);
  });
});

describe.each<EventShape>(["alb", "alb-multi", "v1", "v2"])(
  "the Lambda handler with %s events",
  (shape) => {
    it(`stores a ${LAMBDA / MiB} MiB file exactly, however it is cut, and leaves nothing else`, async () => {
      const env = await realService();
      const data = randomBytes(LAMBDA + 17, 99);
      await bitsUpload(
        lambdaTransport(env.service, shape),
        "/reports/2026-11.zip?job=1",
        data,
        messy(5, MiB),
      );
      const object = await env.objects.get("reports/2026-11.zip");
      expect(object && sha256(object)).toBe(sha256(data));
      await expectOnlyResults(env.bucket, env.table, ["reports/2026-11.zip"]);
    });
  },
);

describe("overwrite", () => {
  it("with overwrite off, Create-Session on an existing key is 403 E_ACCESSDENIED and the object is unchanged", async () => {
    const env = await realService();
    const original = randomBytes(1000, 5);
    await env.objects.putStaged("reports/taken.bin", original);
    const transport = lambdaTransport(env.service, "alb");
    await expect(bitsUpload(transport, "/reports/taken.bin", randomBytes(2000, 6))).rejects.toThrow(
      /403/,
    );
    const object = await env.objects.get("reports/taken.bin");
    expect(object && sha256(object)).toBe(sha256(original));
  });

  it("with overwrite on, the new upload replaces the object", async () => {
    const env = await realService({ allowOverwrite: true });
    await env.objects.putStaged("reports/taken.bin", randomBytes(1000, 5));
    const data = randomBytes(6 * MiB, 8);
    await bitsUpload(lambdaTransport(env.service, "v1"), "/reports/taken.bin", data, {
      maxFragment: MiB,
    });
    const object = await env.objects.get("reports/taken.bin");
    expect(object && sha256(object)).toBe(sha256(data));
  });

  it("an object that appears during the upload is not replaced: Close-Session answers 403", async () => {
    const env = await realService();
    const data = randomBytes(100_000, 9);
    const transport = lambdaTransport(env.service, "alb");
    let planted = false;
    const intruding: typeof transport = async (req) => {
      if (!planted && req.headers["BITS-Packet-Type"] === "Close-Session") {
        planted = true;
        await env.objects.putStaged("reports/race.bin", new TextEncoder().encode("first"));
      }
      return transport(req);
    };
    await expect(bitsUpload(intruding, "/reports/race.bin", data)).rejects.toThrow(
      /Close-Session answered 403/,
    );
    expect(new TextDecoder().decode(await env.objects.get("reports/race.bin"))).toBe("first");
    await expectOnlyResults(env.bucket, env.table, ["reports/race.bin"]);
  });
});
