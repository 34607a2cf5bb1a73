import { randomBytes } from "node:crypto";
import { Crc32cJs } from "@aws-sdk/checksums/crc";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  crc32c,
  crc32cBase64,
  crc32cCombine,
  crc32cFromBase64,
  parsePartEntry,
  partEntry,
} from "../../../functions/bits/crc32c.ts";

const bytes = (max: number) => fc.uint8Array({ maxLength: max });

/** The CRC32C of `length` zero bytes, built by doubling with combine only. */
function zeros(length: number): number {
  if (length === 0) return 0;
  const half = zeros(Math.floor(length / 2));
  const doubled = crc32cCombine(half, half, Math.floor(length / 2));
  return length % 2 === 0 ? doubled : crc32cCombine(doubled, crc32c(new Uint8Array(1)), 1);
}

describe("crc32c", () => {
  it('answers the check value for "123456789"', () => {
    expect(crc32c(new TextEncoder().encode("123456789"))).toBe(0xe3069283);
    expect(crc32c(new Uint8Array(0))).toBe(0);
  });

  it("agrees with the SDK's Crc32cJs (an independent oracle) on random buffers", async () => {
    const lengths = [...Array.from({ length: 70 }, (_, i) => i), 1000, 4099, 65_536 + 7, 1 << 20];
    for (const length of lengths) {
      const data = new Uint8Array(randomBytes(length));
      const hash = new Crc32cJs();
      hash.update(data);
      const expected = Buffer.from(await hash.digest()).readUInt32BE(0);
      expect(crc32c(data)).toBe(expected);
    }
  });

  it("agrees with Crc32cJs at any length and alignment, from a Buffer or a plain view", async () => {
    // Lengths across the 16 KiB pieces the WebAssembly hasher is fed in, and random ones; views
    // start at every offset modulo 8 inside a larger buffer, as request bodies and parts do.
    const around = [16_384, 32_768, 49_152].flatMap((n) => [n - 1, n, n + 1]);
    const random = Array.from({ length: 40 }, () => Math.floor(Math.random() * 200_000));
    const backing = randomBytes(300_000);
    for (const length of [...around, ...random]) {
      for (const offset of [0, 1, 2, 3, 4, 5, 6, 7]) {
        const view = backing.subarray(offset, offset + length);
        const hash = new Crc32cJs();
        hash.update(view);
        const expected = Buffer.from(await hash.digest()).readUInt32BE(0);
        expect(crc32c(view)).toBe(expected);
        expect(crc32c(new Uint8Array(view.buffer, view.byteOffset, view.length))).toBe(expected);
      }
    }
  });

  it("continuing from an earlier CRC agrees with Crc32cJs over both", async () => {
    for (let round = 0; round < 50; round++) {
      const a = randomBytes(Math.floor(Math.random() * 40_000));
      const b = randomBytes(Math.floor(Math.random() * 40_000));
      const hash = new Crc32cJs();
      hash.update(Buffer.concat([a, b]));
      expect(crc32c(b, crc32c(a))).toBe(Buffer.from(await hash.digest()).readUInt32BE(0));
    }
  });

  it("continues from an earlier CRC like one pass over both", () => {
    fc.assert(
      fc.property(bytes(300), bytes(300), (a, b) => {
        expect(crc32c(b, crc32c(a))).toBe(crc32c(Buffer.concat([a, b])));
      }),
    );
  });

  it("answers S3's wire format: four bytes big-endian in base64", () => {
    expect(crc32cBase64(0)).toBe("AAAAAA==");
    expect(crc32cBase64(0xe3069283)).toBe("4waSgw==");
    expect(crc32cFromBase64("4waSgw==")).toBe(0xe3069283);
    expect(crc32cFromBase64("nonsense")).toBeUndefined();
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffffffff }), (value) => {
        expect(crc32cFromBase64(crc32cBase64(value))).toBe(value);
      }),
    );
  });
});

describe("crc32cCombine", () => {
  it("the CRC of A then B, from the CRCs of A and B and the length of B", () => {
    fc.assert(
      fc.property(bytes(2000), bytes(2000), (a, b) => {
        expect(crc32cCombine(crc32c(a), crc32c(b), b.length)).toBe(crc32c(Buffer.concat([a, b])));
      }),
    );
  });

  it("an empty piece changes nothing, on either side", () => {
    fc.assert(
      fc.property(bytes(500), (a) => {
        expect(crc32cCombine(crc32c(a), 0, 0)).toBe(crc32c(a));
        expect(crc32cCombine(0, crc32c(a), a.length)).toBe(crc32c(a));
      }),
    );
  });

  it("folds any cut of a buffer into the CRC of the whole", () => {
    fc.assert(
      fc.property(bytes(3000), fc.array(fc.nat(), { maxLength: 8 }), (data, rawCuts) => {
        const cuts = [...new Set(rawCuts.map((cut) => cut % (data.length + 1)))].sort(
          (x, y) => x - y,
        );
        let crc = 0;
        let from = 0;
        for (const to of [...cuts, data.length]) {
          const piece = data.subarray(from, to);
          crc = crc32cCombine(crc, crc32c(piece), piece.length);
          from = to;
        }
        expect(crc).toBe(crc32c(data));
      }),
    );
  });

  it("zero-filled lengths built by combining match direct computation", () => {
    for (const length of [1, 2, 3, 15, 16, 17, 1000, 65_537, 5 * 1024 * 1024 + 3]) {
      expect(zeros(length)).toBe(crc32c(new Uint8Array(length)));
    }
  });

  it("works past 2^32 bytes (a 5 TiB file): lengths are never cut to 32 bits", () => {
    const prefix = crc32c(new TextEncoder().encode("123456789"));
    const TiB = 1024 ** 4;
    fc.assert(
      fc.property(fc.integer({ min: 2 ** 32, max: 5 * TiB }), fc.nat(2 ** 20), (big, small) => {
        // Appending `big + small` zeros at once equals appending `big`, then `small`.
        const once = crc32cCombine(prefix, zeros(big + small), big + small);
        const twice = crc32cCombine(crc32cCombine(prefix, zeros(big), big), zeros(small), small);
        expect(once).toBe(twice);
      }),
      { numRuns: 30 },
    );
    // A length that only differs above bit 32 gives another CRC.
    const a = crc32cCombine(prefix, 0, 2 ** 32 + 5);
    expect(a).not.toBe(crc32cCombine(prefix, 0, 5));
    expect(a).toBe(crc32cCombine(crc32cCombine(prefix, 0, 2 ** 32), 0, 5));
    expect(() => crc32cCombine(1, 2, -1)).toThrow(RangeError);
  });
});

describe("part entries", () => {
  it("keep an ETag and the part's CRC without commas; entries without a CRC stay valid", () => {
    const etag = '"9b2cf535f27731c974343645a3985328"';
    const entry = partEntry(etag, 0xe3069283);
    expect(entry).not.toContain(",");
    expect(parsePartEntry(entry)).toEqual({ etag, crc32c: 0xe3069283 });
    expect(partEntry(etag)).toBe(etag);
    expect(parsePartEntry(etag)).toEqual({ etag });
  });
});
