import { CONTEXT_APPLICATION, CONTEXT_SERVER, HRESULT, HTTP_ERROR_BASE } from "./constants.ts";

/**
 * The protocol errors this server answers with. Each maps to one HTTP status and, where the
 * status alone does not say it, one HRESULT ([MC-BUP] 2.2.1.2 error table; docs/protocol.md,
 * "Error codes").
 */
export const ERRORS = {
  /** Malformed packet, range, headers, protocol or destination ([MC-BUP] 3.2.5.2.3). */
  invalidArg: { status: 400, code: HRESULT.E_INVALIDARG },
  /** Destination exists and overwrite is off, or the caller may not write it ([MC-BUP] 2.2.1.2). */
  accessDenied: { status: 403, code: HRESULT.E_ACCESSDENIED },
  /**
   * Too many open sessions, for this principal or for the server: 503 is transient, so the
   * client tries again later ([MC-BUP] 3.2.7 lets a server shed sessions; docs/security.md).
   */
  sessionLimit: { status: 503, code: HRESULT.E_ACCESSDENIED },
  /**
   * Too many refused passwords from this address or for this user name: 503 with
   * `Retry-After`, transient to BITS, which tries again after its retry delay (429 would be
   * fatal: BITS treats 4xx but 408 and 409 as fatal). The code is what the client itself would
   * report for a bare 503, BG_E_HTTP_ERROR_503 (docs/security.md, "Password guessing").
   */
  retryLater: { status: 503, code: HTTP_ERROR_BASE + 503 },
  /** Uploads are not enabled for this path (Windows answers 501, [MC-BUP] note <22>). */
  uploadsDisabled: { status: 501, code: HRESULT.E_ACCESSDENIED },
  /** Unknown, expired or ended session ([MC-BUP] 3.2.5.2.3). */
  sessionNotFound: { status: 500, code: HRESULT.BG_E_SESSION_NOT_FOUND },
  /** Total length above the configured maximum upload size ([MC-BUP] 2.2.1.2). */
  tooLarge: { status: 500, code: HRESULT.BG_E_TOO_LARGE },
  /** One request body above the per-request maximum: the client shrinks ([MC-BUP] 3.1.5.2.4). */
  fragmentTooLarge: { status: 413, code: undefined },
  /** Anything unexpected, e.g. storage unavailable: 5xx is transient, the client resends. */
  internal: { status: 500, code: HRESULT.E_FAIL },
  /**
   * The notified server application failed ([MC-BUP] 3.2.5.1.3): its status and error code
   * are passed on with context 0x7; see `applicationError`.
   */
  application: { status: 500, code: HRESULT.E_FAIL },
} as const satisfies Record<string, { status: number; code: number | undefined }>;

export type BitsErrorKind = keyof typeof ERRORS;

/**
 * Kinds whose message is about the client's own request (its credentials, its URL, its
 * destination, its sizes), so the client may read it (docs/protocol.md, "Reasons").
 */
const TOLD_KINDS: ReadonlySet<BitsErrorKind> = new Set([
  "invalidArg",
  "accessDenied",
  "sessionLimit",
  "uploadsDisabled",
  "tooLarge",
]);

/** A protocol error: data, turned into an Ack in exactly one place (`toAck`). */
export class BitsError extends Error {
  readonly kind: BitsErrorKind;
  readonly context: number;
  /** Set where a message of another kind may be told to this client (`tellingClient`). */
  private told = false;
  private readonly override: { status: number; code: number } | undefined;

  constructor(
    kind: BitsErrorKind,
    message: string,
    override?: { status: number; code: number; context: number },
  ) {
    super(message);
    this.name = "BitsError";
    this.kind = kind;
    this.context = override?.context ?? CONTEXT_SERVER;
    this.override = override && { status: override.status, code: override.code };
  }

  get status(): number {
    return this.override?.status ?? ERRORS[this.kind].status;
  }

  get code(): number | undefined {
    return this.override?.code ?? ERRORS[this.kind].code;
  }

  /**
   * The message, where the client may read it: never for failures of the server or its
   * application, and for a lost session only where the caller marked it as the client's own.
   */
  get clientReason(): string | undefined {
    return this.told || TOLD_KINDS.has(this.kind) ? this.message : undefined;
  }

  /** Marks the message as one this client may read, e.g. why its own session ended. */
  tellingClient(): this {
    this.told = true;
    return this;
  }
}

/**
 * An error of the notified application, for the client: the application's status and error
 * code (or `BG_E_HTTP_ERROR_<status>`, 0x80190000 + status, as the client itself would name
 * it), context 0x7 ([MC-BUP] 3.2.5.2.6, 3.3.6).
 */
export function applicationError(status: number, code: number | undefined, message: string) {
  const valid = Number.isInteger(status) && status >= 300 && status <= 599 ? status : 500;
  return new BitsError("application", message, {
    status: valid,
    code: code ?? HTTP_ERROR_BASE + valid,
    context: CONTEXT_APPLICATION,
  });
}

export const invalidArg = (message: string) => new BitsError("invalidArg", message);
