/**
 * The floor: what one fragment costs at the least for any server that acknowledges only bytes
 * durably in S3. The same local front door holds the body (its arrival), then one S3 write of
 * the same bytes with the server's own S3 adapter: a staged PUT below the part size, an
 * UploadPart at or above it. Nothing else: no session, no checksum, no record.
 */
import { startLocalServer } from "../../functions/adapters/node/local-server.ts";
import type { BitsRequest, BitsResponse } from "../../functions/bits/request.ts";
import type { ObjectStore } from "../../functions/ports/object-store.ts";
import { httpTransport } from "../../test/support/transports.ts";

/** Milliseconds per request, on average, to send `data` in fragments of `fragmentBytes`. */
export async function floorMs(
  objects: ObjectStore,
  data: Uint8Array,
  fragmentBytes: number,
  partBytes: number,
): Promise<number> {
  const key = `floor/${fragmentBytes}.bin`;
  const uploadId = fragmentBytes >= partBytes ? await objects.createUpload(key, "floor") : "";
  let part = 0;
  const written: string[] = [];
  const service = {
    async handle(request: BitsRequest): Promise<BitsResponse> {
      const start = Number(request.headers.get("x-start"));
      if (uploadId !== "") {
        await objects.uploadPart(key, uploadId, ++part, request.body);
      } else {
        const staged = `${key}.${start}`;
        await objects.putStaged(staged, request.body);
        written.push(staged);
      }
      return { status: 200, headers: { "Content-Length": "0" } };
    },
  };
  const running = await startLocalServer(
    {
      service,
      objects,
      // The floor serves no reads.
      authorizeRead: async () => ({
        kind: "refused",
        response: { status: 404, headers: { "Content-Length": "0" } },
        reason: "the floor serves no reads",
      }),
      maxBodyBytes: fragmentBytes,
    },
    0,
  );
  const transport = httpTransport(running.url);
  let requests = 0;
  const started = performance.now();
  try {
    for (let start = 0; start < data.length; start += fragmentBytes, requests++) {
      const body = data.subarray(start, Math.min(data.length, start + fragmentBytes));
      const response = await transport({
        method: "BITS_POST",
        path: "/floor.bin",
        headers: { "X-Start": String(start) },
        body,
      });
      if (response.status !== 200) throw new Error(`the floor's write answered ${response.status}`);
    }
    return (performance.now() - started) / requests;
  } finally {
    transport.close();
    await running.close();
    if (uploadId !== "") await objects.abortUpload(key, uploadId);
    await objects.delete(written);
  }
}
