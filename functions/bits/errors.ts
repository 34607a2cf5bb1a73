import { CONTEXT_SERVER, HRESULT } from "./constants.ts";

/**
 * The protocol errors this server answers with. Each maps to one HTTP status and, where the
 * status alone does not say it, one HRESULT ([MC-BUP] 2.2.1.2 error table; bits-protocol.md 6.3).
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
  /** Uploads are not enabled for this path (Windows answers 501, [MC-BUP] note <22>). */
  uploadsDisabled: { status: 501, code: HRESULT.E_ACCESSDENIED },
  /** Unknown, expired or ended session ([MC-BUP] 3.2.5.2.3). */
  sessionNotFound: { status: 500, code: HRESULT.BG_E_SESSION_NOT_FOUND },
  /** Total length above the configured maximum upload size ([MC-BUP] 2.2.1.2). */
  tooLarge: { status: 500, code: HRESULT.BG_E_TOO_LARGE },
  /** One request body above the per-request maximum: the client shrinks ([MC-BUP] 3.1.5.2.4). */
  fragmentTooLarge: { status: 413, code: undefined },
  /** Out of sync: the client resumes at BITS-Received-Content-Range ([MC-BUP] 3.2.5.2.6). */
  outOfSync: { status: 416, code: undefined },
  /** Anything unexpected, e.g. storage unavailable: 5xx is transient, the client resends. */
  internal: { status: 500, code: HRESULT.E_FAIL },
} as const satisfies Record<string, { status: number; code: number | undefined }>;

export type BitsErrorKind = keyof typeof ERRORS;

/** A protocol error: data, turned into an Ack in exactly one place (`toAck`). */
export class BitsError extends Error {
  readonly kind: BitsErrorKind;
  readonly context = CONTEXT_SERVER;

  constructor(kind: BitsErrorKind, message: string) {
    super(message);
    this.name = "BitsError";
    this.kind = kind;
  }

  get status(): number {
    return ERRORS[this.kind].status;
  }

  get code(): number | undefined {
    return ERRORS[this.kind].code;
  }
}

export const invalidArg = (message: string) => new BitsError("invalidArg", message);
