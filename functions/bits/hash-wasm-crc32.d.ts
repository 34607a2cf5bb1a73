/**
 * hash-wasm's per-algorithm CRC-32 build (a UMD file, CommonJS under Node), which its package
 * ships without declarations of its own: the same `createCRC32` as the package's main entry.
 */
declare module "hash-wasm/dist/crc32.umd.min.js" {
  const crc32: { readonly createCRC32: typeof import("hash-wasm").createCRC32 };
  export default crc32;
}
