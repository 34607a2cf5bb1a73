import { BITS_PROTOCOL_GUID } from "../../functions/bits/constants.ts";
import type { Transport, WireResponse } from "./transports.ts";

const MIN_FRAGMENT = 5 * 1024;

export interface ClientOptions {
  /**
   * First fragment size. How Windows picks and grows its size is undocumented (docs/protocol.md,
   * "Fragment sizes Windows uses").
   */
  readonly initialFragment?: number;
  /** Largest fragment the client tries; Windows' is 13 MB. */
  readonly maxFragment?: number;
  /** Deterministic randomness for sizes, overlaps and drops. */
  readonly random?: () => number;
  /** Picks each fragment's start and length instead of the in-order default. */
  readonly nextFragment?: (
    offset: number,
    total: number,
    size: number,
    random: () => number,
  ) => {
    start: number;
    length: number;
  };
  /** Chance that a request's answer is lost (the client sees a dropped connection). */
  readonly dropRate?: number;
  /** Sends a Ping before Create-Session, after every resume and before Close-Session. */
  readonly ping?: boolean;
  /** Upper bound on requests, so a broken server cannot make a test loop forever. */
  readonly maxRequests?: number;
  /** Bytes per ranged GET of an upload-reply job's reply (Windows uses ranges too). */
  readonly replyRangeBytes?: number;
  /**
   * The job's Basic credentials (`bitsadmin /setcredentials JOB SERVER BASIC user pass`): sent
   * only in answer to a 401 challenge, then on every later request, as WinHTTP does.
   */
  readonly credentials?: { readonly user: string; readonly password: string };
}

export interface UploadOutcome {
  readonly sessionIds: string[];
  readonly requests: number;
  readonly statuses: number[];
  /** Upload-reply jobs: the final Ack's BITS-Reply-URL and the reply downloaded from it. */
  readonly replyUrl?: string;
  readonly reply?: Uint8Array;
}

const header = (response: WireResponse, name: string) => response.headers.get(name.toLowerCase());

/**
 * A client that behaves like the Windows one ([MC-BUP] 3.1.5): Create-Session, then fragments
 * that grow from 5 KB up to the maximum, shrink after 413, resume from
 * BITS-Received-Content-Range after 200/416 or a dropped connection, restart after
 * BG_E_SESSION_NOT_FOUND, resend on other 5xx, then Ping and Close-Session.
 */
export async function bitsUpload(
  transport: Transport,
  path: string,
  data: Uint8Array,
  options: ClientOptions = {},
): Promise<UploadOutcome> {
  const random = options.random ?? Math.random;
  const maxRequests = options.maxRequests ?? 100_000;
  const total = data.length;
  const sessionIds: string[] = [];
  const statuses: number[] = [];
  let requests = 0;

  let authorization: string | undefined;
  const send = async (headers: Record<string, string>, body: Uint8Array = new Uint8Array(0)) => {
    if (++requests > maxRequests) throw new Error(`gave up after ${maxRequests} requests`);
    const attempt = () =>
      transport({
        method: "BITS_POST",
        path,
        headers: {
          "User-Agent": "Microsoft BITS/7.8",
          ...headers,
          ...(authorization ? { Authorization: authorization } : {}),
        },
        body,
      });
    let response = await attempt();
    statuses.push(response.status);
    if (response.status === 401) {
      // [MC-BUP] 3.1.5.1.7: answer the challenge once with the job's credentials; a second 401
      // means they are wrong, and the job fails.
      const challenge = header(response, "www-authenticate") ?? "";
      if (authorization !== undefined || !options.credentials || !/^basic/i.test(challenge)) {
        throw new Error(`access denied (401, challenge ${JSON.stringify(challenge)})`);
      }
      const { user, password } = options.credentials;
      authorization = `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`;
      response = await attempt();
      statuses.push(response.status);
      if (response.status === 401) throw new Error("access denied (credentials refused)");
    }
    if (header(response, "bits-packet-type")?.toLowerCase() !== "ack") {
      throw new Error(`response ${response.status} is not an Ack`);
    }
    if ((options.dropRate ?? 0) > 0 && random() < (options.dropRate ?? 0)) {
      throw new Error("connection dropped (simulated lost answer)");
    }
    return response;
  };
  /** Resends a packet until it gets an answer: a dropped connection is retried. */
  const deliver = async (headers: Record<string, string>, body?: Uint8Array) => {
    for (;;) {
      try {
        return await send(headers, body);
      } catch (error) {
        if (!String(error).includes("dropped")) throw error;
      }
    }
  };
  const ping = async () => {
    if (options.ping) await deliver({ "BITS-Packet-Type": "Ping" });
  };
  const createSession = async () => {
    for (;;) {
      const response = await deliver({
        "BITS-Packet-Type": "Create-Session",
        "BITS-Supported-Protocols": BITS_PROTOCOL_GUID,
        "Content-Name": "file.bin",
      });
      if (response.status >= 500) continue;
      if (response.status !== 200) throw new Error(`Create-Session answered ${response.status}`);
      const id = header(response, "bits-session-id");
      if (!id) throw new Error("Create-Session Ack without BITS-Session-Id");
      sessionIds.push(id);
      return id;
    }
  };

  await ping();
  let sessionId = await createSession();
  let offset = 0;
  let replyUrl: string | undefined;
  let size = Math.max(MIN_FRAGMENT, options.initialFragment ?? MIN_FRAGMENT);
  const maxFragment = options.maxFragment ?? 13 * 1000 * 1000;
  let done = false;
  while (!done) {
    const pick = options.nextFragment?.(offset, total, size, random) ?? {
      start: offset,
      length: Math.min(size, total - offset),
    };
    const start = Math.min(pick.start, total);
    const length = Math.max(0, Math.min(pick.length, total - start));
    const range = total === 0 ? "bytes */0" : `bytes ${start}-${start + length - 1}/${total}`;
    let response: WireResponse;
    try {
      response = await send(
        {
          "BITS-Packet-Type": "Fragment",
          "BITS-Session-Id": sessionId,
          "Content-Name": "file.bin",
          "Content-Range": range,
        },
        data.subarray(start, start + length),
      );
    } catch (error) {
      if (!String(error).includes("dropped")) throw error;
      await ping(); // resume: the next fragment's Ack puts the client back in sync
      continue;
    }
    const code = header(response, "bits-error-code");
    if (response.status === 200 || response.status === 416) {
      const received = Number(header(response, "bits-received-content-range"));
      if (!Number.isSafeInteger(received) || received < 0 || received > total) {
        throw new Error(`bad BITS-Received-Content-Range on ${response.status}`);
      }
      offset = received;
      if (response.status === 200) size = Math.min(maxFragment, size * 2);
      done = offset === total && (total > 0 || response.status === 200);
      replyUrl = header(response, "bits-reply-url") ?? replyUrl;
    } else if (response.status === 413) {
      if (size <= MIN_FRAGMENT) throw new Error("413 at the minimum fragment size");
      size = Math.max(MIN_FRAGMENT, Math.floor(size / 2));
    } else if (code === "0x8020001F") {
      sessionId = await createSession(); // [MC-BUP] 3.1.5.2.1: restart from byte 0
      offset = 0;
    } else if (response.status >= 500 || response.status === 408 || response.status === 409) {
      // transient: resend the same packet (408 and 409 too, handling-server-application-errors)
    } else {
      throw new Error(`Fragment answered ${response.status} ${code ?? ""}`);
    }
  }
  // Upload-reply: the reply must be downloaded before Close-Session, which deletes it.
  const reply = replyUrl === undefined ? undefined : await download(replyUrl);
  await ping();
  for (;;) {
    const response = await deliver({
      "BITS-Packet-Type": "Close-Session",
      "BITS-Session-Id": sessionId,
      "Content-Name": "file.bin",
    });
    if (response.status === 200) break;
    if (response.status < 500 || header(response, "bits-error-code") === "0x8020001F") {
      throw new Error(`Close-Session answered ${response.status}`);
    }
  }
  return {
    sessionIds,
    requests,
    statuses,
    ...(replyUrl === undefined ? {} : { replyUrl }),
    ...(reply === undefined ? {} : { reply }),
  };

  /**
   * Downloads the reply as BITS does ([MC-BUP] 3.5): HEAD for the size, then ranged GETs,
   * following a redirect (the server's presigned S3 URL for large replies) with the same range.
   * This server's reply URLs go through the transport; a static reply URL is fetched directly.
   */
  async function download(url: string): Promise<Uint8Array> {
    const target = new URL(url);
    const ours = target.pathname.startsWith("/.bits-replies/");
    const get = async (method: string, range?: string) => {
      const headers: Record<string, string> = {
        "User-Agent": "Microsoft BITS/7.8",
        ...(range ? { Range: range } : {}),
        ...(authorization ? { Authorization: authorization } : {}),
      };
      if (++requests > maxRequests) throw new Error(`gave up after ${maxRequests} requests`);
      let response: WireResponse;
      if (ours) {
        response = await transport({
          method,
          path: `${target.pathname}${target.search}`,
          headers,
          body: new Uint8Array(0),
        });
      } else {
        response = await fetchWire(url, method, headers);
      }
      const location = header(response, "location");
      if (response.status === 302 && location)
        response = await fetchWire(location, method, headers);
      return response;
    };
    const head = await get("HEAD");
    if (head.status !== 200) throw new Error(`reply HEAD answered ${head.status}`);
    const size = Number(header(head, "content-length"));
    const parts: Uint8Array[] = [];
    const step = options.replyRangeBytes ?? 1024 * 1024;
    for (let start = 0; start < size; start += step) {
      const end = Math.min(size, start + step) - 1;
      const part = await get("GET", `bytes=${start}-${end}`);
      if (
        part.status !== 206 ||
        header(part, "content-range") !== `bytes ${start}-${end}/${size}`
      ) {
        throw new Error(`reply range ${start}-${end} answered ${part.status}`);
      }
      parts.push(part.body ?? new Uint8Array(0));
    }
    return Buffer.concat(parts);
  }
}

/** A plain HTTP request outside the transport (a redirect, a static reply URL). */
async function fetchWire(
  url: string,
  method: string,
  headers: Record<string, string>,
): Promise<WireResponse> {
  const { Authorization: _, ...rest } = headers;
  const response = await fetch(url, { method, headers: rest, redirect: "manual" });
  const body = method === "HEAD" ? new Uint8Array(0) : new Uint8Array(await response.arrayBuffer());
  const map = new Map<string, string>();
  response.headers.forEach((value, name) => {
    map.set(name.toLowerCase(), value);
  });
  return { status: response.status, headers: map, ...(body.length > 0 ? { body } : {}) };
}

/** A small deterministic PRNG (mulberry32) so every random schedule can be replayed. */
export function seeded(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

let pool: { seed: number; bytes: Uint8Array } | undefined;

/**
 * Deterministic file bytes from a xorshift stream (`randomBytes`): no short period, so a part
 * put at the wrong place (even one moved by a multiple of 256 or of a MiB) cannot compare equal
 * by accident. Every file of one seed is a prefix of the same stream; the last stream made (64
 * MiB at least) is kept, so many files of one seed cost one.
 */
export function fileOf(length: number, seed = 0x2545f491): Uint8Array {
  if (pool === undefined || pool.seed !== seed || pool.bytes.length < length) {
    const words = Math.ceil(Math.max(length, 64 * 1024 * 1024) / 4);
    pool = { seed, bytes: randomBytes(words * 4, seed) };
  }
  return pool.bytes.subarray(0, length);
}

/** Random bytes from a seed, quick enough for hundreds of MiB. */
export function randomBytes(length: number, seed = 1): Uint8Array {
  const out = new Uint8Array(length);
  const view = new DataView(out.buffer);
  let x = seed >>> 0 || 1;
  let i = 0;
  for (; i + 4 <= length; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    view.setUint32(i, x >>> 0);
  }
  for (; i < length; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    out[i] = x & 0xff;
  }
  return out;
}
