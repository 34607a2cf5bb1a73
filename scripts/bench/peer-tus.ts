/**
 * The peer in the benchmark: tus-node-server (`@tus/server` with `@tus/s3-store`) on the same S3
 * stand-in, uploaded to by `tus-js-client` in chunks of one fixed size, one request at a time,
 * like a BITS client keeping its fragment size. The S3 stand-in must answer ListParts
 * (stand-in-s3.ts).
 */
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { S3Store } from "@tus/s3-store";
import { Server } from "@tus/server";
import { Upload } from "tus-js-client";
import { STAND_IN_CREDENTIALS, STAND_IN_REGION } from "../../infra/stand-ins.ts";

export interface TusPeer {
  /** Uploads `data` in chunks of `chunkBytes`; returns the S3 key it ends up at. */
  upload(data: Uint8Array, chunkBytes: number): Promise<string>;
  close(): Promise<void>;
}

export async function startTusPeer(s3Endpoint: string, bucket: string): Promise<TusPeer> {
  const tus = new Server({
    path: "/files",
    datastore: new S3Store({
      s3ClientConfig: {
        bucket,
        endpoint: s3Endpoint,
        region: STAND_IN_REGION,
        forcePathStyle: true,
        credentials: STAND_IN_CREDENTIALS,
        requestChecksumCalculation: "WHEN_REQUIRED",
        responseChecksumValidation: "WHEN_REQUIRED",
      },
    }),
  });
  const http = createServer((req, res) => {
    tus.handle(req, res).catch(() => res.destroy());
  });
  await new Promise<void>((resolve) => http.listen(0, "127.0.0.1", resolve));
  const endpoint = `http://127.0.0.1:${(http.address() as AddressInfo).port}/files`;
  return {
    upload: (data, chunkBytes) =>
      new Promise((resolve, reject) => {
        const upload: Upload = new Upload(Buffer.from(data.buffer, data.byteOffset, data.length), {
          endpoint,
          chunkSize: chunkBytes,
          uploadSize: data.length,
          retryDelays: [],
          storeFingerprintForResuming: false,
          metadata: { filename: "file.bin" },
          onError: reject,
          onSuccess: () => {
            const id = new URL(upload.url ?? "", endpoint).pathname.split("/").pop() ?? "";
            resolve(id);
          },
        });
        upload.start();
      }),
    close: () =>
      new Promise<void>((resolve) => {
        http.close(() => resolve());
        http.closeAllConnections();
      }),
  };
}
