/**
 * CRC32C (Castagnoli, reflected polynomial 0x82F63B78): the full-object checksum every stored
 * file carries (docs/checksums.md). Pure; no I/O.
 *
 * The bytes are checksummed by hash-wasm's CRC-32 (WebAssembly, given the Castagnoli
 * polynomial): on Node 20 it does about 1,500 MiB/s, two to three times the slicing-by-16 tables
 * this file used before and five times the AWS SDK's own byte-at-a-time `Crc32cJs` (numbers in
 * docs/checksums.md), and it runs wherever Node does, Lambda's x86_64 and arm64 alike, with no
 * native module to build per architecture. Its per-algorithm build is imported, about 7 KB,
 * because the package's main entry brings every hash it has into the bundle (over 200 KB). The
 * combining of two CRCs is written here: no library at hand does it, and it is what lets the
 * server checksum a file fragment by fragment without ever holding all of it.
 */
import hashWasmCrc32 from "hash-wasm/dist/crc32.umd.min.js";

const POLY = 0x82f63b78;

/**
 * One hasher for the process: `crc32c` runs it from `init` to `digest` without yielding, so no
 * two computations ever share its state. Compiling the WebAssembly module is asynchronous,
 * hence the await when this module is first imported (a few milliseconds, once per process).
 */
const hasher = await hashWasmCrc32.createCRC32(POLY);

/**
 * CRC32C of `bytes`, continuing from `crc` (the CRC of whatever came before; 0 for nothing).
 * Answers an unsigned 32-bit number.
 */
export function crc32c(bytes: Uint8Array, crc = 0): number {
  hasher.init();
  hasher.update(bytes);
  const digest = hasher.digest("binary");
  const own = new DataView(digest.buffer, digest.byteOffset, 4).getUint32(0, false);
  // The hasher always starts from nothing; what came before is folded in (a no-op for 0).
  return crc === 0 ? own : crc32cCombine(crc, own, bytes.length);
}

/**
 * `a * b modulo p(x)`, polynomials over GF(2) in the reflected bit order (x^0 is the top bit),
 * as zlib's `multmodp`.
 */
function multModP(a: number, b: number): number {
  let m = 0x80000000;
  let p = 0;
  for (;;) {
    if (a & m) {
      p ^= b;
      if ((a & (m - 1)) === 0) break;
    }
    m >>>= 1;
    b = b & 1 ? (b >>> 1) ^ POLY : b >>> 1;
  }
  return p >>> 0;
}

/**
 * `X2N[k]` = x^(2^k) modulo p(x), for every k a byte count up to 2^53 needs. zlib keeps 32
 * entries and wraps k at 32, which holds for its own polynomial (x^(2^32) = x there) but not
 * for Castagnoli's: wrapped, lengths of 2^32 bytes and more come out wrong.
 */
const X2N = (() => {
  const table = new Uint32Array(64);
  let p = 0x40000000; // x^1
  table[0] = p;
  for (let k = 1; k < 64; k++) {
    p = multModP(p, p);
    table[k] = p;
  }
  return table;
})();

/**
 * x^(n * 2^k) modulo p(x). `n` is a byte count up to 2^53, so it is halved with arithmetic,
 * never with 32-bit shifts (a 5 TiB file is over 2^42 bytes).
 */
function x2nModP(n: number, k: number): number {
  let p = 0x80000000; // x^0
  while (n > 0) {
    if (n % 2 === 1) p = multModP(X2N[k] as number, p);
    n = Math.floor(n / 2);
    k++;
  }
  return p;
}

/**
 * The CRC32C of A followed by B, from the CRC of A, the CRC of B and the length of B in bytes
 * (zlib's `crc32_combine`, with the Castagnoli polynomial). Costs O(log lengthB).
 */
export function crc32cCombine(crcA: number, crcB: number, lengthB: number): number {
  if (!Number.isSafeInteger(lengthB) || lengthB < 0) {
    throw new RangeError(`crc32cCombine: bad length ${lengthB}`);
  }
  return (multModP(x2nModP(lengthB, 3), crcA >>> 0) ^ crcB) >>> 0;
}

/** A CRC32C as S3 writes it (`x-amz-checksum-crc32c`): four bytes big-endian, in base64. */
export function crc32cBase64(value: number): string {
  const bytes = new Uint8Array(4);
  new DataView(bytes.buffer).setUint32(0, value >>> 0, false);
  return Buffer.from(bytes).toString("base64");
}

/** The inverse of `crc32cBase64`; undefined for anything that is not four bytes of base64. */
export function crc32cFromBase64(text: string): number | undefined {
  if (!/^[A-Za-z0-9+/]{6}==$/.test(text)) return undefined;
  const bytes = Buffer.from(text, "base64");
  return bytes.length === 4 ? bytes.readUInt32BE(0) : undefined;
}

/**
 * Part entries in the session record: a part's ETag and, for parts whose CRC32C the server
 * computed, `|` and that CRC in base64 (neither an ETag nor base64 has a `|`, and entries are
 * joined with commas in the session table). An entry without `|` is a part of a record written
 * before checksums were kept: its CRC is unknown.
 */
export interface PartEntry {
  readonly etag: string;
  readonly crc32c?: number | undefined;
}

const PART_SEPARATOR = "|";

export function partEntry(etag: string, crc?: number): string {
  return crc === undefined ? etag : `${etag}${PART_SEPARATOR}${crc32cBase64(crc)}`;
}

export function parsePartEntry(entry: string): PartEntry {
  const at = entry.lastIndexOf(PART_SEPARATOR);
  if (at < 0) return { etag: entry };
  return { etag: entry.slice(0, at), crc32c: crc32cFromBase64(entry.slice(at + 1)) };
}
