import { STATUS_CODES } from "node:http";
import { formatHresult } from "../../functions/bits/ack.ts";
import { CONTEXT_APPLICATION, HRESULT, HTTP_ERROR_BASE } from "../../functions/bits/constants.ts";

/** What `bits-upload` exits with; docs/client.md lists them. */
export const EXIT = {
  ok: 0,
  /** The server refused the upload for good: a BITS error code, or an HTTP status. */
  refused: 1,
  /** The command line is wrong. */
  usage: 2,
  /** The local file cannot be read, or it changed during the upload. */
  localFile: 3,
  /** Transient failures (network, 5xx) went on past the retries; the state file is kept. */
  gaveUp: 4,
  /** The server's copy of the file is not what was sent. */
  mismatch: 5,
  /** Stopped by SIGINT or SIGTERM; the state file is kept. */
  interrupted: 130,
} as const;

export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

/**
 * What each HRESULT the server answers means to the person uploading. Keyed by the server's own
 * table of codes (functions/bits/constants.ts), so a code added there must be explained here.
 */
const MEANINGS: Record<keyof typeof HRESULT, string> = {
  E_INVALIDARG:
    "the server found the request malformed (packet, range, protocol or destination path)",
  E_ACCESSDENIED:
    "access denied: the destination exists and may not be overwritten, the credentials or signed URL do not allow this destination, or uploads are not enabled on this path",
  E_FAIL: "the server failed (storage unavailable or another transient failure)",
  BG_E_SESSION_NOT_FOUND:
    "the server does not know the upload session (unknown, expired, ended, or its file could not be completed)",
  BG_E_TOO_LARGE: "the file is larger than the server or the signed URL allows",
  ERROR_TIMEOUT: "the server's application did not answer in time",
};

const NAMES = new Map<number, keyof typeof HRESULT>(
  (Object.entries(HRESULT) as [keyof typeof HRESULT, number][]).map(([name, code]) => [
    code >>> 0,
    name,
  ]),
);

/**
 * A code's meaning with the server's own reason, where it gave one: "access denied: <reason>"
 * in place of the list of what a 403 can mean.
 */
function withReason(meaning: string, reason: string | undefined): string {
  if (reason === undefined) return meaning;
  const colon = meaning.indexOf(":");
  return colon > 0
    ? `${meaning.slice(0, colon)}: ${reason}`
    : `${meaning}; the server says: ${reason}`;
}

/** An HRESULT as `0x8020001F BG_E_SESSION_NOT_FOUND: <meaning>` (docs/protocol.md, "Error codes"). */
export function describeHresult(code: number, reason?: string): string {
  const hex = formatHresult(code);
  const name = NAMES.get(code >>> 0);
  if (name !== undefined) return `${hex} ${name}: ${withReason(MEANINGS[name], reason)}`;
  const status = (code >>> 0) - HTTP_ERROR_BASE;
  if (status >= 100 && status <= 599) {
    return `${hex} BG_E_HTTP_ERROR_${status}: the server answered HTTP ${status} ${STATUS_CODES[status] ?? ""}`.trimEnd();
  }
  return `${hex}: an error code this client does not know`;
}

/**
 * What an error of the server's notified application means ([MC-BUP] 3.2.5.2.6): the server
 * passes on the application's status, 502 where it could not reach it, 408 where it did not
 * answer in time (docs/upload-reply.md).
 */
function applicationMeaning(status: number, code: number): string {
  if (status === 502) {
    return "the server could not reach its application, or the application failed; ask the server's operator";
  }
  if (status === 408 || code >>> 0 === HRESULT.ERROR_TIMEOUT >>> 0) {
    return "the server's application did not answer in time";
  }
  return `the server's application refused the upload with HTTP ${status}`;
}

/** The HRESULT a client reports for an HTTP status without a BITS error (docs/protocol.md). */
export const httpErrorCode = (status: number) => (HTTP_ERROR_BASE + status) >>> 0;

/** An error that ends the run with its own exit code. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: ExitCode,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

/** An answer of the server that ends the upload: exit 1 with its code and meaning. */
export class RefusedError extends CliError {
  constructor(
    readonly packet: string,
    readonly status: number,
    readonly code: number,
    readonly context: number | undefined,
    readonly hint?: string,
    /** Why the server refused, where it says so (docs/protocol.md, "Reasons"). */
    readonly reason?: string,
  ) {
    const text =
      context === CONTEXT_APPLICATION
        ? `${applicationMeaning(status, code)}: ${describeHresult(code)} (HTTP ${status} to ${packet}, from the server's application)`
        : `${describeHresult(code, reason)} (HTTP ${status} to ${packet})`;
    super(hint ? `${text}; ${hint}` : text, EXIT.refused);
  }
}

/** A kind of CliError that always exits with the same code. */
function exitingWith(exitCode: ExitCode) {
  return class extends CliError {
    constructor(message: string) {
      super(message, exitCode);
    }
  };
}

/** An answer that breaks the protocol (no session ID, an offset out of range): exit 1. */
export class ProtocolError extends exitingWith(EXIT.refused) {}

/** The TLS connection cannot be trusted or is refused: retrying would not change that. */
export class TlsError extends exitingWith(EXIT.refused) {}

/** The local file cannot be read, or it changed while it was uploaded. */
export class LocalFileError extends exitingWith(EXIT.localFile) {}

/** Transient failures outlasted the retries. */
export class GaveUpError extends exitingWith(EXIT.gaveUp) {}

/** The command line cannot be understood. */
export class UsageError extends exitingWith(EXIT.usage) {}

/** The exit code an error stands for; anything unexpected counts as a failed upload (1). */
export function exitCodeOf(error: unknown): ExitCode {
  return error instanceof CliError ? error.exitCode : EXIT.refused;
}
