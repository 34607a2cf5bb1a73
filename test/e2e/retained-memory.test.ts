import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BITS_PROTOCOL_GUID, MiB } from "../../functions/bits/constants.ts";
import { sha256 } from "../support/checks.ts";
import { depth } from "../support/depth.ts";
import { localServer } from "../support/local.ts";
import { httpTransport } from "../support/transports.ts";
import { randomBytes } from "../support/windows-client.ts";

setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;

/** Array buffers (request bodies, staged copies) still reachable after a full collection. */
async function retainedArrayBuffers(): Promise<number> {
  for (let i = 0; i < 3; i++) {
    gc();
    await new Promise((resolve) => setImmediate(resolve));
  }
  return process.memoryUsage().arrayBuffers;
}

const BOUND = 4 * MiB;
/** Without copying, each sliver keeps its whole 1 MiB body: FRAGMENTS MiB, far above BOUND. */
const FRAGMENTS = depth(100, 300);
/** The file: past one 8 MiB part once the slivers are in (64 MiB at the deep depth). */
const TOTAL = depth(12 * MiB, 64 * MiB);

describe("the warm cache holds no more memory than its bound (docs/security.md, Caps)", () => {
  let env: Awaited<ReturnType<typeof localServer>>;
  let transport: ReturnType<typeof httpTransport>;

  beforeAll(async () => {
    env = await localServer({}, { cacheBytes: BOUND });
    transport = httpTransport(env.server.url);
  });
  afterAll(async () => {
    transport.close();
    await env.server.close();
  });

  it(`${FRAGMENTS} overlapping 1 MiB fragments that each add one byte retain less than the bound`, async () => {
    const total = TOTAL;
    const data = randomBytes(total, 9);
    const path = "/slivers.bin";
    const send = (headers: Record<string, string>, body: Uint8Array = new Uint8Array(0)) =>
      transport({ method: "BITS_POST", path, headers, body });
    const created = await send({
      "BITS-Packet-Type": "Create-Session",
      "BITS-Supported-Protocols": BITS_PROTOCOL_GUID,
    });
    const id = created.headers.get("bits-session-id") ?? "";
    const fragment = (first: number, length: number) =>
      send(
        {
          "BITS-Packet-Type": "Fragment",
          "BITS-Session-Id": id,
          "Content-Range": `bytes ${first}-${first + length - 1}/${total}`,
        },
        data.subarray(first, first + length),
      );
    expect((await fragment(0, MiB)).status).toBe(200);
    const before = await retainedArrayBuffers();
    for (let k = 1; k <= FRAGMENTS; k++) {
      const answer = await fragment(k, MiB);
      expect(answer.headers.get("bits-received-content-range")).toBe(String(MiB + k));
    }
    const after = await retainedArrayBuffers();
    const cache = env.context.cache;
    console.log(
      `retained array buffers: ${((after - before) / MiB).toFixed(1)} MiB more after ${FRAGMENTS} slivers; cache holds ${((cache?.heldBytes ?? 0) / MiB).toFixed(2)} MiB (bound ${BOUND / MiB} MiB)`,
    );
    expect(cache?.heldBytes).toBeLessThanOrEqual(BOUND);
    // Without copying, each one-byte slice kept its whole 1 MiB body: about FRAGMENTS MiB.
    expect(after - before).toBeLessThan(BOUND);

    // And the bytes are right: finish the file and compare.
    let offset = MiB + FRAGMENTS;
    while (offset < total) {
      const length = Math.min(MiB, total - offset);
      const answer = await fragment(offset, length);
      offset = Number(answer.headers.get("bits-received-content-range"));
    }
    const close = await send({ "BITS-Packet-Type": "Close-Session", "BITS-Session-Id": id });
    expect(close.status).toBe(200);
    const stored = await env.objects.get("slivers.bin");
    expect(stored && sha256(stored)).toBe(sha256(data));
  });
});
