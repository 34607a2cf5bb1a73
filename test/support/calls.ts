import { BITS_PROTOCOL_GUID } from "../../functions/bits/constants.ts";
import { type BitsResponse, headerMap, type Peer } from "../../functions/bits/request.ts";
import type { UploadService } from "../../functions/service/upload-service.ts";

export interface Call {
  readonly headers?: Record<string, string>;
  readonly body?: Uint8Array;
  readonly path?: string;
  readonly method?: string;
  /** Leave Content-Length out (it is added by default, as every BITS client does). */
  readonly noContentLength?: boolean;
  /** The client as a front door would describe it. */
  readonly peer?: Peer;
}

/** Sends one packet straight to the service. */
export function call(service: UploadService, options: Call): Promise<BitsResponse> {
  const body = options.body ?? new Uint8Array(0);
  const headers = {
    ...(options.noContentLength ? {} : { "Content-Length": String(body.length) }),
    ...options.headers,
  };
  // A query string in `path` arrives decoded, as every front door hands it over.
  const [path = "/", search = ""] = (options.path ?? "/upload/file.txt").split("?");
  return service.handle({
    method: options.method ?? "BITS_POST",
    path,
    headers: headerMap(Object.entries(headers)),
    body,
    query: new Map(new URLSearchParams(search)),
    ...(options.peer ? { peer: options.peer } : {}),
  });
}

export async function createSession(service: UploadService, path = "/upload/file.txt") {
  const response = await call(service, {
    path,
    headers: {
      "BITS-Packet-Type": "Create-Session",
      "BITS-Supported-Protocols": BITS_PROTOCOL_GUID,
    },
  });
  const id = response.headers["BITS-Session-Id"];
  if (response.status !== 200 || id === undefined) {
    throw new Error(`Create-Session answered ${response.status}`);
  }
  return id;
}

export function fragment(
  service: UploadService,
  sessionId: string,
  data: Uint8Array,
  first: number,
  last: number,
  path = "/upload/file.txt",
) {
  return call(service, {
    path,
    headers: {
      "BITS-Packet-Type": "Fragment",
      "BITS-Session-Id": sessionId,
      "Content-Range": `bytes ${first}-${last}/${data.length}`,
    },
    body: data.subarray(first, last + 1),
  });
}

export function endSession(
  service: UploadService,
  type: "Close-Session" | "Cancel-Session",
  sessionId: string,
  path = "/upload/file.txt",
) {
  return call(service, {
    path,
    headers: { "BITS-Packet-Type": type, "BITS-Session-Id": sessionId },
  });
}
