import { type FileHandle, open, rename, rm } from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";
import { httpErrorCode, ProtocolError, RefusedError } from "./errors.ts";
import type { BodyConsumer, HttpResponse } from "./http.ts";
import { TransientAnswer } from "./retry.ts";

/** Bytes per ranged GET: below the 700,000 a reply URL serves before redirecting to S3. */
const RANGE_BYTES = 512 * 1024;

/** Where a reply goes: a file (written whole or not at all) or standard output. */
export interface ReplySink {
  /** The file's path; undefined for standard output. */
  readonly name: string | undefined;
  begin(): Promise<ReplyWriter>;
}

interface ReplyWriter {
  write(chunk: Buffer): Promise<void>;
  commit(): Promise<void>;
  abort(): Promise<void>;
}

/** The reply into `path`, through a temporary file beside it renamed into place when complete. */
export function replyToFile(path: string): ReplySink {
  const target = resolve(path);
  return {
    name: target,
    async begin() {
      const partial = join(dirname(target), `.${basename(target)}.${process.pid}.part`);
      const handle: FileHandle = await open(partial, "w");
      return {
        write: async (chunk) => {
          await handle.write(chunk);
        },
        commit: async () => {
          await handle.close();
          await rename(partial, target);
        },
        abort: async () => {
          await handle.close().catch(() => {});
          await rm(partial, { force: true });
        },
      };
    },
  };
}

/** The reply on standard output, as it arrives. */
export function replyToStdout(): ReplySink {
  return {
    name: undefined,
    async begin() {
      return {
        write: (chunk) =>
          new Promise<void>((done, fail) =>
            process.stdout.write(chunk, (error) => (error ? fail(error) : done())),
          ),
        commit: async () => {},
        abort: async () => {},
      };
    },
  };
}

/** A GET or HEAD with the job's credentials where they belong (see Uploader.authorized). */
export type Fetch = (
  method: "GET" | "HEAD",
  url: URL,
  headers: Record<string, string>,
  consumer?: BodyConsumer,
) => Promise<HttpResponse>;

/**
 * Downloads an upload-reply job's reply as BITS downloads it ([MC-BUP] 3.5.5): HEAD for the
 * size, then ranged GETs, each retried from the byte it stopped at, so nothing is written twice
 * (standard output included) and nothing is held whole. Answers the number of bytes written.
 */
export async function downloadReply(
  fetch: Fetch,
  url: URL,
  sink: ReplySink,
  retry: <T>(what: string, attempt: () => Promise<T>) => Promise<T>,
): Promise<number> {
  const head = await retry("reply HEAD", async () => checked(await fetch("HEAD", url, {})));
  const size = Number(head.headers.get("content-length"));
  if (head.status !== 200 || !Number.isSafeInteger(size) || size < 0) {
    throw new ProtocolError(`the reply's HEAD answered ${head.status} without a usable size`);
  }
  const writer = await sink.begin();
  let written = 0;
  try {
    while (written < size) {
      const start = written;
      const end = Math.min(size, start + RANGE_BYTES) - 1;
      await retry("reply download", async () => {
        const from = written;
        const response = await fetch("GET", url, { Range: `bytes=${from}-${end}` }, (answer) => {
          const range = answer.headers.get("content-range") ?? "";
          const fits =
            (answer.status === 206 && range.startsWith(`bytes ${from}-`)) ||
            (answer.status === 200 && from === 0);
          if (!fits) return undefined;
          return async (chunk) => {
            const keep = chunk.subarray(0, Math.max(0, size - written));
            await writer.write(keep);
            written += keep.length;
          };
        });
        checked(response);
        if (response.status !== 206 && response.status !== 200) {
          throw new ProtocolError(`the reply's GET answered ${response.status}`);
        }
        if (written === from) throw new TransientAnswer("the reply's GET brought no bytes");
      });
    }
    await writer.commit();
  } catch (error) {
    await writer.abort();
    throw error;
  }
  return written;
}

/** 5xx and 408 are tried again; other errors end the download. */
function checked(response: HttpResponse): HttpResponse {
  const { status } = response;
  if (status === 408 || status === 429 || (status >= 500 && status !== 501)) {
    throw new TransientAnswer(`HTTP ${status}`);
  }
  if (status >= 400) {
    throw new RefusedError("the reply download", status, httpErrorCode(status), undefined);
  }
  return response;
}
