/**
 * CRC32C (Castagnoli, reflected polynomial 0x82F63B78): the full-object checksum every stored
 * file carries (docs/checksums.md). Pure; no I/O.
 *
 * Written here rather than taken from a library for two reasons: the AWS SDK's own JavaScript
 * CRC32C (`Crc32cJs`) works a byte at a time, about three times slower than the slicing-by-16
 * tables below (numbers in docs/checksums.md), and no library at hand combines two CRCs, which
 * is what lets the server checksum a file fragment by fragment without ever holding all of it.
 */

const POLY = 0x82f63b78;
const SLICES = 16;

/** `TABLE[k * 256 + n]`: the CRC of byte `n` followed by `k` zero bytes (slicing-by-16). */
const TABLE = (() => {
  const table = new Int32Array(SLICES * 256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ POLY : c >>> 1;
    table[n] = c;
  }
  for (let n = 0; n < 256; n++) {
    let c = table[n] as number;
    for (let k = 1; k < SLICES; k++) {
      c = (table[c & 0xff] as number) ^ (c >>> 8);
      table[k * 256 + n] = c;
    }
  }
  return table;
})();

/**
 * CRC32C of `bytes`, continuing from `crc` (the CRC of whatever came before; 0 for nothing).
 * Answers an unsigned 32-bit number.
 */
export function crc32c(bytes: Uint8Array, crc = 0): number {
  const t = TABLE;
  let c = ~crc;
  let i = 0;
  const fast = bytes.length - (bytes.length % SLICES);
  while (i < fast) {
    const b = bytes;
    c ^= (b[i] as number) | ((b[i + 1] as number) << 8);
    c ^= ((b[i + 2] as number) << 16) | ((b[i + 3] as number) << 24);
    c =
      (t[3840 + (c & 0xff)] as number) ^
      (t[3584 + ((c >>> 8) & 0xff)] as number) ^
      (t[3328 + ((c >>> 16) & 0xff)] as number) ^
      (t[3072 + (c >>> 24)] as number) ^
      (t[2816 + (b[i + 4] as number)] as number) ^
      (t[2560 + (b[i + 5] as number)] as number) ^
      (t[2304 + (b[i + 6] as number)] as number) ^
      (t[2048 + (b[i + 7] as number)] as number) ^
      (t[1792 + (b[i + 8] as number)] as number) ^
      (t[1536 + (b[i + 9] as number)] as number) ^
      (t[1280 + (b[i + 10] as number)] as number) ^
      (t[1024 + (b[i + 11] as number)] as number) ^
      (t[768 + (b[i + 12] as number)] as number) ^
      (t[512 + (b[i + 13] as number)] as number) ^
      (t[256 + (b[i + 14] as number)] as number) ^
      (t[b[i + 15] as number] as number);
    i += SLICES;
  }
  while (i < bytes.length) {
    c = (t[(c ^ (bytes[i] as number)) & 0xff] as number) ^ (c >>> 8);
    i++;
  }
  return ~c >>> 0;
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
