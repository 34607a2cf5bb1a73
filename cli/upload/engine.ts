import { createHash } from "node:crypto";
import { basename, resolve } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import {
  ERROR_REASON_HEADER,
  OBJECT_CRC32C_HEADER,
  WANT_REASON_HEADER,
} from "../../functions/bits/ack.ts";
import { BITS_PROTOCOL_GUID, HRESULT } from "../../functions/bits/constants.ts";
import { GaveUpError, httpErrorCode, ProtocolError, RefusedError } from "./errors.ts";
import type { BodyConsumer, HttpClient, HttpResponse } from "./http.ts";
import { downloadReply, type ReplySink } from "./reply.ts";
import { retrying, TransientAnswer } from "./retry.ts";
import { FileSource } from "./source.ts";
import type { StateFile, UploadState } from "./state.ts";

/** Windows never sends a fragment below 5 KB, even after a 413 (docs/protocol.md). */
export const MIN_FRAGMENT = 5 * 1024;
/** The first fragment of a session; each accepted one doubles the next, up to the ceiling. */
const FIRST_FRAGMENT = 64 * 1024;
/** A session the server loses (BG_E_SESSION_NOT_FOUND) is started again at most this often. */
const MAX_RESTARTS = 3;
/**
 * Retries of a server that has not answered once in this run and cannot be reached (connection
 * refused, no such host): with the default first wait of 1 s, it is reported within seconds.
 */
const UNREACHABLE_RETRIES = 2;
/** Acks in a row that do not move the offset before the server is taken to be broken. */
const MAX_STALLS = 16;

export interface UploadJob {
  readonly file: string;
  /** The upload URL, signed-URL parameters included, without user and password. */
  readonly url: URL;
  readonly credentials?: { readonly user: string; readonly password: string } | undefined;
  /** `POST` with `X-Http-Method-Override: BITS_POST` instead of `BITS_POST`. */
  readonly methodOverride: boolean;
  /** The largest fragment this client sends; a 413 lowers it for this upload. */
  readonly maxFragment: number;
  /** Retries of one packet after transient failures, with exponential backoff. */
  readonly retries: number;
  /** The first backoff delay; each retry doubles it, up to 30 s. */
  readonly backoffMs: number;
  /** Bytes per second this client may send, averaged over the run. */
  readonly rateLimit?: number | undefined;
  readonly http: HttpClient;
  readonly state: StateFile;
  /** Where an upload-reply job's reply goes; without it, a reply is announced but not fetched. */
  readonly reply?: ReplySink | undefined;
  /** Fetch the stored object (a GET of the URL) and compare it with the file, where allowed. */
  readonly verify: boolean;
  readonly onEvent: (event: UploadEvent) => void;
}

export type UploadEvent =
  | { event: "session"; sessionId: string; resumed: boolean; offset: number }
  | { event: "progress"; bytes: number; total: number }
  | { event: "retry"; packet: string; reason: string; attempt: number; delayMs: number }
  | { event: "shrink"; fragmentSize: number }
  | { event: "restart"; reason: string }
  | { event: "reply"; url: string; bytes: number; file?: string | undefined }
  | { event: "warning"; message: string };

export interface UploadResult {
  readonly sessionId: string;
  readonly bytes: number;
  readonly sha256: string;
  /** Body bytes of the fragments the server took in this run (200), resent ones included. */
  readonly bytesSent: number;
  readonly fragments: number;
  /** Where this run resumed an interrupted session; undefined when it created its own. */
  readonly resumedFrom?: number | undefined;
  readonly restarts: number;
  /** true: the server's copy has the same SHA-256; false: it differs; null: not exposed. */
  readonly verified: boolean | null;
  readonly verifyNote?: string | undefined;
  readonly reply?: { readonly url: string; readonly bytes: number } | undefined;
}

/** One upload, as a Windows BITS client makes it ([MC-BUP] 3.1.5). */
export async function upload(job: UploadJob): Promise<UploadResult> {
  const source = await FileSource.open(job.file);
  try {
    return await new Uploader(job, source).run();
  } finally {
    await source.close();
  }
}

const header = (response: HttpResponse, name: string) => response.headers.get(name);
const isAck = (response: HttpResponse) =>
  header(response, "bits-packet-type")?.toLowerCase() === "ack";
const errorCode = (response: HttpResponse) => {
  const text = header(response, "bits-error-code");
  const code = text === undefined ? Number.NaN : Number.parseInt(text, 16);
  return Number.isFinite(code) ? code >>> 0 : undefined;
};
const errorContext = (response: HttpResponse) => {
  const text = header(response, "bits-error-context");
  return text === undefined ? undefined : Number.parseInt(text, 16);
};
const NOT_FOUND = HRESULT.BG_E_SESSION_NOT_FOUND >>> 0;
/** Why the server refused, where it says (docs/protocol.md, "Reasons"). */
const reasonOf = (response: HttpResponse) =>
  header(response, ERROR_REASON_HEADER.toLowerCase()) || undefined;
/** The reason the server gives a session's own client when an operator cancelled it. */
const OPERATOR_CANCEL = "cancelled by an operator";

class Uploader {
  private authorization: string | undefined;
  private sessionId: string | undefined;
  private protocol = BITS_PROTOCOL_GUID;
  private offset = 0;
  private phase: UploadState["phase"] = "sending";
  private replyUrl: string | undefined;
  private ceiling: number;
  private fragmentSize = FIRST_FRAGMENT;
  private bytesSent = 0;
  /** The stored object's CRC32C, as the server's Close-Session Ack reports it. */
  private storedCrc32c: string | undefined;
  /** Every body byte put on the wire, for --limit-rate. */
  private wireBytes = 0;
  private fragments = 0;
  private restarts = 0;
  /** Whether the server has answered once in this run (see UNREACHABLE_RETRIES). */
  private reached = false;
  private resumedFrom: number | undefined;
  private readonly started = Date.now();
  private readonly name: string;

  constructor(
    private readonly job: UploadJob,
    private readonly source: FileSource,
  ) {
    this.ceiling = Math.max(MIN_FRAGMENT, job.maxFragment);
    const name = basename(source.path);
    // Content-Name never names the destination (docs/protocol.md, "Destinations"); it is sent
    // as Windows sends it, and a header value must be Latin-1.
    this.name = /^[\x20-\x7e]*$/.test(name) ? name : encodeURIComponent(name);
  }

  async run(): Promise<UploadResult> {
    await this.resume();
    try {
      let reply: UploadResult["reply"];
      for (;;) {
        if (this.sessionId === undefined) await this.createSession();
        if (this.phase === "sending") await this.sendFragments();
        await this.source.checkUnchanged();
        if (this.phase === "reply") reply = await this.fetchReply();
        if (await this.closeSession()) break;
        await this.restart("Close-Session answered BG_E_SESSION_NOT_FOUND");
      }
      const sessionId = this.sessionId as string;
      this.job.state.remove();
      // A run that resumed after the last byte (at the reply or at Close) hashes the file now.
      await this.source.advance(this.source.size);
      const sha256 = this.source.sha256();
      const check = this.job.verify ? await this.verify(sha256) : { verified: null };
      const checksum = this.job.verify ? this.checkCrc32c() : { verified: null };
      return {
        sessionId,
        bytes: this.source.size,
        sha256,
        bytesSent: this.bytesSent,
        fragments: this.fragments,
        resumedFrom: this.resumedFrom,
        restarts: this.restarts,
        ...combined(check, checksum),
        reply,
      };
    } catch (error) {
      // Transient failures keep the session for the next run; anything else ends it.
      if (!(error instanceof GaveUpError) && this.sessionId !== undefined) {
        await this.cancel(this.job.url, this.sessionId);
        this.job.state.remove();
      }
      throw error;
    }
  }

  /** Picks up the session of an interrupted run of the same file and URL, if there is one. */
  private async resume() {
    const saved = this.job.state.load();
    if (saved === undefined) return;
    const why =
      saved.url !== this.job.url.href
        ? "the state file is for another URL"
        : saved.size !== this.source.size || saved.mtimeMs !== this.source.mtimeMs
          ? "the file changed since the interrupted upload"
          : undefined;
    if (why !== undefined) {
      this.job.onEvent({ event: "restart", reason: `${why}; starting over` });
      await this.cancel(new URL(saved.url), saved.sessionId);
      this.job.state.remove();
      return;
    }
    this.sessionId = saved.sessionId;
    this.protocol = saved.protocol;
    this.offset = saved.offset;
    this.phase = saved.phase;
    this.replyUrl = saved.replyUrl;
    if (saved.fragmentCeiling !== undefined) {
      this.ceiling = Math.max(MIN_FRAGMENT, Math.min(this.ceiling, saved.fragmentCeiling));
    }
    this.resumedFrom = saved.offset;
    this.job.onEvent({
      event: "session",
      sessionId: saved.sessionId,
      resumed: true,
      offset: saved.offset,
    });
  }

  private save() {
    if (this.sessionId === undefined) return;
    this.job.state.save({
      url: this.job.url.href,
      file: resolve(this.source.path),
      size: this.source.size,
      mtimeMs: this.source.mtimeMs,
      sessionId: this.sessionId,
      protocol: this.protocol,
      offset: this.offset,
      phase: this.phase,
      replyUrl: this.replyUrl,
      fragmentCeiling: this.ceiling < this.job.maxFragment ? this.ceiling : undefined,
    });
  }

  /** Create-Session with protocol negotiation ([MC-BUP] 2.2.2.2, 2.2.3.2). */
  private async createSession() {
    const response = await this.packet("Create-Session", {
      "BITS-Packet-Type": "Create-Session",
      "BITS-Supported-Protocols": BITS_PROTOCOL_GUID,
      "Content-Name": this.name,
    });
    if (response.status !== 200) throw this.refused("Create-Session", response);
    const protocol = header(response, "bits-protocol") ?? "";
    if (protocol.toLowerCase() !== BITS_PROTOCOL_GUID) {
      throw new ProtocolError(
        `the server chose protocol ${JSON.stringify(protocol)}, not ${BITS_PROTOCOL_GUID}`,
      );
    }
    const sessionId = header(response, "bits-session-id");
    if (!sessionId) throw new ProtocolError("Create-Session was answered without a session ID");
    this.sessionId = sessionId;
    this.protocol = BITS_PROTOCOL_GUID;
    this.offset = 0;
    this.phase = "sending";
    this.replyUrl = undefined;
    this.fragmentSize = FIRST_FRAGMENT;
    this.save();
    this.job.onEvent({ event: "session", sessionId, resumed: false, offset: 0 });
  }

  /**
   * Fragments from the server's offset until it holds the whole file. Sizes double from 64 KiB
   * up to the ceiling; a 413 halves the ceiling ([MC-BUP] 3.1.5.2.4); 200 and 416 both carry the
   * offset to continue from ([MC-BUP] 3.1.5.1.4); BG_E_SESSION_NOT_FOUND starts a new session
   * from byte 0 ([MC-BUP] 3.1.5.2.1).
   */
  private async sendFragments() {
    const total = this.source.size;
    // A resumed run learns where the server stands from its first, small fragment.
    this.fragmentSize = Math.min(this.fragmentSize, this.ceiling);
    for (let stalls = 0; ; ) {
      const start = this.offset;
      const length = Math.min(this.fragmentSize, total - start);
      const body = length > 0 ? await this.source.read(start, length) : new Uint8Array(0);
      const range = total === 0 ? "bytes */0" : `bytes ${start}-${start + length - 1}/${total}`;
      const response = await this.packet(
        "Fragment",
        {
          "BITS-Packet-Type": "Fragment",
          "BITS-Session-Id": this.sessionId as string,
          "Content-Name": this.name,
          "Content-Range": range,
        },
        body,
      );
      this.fragments += 1;
      await this.keepRate();
      const code = errorCode(response);
      if (response.status === 200 || response.status === 416) {
        const received = Number(header(response, "bits-received-content-range"));
        if (!Number.isSafeInteger(received) || received < 0 || received > total) {
          throw new ProtocolError(
            `the Fragment Ack (HTTP ${response.status}) carries no usable BITS-Received-Content-Range`,
          );
        }
        stalls = received > start ? 0 : stalls + 1;
        if (stalls > MAX_STALLS) {
          throw new ProtocolError(
            `the server acknowledged ${MAX_STALLS} fragments in a row without progress`,
          );
        }
        await this.source.advance(
          received,
          response.status === 200 ? { at: start, bytes: body } : undefined,
        );
        this.offset = received;
        if (response.status === 200) {
          this.bytesSent += body.length;
          this.fragmentSize = Math.min(this.ceiling, this.fragmentSize * 2);
        }
        const complete = received === total && (total > 0 || response.status === 200);
        if (complete) {
          this.replyUrl = header(response, "bits-reply-url") ?? this.replyUrl;
          this.phase = this.replyUrl === undefined ? "closing" : "reply";
        }
        this.save();
        this.job.onEvent({ event: "progress", bytes: received, total });
        if (complete) return;
      } else if (response.status === 413) {
        if (length <= MIN_FRAGMENT) {
          throw this.refused("Fragment", response, "even the smallest fragment is too large");
        }
        this.ceiling = Math.max(MIN_FRAGMENT, Math.floor(length / 2));
        this.fragmentSize = this.ceiling;
        this.save();
        this.job.onEvent({ event: "shrink", fragmentSize: this.ceiling });
      } else if (code === NOT_FOUND) {
        const reason = reasonOf(response);
        if (reason?.includes(OPERATOR_CANCEL)) {
          // Deliberate: starting over would undo the operator's decision.
          throw this.refused(
            "Fragment",
            response,
            "an operator cancelled this upload on the server; run the command again to upload the file anew",
          );
        }
        await this.restart(
          `Fragment answered BG_E_SESSION_NOT_FOUND${reason === undefined ? "" : ` (${reason})`}`,
        );
        await this.createSession();
      } else {
        throw this.refused("Fragment", response);
      }
    }
  }

  /** Upload-reply: the reply is fetched before Close-Session, which deletes it ([MC-BUP] 1.3.3). */
  private async fetchReply(): Promise<UploadResult["reply"]> {
    const url = this.replyUrl as string;
    let reply: UploadResult["reply"];
    if (this.job.reply === undefined) {
      this.job.onEvent({
        event: "warning",
        message: `the server has a reply for this upload (${url}); --reply FILE keeps it`,
      });
    } else {
      const target = new URL(url);
      // The job's credentials are for this server: a static reply URL elsewhere gets none.
      const fetch = (
        method: "GET" | "HEAD",
        where: URL,
        headers: Record<string, string>,
        consumer?: BodyConsumer,
      ) =>
        where.origin === this.job.url.origin
          ? this.fetch(method, where, headers, consumer)
          : this.job.http.fetch(method, where, { "User-Agent": USER_AGENT, ...headers }, consumer);
      const bytes = await downloadReply(fetch, target, this.job.reply, (what, attempt) =>
        this.retrying(what, attempt),
      );
      this.job.onEvent({ event: "reply", url, bytes, file: this.job.reply.name });
      reply = { url, bytes };
    }
    this.phase = "closing";
    this.save();
    return reply;
  }

  /** Close-Session ([MC-BUP] 3.2.5.2.7); false when the server lost the session. */
  private async closeSession(): Promise<boolean> {
    this.phase = "closing";
    this.save();
    const response = await this.packet("Close-Session", {
      "BITS-Packet-Type": "Close-Session",
      "BITS-Session-Id": this.sessionId as string,
      "Content-Name": this.name,
    });
    if (response.status === 200) {
      this.storedCrc32c = response.headers.get(OBJECT_CRC32C_HEADER.toLowerCase());
      return true;
    }
    if (errorCode(response) === NOT_FOUND) return false;
    throw this.refused("Close-Session", response);
  }

  private async restart(reason: string) {
    this.restarts += 1;
    if (this.restarts > MAX_RESTARTS) {
      throw new RefusedError("Fragment", 500, NOT_FOUND, undefined, `${reason} again`);
    }
    this.job.onEvent({ event: "restart", reason: `${reason}; starting over from byte 0` });
    this.sessionId = undefined;
    this.job.state.remove();
    await this.source.advance(0);
  }

  /** Ends a session this client gives up on, once and without waiting on failures. */
  private async cancel(url: URL, sessionId: string) {
    try {
      await this.authorized((auth) =>
        this.job.http.send(this.method, url, {
          ...this.packetHeaders({
            "BITS-Packet-Type": "Cancel-Session",
            "BITS-Session-Id": sessionId,
          }),
          ...auth,
        }),
      );
    } catch {
      // The session expires on the server by itself.
    }
  }

  /** Keeps the average sending rate at or below --limit-rate. */
  private async keepRate() {
    const rate = this.job.rateLimit;
    if (rate === undefined) return;
    const due = this.started + (this.wireBytes / rate) * 1000;
    const wait = due - Date.now();
    if (wait > 0) await sleep(wait);
  }

  /** The stored object's CRC32C, where the server reports it, against the file's. */
  private checkCrc32c(): Pick<UploadResult, "verified" | "verifyNote"> {
    const reported = this.storedCrc32c;
    if (reported === undefined) return { verified: null };
    const sent = this.source.crc32c();
    if (reported === sent) {
      return { verified: true, verifyNote: `the server reports the file's CRC32C (${sent})` };
    }
    return {
      verified: false,
      verifyNote: `the server reports CRC32C ${reported} for the stored object; the file's is ${sent}`,
    };
  }

  /** The stored object, fetched with a GET of the upload URL, against what was sent. */
  private async verify(sha256: string): Promise<Pick<UploadResult, "verified" | "verifyNote">> {
    let stored: { response: HttpResponse; size: number; sha256: string };
    try {
      stored = await this.retrying("verification", async () => {
        const hash = createHash("sha256");
        let size = 0;
        const response = await this.fetch("GET", this.job.url, {}, (answer) =>
          answer.status === 200
            ? (chunk) => {
                hash.update(chunk);
                size += chunk.length;
              }
            : undefined,
        );
        if (response.status >= 500) throw new TransientAnswer(`HTTP ${response.status}`);
        return { response, size, sha256: hash.digest("hex") };
      });
    } catch (error) {
      if (error instanceof GaveUpError || error instanceof RefusedError) {
        return {
          verified: null,
          verifyNote: `the stored object could not be read: ${error.message}`,
        };
      }
      throw error;
    }
    const { status } = stored.response;
    if (status !== 200) {
      return {
        verified: null,
        verifyNote: `the server does not serve the stored object (GET answered ${status})`,
      };
    }
    if (stored.sha256 === sha256 && stored.size === this.source.size) {
      return { verified: true, verifyNote: "a GET of the URL returned the same SHA-256" };
    }
    return {
      verified: false,
      verifyNote: `a GET of the URL returned ${stored.size} bytes with SHA-256 ${stored.sha256}`,
    };
  }

  private get method() {
    return this.job.methodOverride ? "POST" : "BITS_POST";
  }

  private packetHeaders(headers: Record<string, string>): Record<string, string> {
    return {
      "User-Agent": USER_AGENT,
      [WANT_REASON_HEADER]: "1",
      ...(this.job.methodOverride ? { "X-Http-Method-Override": "BITS_POST" } : {}),
      ...headers,
    };
  }

  /** A GET or HEAD with the job's credentials (BITS sends them for the reply too). */
  private fetch(
    method: "GET" | "HEAD",
    url: URL,
    headers: Record<string, string>,
    consumer?: BodyConsumer,
  ) {
    return this.authorized((auth) =>
      this.job.http.fetch(method, url, { "User-Agent": USER_AGENT, ...headers, ...auth }, consumer),
    );
  }

  /**
   * One BITS packet, resent after network failures and transient answers. Answers the Ack the
   * caller decides on: 200, 416, 413 or an error code.
   */
  private packet(name: string, headers: Record<string, string>, body?: Uint8Array) {
    const sent = this.packetHeaders(headers);
    return this.retrying(name, async () => {
      const response = await this.authorized((auth) =>
        this.job.http.send(this.method, this.job.url, { ...sent, ...auth }, body),
      );
      this.wireBytes += body?.length ?? 0;
      return this.judge(name, response);
    });
  }

  /** Which answers are worth resending the packet for (docs/protocol.md, "Error codes"). */
  private judge(name: string, response: HttpResponse): HttpResponse {
    const { status } = response;
    const transient =
      status === 408 ||
      status === 409 ||
      status === 429 ||
      (status >= 500 && status !== 501 && status !== 505);
    if (!isAck(response)) {
      if (transient) throw new TransientAnswer(`HTTP ${status} (not a BITS Ack)`);
      const hint =
        status === 405 && !this.job.methodOverride
          ? "the server does not take BITS_POST here; behind a front door that passes only standard methods, try --method-override"
          : "not a BITS server's answer";
      throw this.refused(name, response, hint);
    }
    const code = errorCode(response);
    if (transient && code !== NOT_FOUND && code !== HRESULT.BG_E_TOO_LARGE >>> 0) {
      const bits = code === undefined ? "" : ` ${header(response, "bits-error-code")}`;
      throw new TransientAnswer(`HTTP ${status}${bits}`);
    }
    return response;
  }

  private retrying<T>(what: string, attempt: () => Promise<T>): Promise<T> {
    return retrying(
      {
        retries: this.job.retries,
        backoffMs: this.job.backoffMs,
        unreachable: { retries: UNREACHABLE_RETRIES, reached: () => this.reached },
        onRetry: (retry) =>
          this.job.onEvent({
            event: "retry",
            packet: retry.what,
            reason: retry.reason,
            attempt: retry.attempt,
            delayMs: retry.delayMs,
          }),
      },
      what,
      attempt,
    );
  }

  /**
   * Sends with the job's credentials once the server has asked for them, as BITS does
   * ([MC-BUP] 3.1.5.1.7): a 401 with a Basic challenge is answered once; a second one means
   * the credentials are wrong.
   */
  private async authorized(
    send: (auth: Record<string, string>) => Promise<HttpResponse>,
  ): Promise<HttpResponse> {
    const auth = () =>
      this.authorization === undefined ? {} : { Authorization: this.authorization };
    const response = await send(auth());
    this.reached = true;
    if (response.status !== 401) return response;
    const challenge = header(response, "www-authenticate") ?? "";
    const credentials = this.job.credentials;
    if (this.authorization === undefined && credentials && /^basic\b/i.test(challenge)) {
      const pair = Buffer.from(`${credentials.user}:${credentials.password}`, "utf8");
      this.authorization = `Basic ${pair.toString("base64")}`;
      return this.authorized(send);
    }
    const hint =
      this.authorization !== undefined
        ? "the server refused the credentials"
        : credentials
          ? `the server asks for credentials this client cannot give (${challenge})`
          : "the server asks for credentials: give --user (or a signed URL)";
    throw new RefusedError("the request", 401, httpErrorCode(401), undefined, hint);
  }

  private refused(name: string, response: HttpResponse, hint?: string) {
    return new RefusedError(
      name,
      response.status,
      errorCode(response) ?? httpErrorCode(response.status),
      errorContext(response),
      hint,
      reasonOf(response),
    );
  }
}

const USER_AGENT = `bits-upload (Node.js ${process.version})`;

/**
 * Both checks together: the stored object differs if either says so, and is verified when at
 * least one could check and none found a difference.
 */
function combined(
  ...checks: Pick<UploadResult, "verified" | "verifyNote">[]
): Pick<UploadResult, "verified" | "verifyNote"> {
  const made = checks.filter((check) => check.verified !== null);
  const notes = checks.flatMap((check) => (check.verifyNote ? [check.verifyNote] : []));
  const verifyNote = notes.length > 0 ? notes.join("; ") : undefined;
  if (made.length === 0) return { verified: null, verifyNote };
  return { verified: made.every((check) => check.verified === true), verifyNote };
}
