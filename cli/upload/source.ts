import { createHash, type Hash } from "node:crypto";
import { type FileHandle, open } from "node:fs/promises";
import { crc32c, crc32cBase64 } from "../../functions/bits/crc32c.ts";
import { LocalFileError } from "./errors.ts";

const READ_CHUNK = 1024 * 1024;

/**
 * The file being uploaded, read fragment by fragment at the offsets the server asks for: at most
 * one fragment is in memory. Its SHA-256 follows the server's offset, so when the last byte is
 * acknowledged it is the hash of exactly what the server holds, in order, whatever was resent,
 * skipped (a resumed session) or rewound on the way. Its CRC32C is kept the same way, to compare
 * with the one the server reports for the stored object (docs/checksums.md).
 */
export class FileSource {
  private hash: Hash = createHash("sha256");
  private crc = 0;
  private hashedTo = 0;

  private constructor(
    private readonly handle: FileHandle,
    readonly path: string,
    readonly size: number,
    readonly mtimeMs: number,
  ) {}

  static async open(path: string): Promise<FileSource> {
    let handle: FileHandle;
    try {
      handle = await open(path, "r");
    } catch (error) {
      throw new LocalFileError(`cannot read ${path}: ${(error as Error).message}`);
    }
    const stat = await handle.stat();
    if (!stat.isFile()) {
      await handle.close();
      throw new LocalFileError(`${path} is not a file`);
    }
    return new FileSource(handle, path, stat.size, stat.mtimeMs);
  }

  /** Bytes `[start, start + length)`; a short read means the file shrank under us. */
  async read(start: number, length: number): Promise<Buffer> {
    const buffer = Buffer.allocUnsafe(length);
    let filled = 0;
    while (filled < length) {
      const { bytesRead } = await this.handle.read(buffer, filled, length - filled, start + filled);
      if (bytesRead === 0) throw this.changed();
      filled += bytesRead;
    }
    return buffer;
  }

  /**
   * The server now holds `[0, offset)`. `sent` is the fragment that got it there (starting at
   * `sentAt`); its bytes are hashed without reading the file again when they are the next ones.
   */
  async advance(offset: number, sent?: { at: number; bytes: Uint8Array }) {
    if (offset < this.hashedTo) {
      // The server went back (it lost bytes it had staged, or a new session): hash from 0 again.
      this.hash = createHash("sha256");
      this.crc = 0;
      this.hashedTo = 0;
    }
    if (sent && sent.at <= this.hashedTo && offset <= sent.at + sent.bytes.length) {
      this.update(sent.bytes.subarray(this.hashedTo - sent.at, offset - sent.at));
      this.hashedTo = offset;
      return;
    }
    while (this.hashedTo < offset) {
      const length = Math.min(READ_CHUNK, offset - this.hashedTo);
      this.update(await this.read(this.hashedTo, length));
      this.hashedTo += length;
    }
  }

  private update(bytes: Uint8Array) {
    this.hash.update(bytes);
    this.crc = crc32c(bytes, this.crc);
  }

  /** The whole file's CRC32C, base64 as S3 writes it, once the server holds all of it. */
  crc32c(): string {
    if (this.hashedTo !== this.size) throw new Error("the file is not completely hashed");
    return crc32cBase64(this.crc);
  }

  /** The SHA-256 (hex) of the whole file, once the server holds all of it. */
  sha256(): string {
    if (this.hashedTo !== this.size) throw new Error("the file is not completely hashed");
    return this.hash.copy().digest("hex");
  }

  /** Fails when the file is no longer the one that was uploaded (its size or time changed). */
  async checkUnchanged() {
    const stat = await this.handle.stat();
    if (stat.size !== this.size || stat.mtimeMs !== this.mtimeMs) throw this.changed();
  }

  close() {
    return this.handle.close();
  }

  private changed() {
    return new LocalFileError(
      `${this.path} changed while it was uploaded; run the command again to upload it from the start`,
    );
  }
}
