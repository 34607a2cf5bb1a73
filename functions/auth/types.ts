/**
 * Authentication: who sends a request. BITS clients can answer a Basic challenge, present a
 * client certificate, or carry whatever the URL's query string holds (docs/security.md).
 */

/** The ways a request may authenticate; a deployment enables one or more of them. */
export type AuthMode = "anonymous" | "basic" | "signed-url" | "client-cert";

export const AUTH_MODES: readonly AuthMode[] = ["anonymous", "basic", "signed-url", "client-cert"];

/** What a signed upload URL authorizes (docs/security.md, "Signed upload URLs"). */
export interface UrlGrant {
  /** The destination path the URL names (`/a/b.zip`), or a prefix ending in `/` (`/a/`). */
  readonly path: string;
  /** True when `path` is a prefix: any destination under it may be written. */
  readonly prefix: boolean;
  /** Epoch seconds after which no new upload may start with this URL. */
  readonly expiresAt: number;
  /** Largest file the URL allows, in bytes; undefined for the server's own limit. */
  readonly maxBytes?: number | undefined;
  /** The key ID that signed it (for logs and rotation). */
  readonly keyId: string;
}

export interface Principal {
  /**
   * The name sessions are bound to and caps are counted for: a user name (basic), the
   * certificate's common name (client-cert), the URL's subject (signed-url) or `anonymous`.
   */
  readonly name: string;
  readonly mode: AuthMode;
  /**
   * True when `name` says who sent the request (a Basic user, a certificate, a signed URL with
   * a subject); false when it is a shared placeholder (`anonymous`, `signed-url`) that many
   * unrelated clients have in common.
   */
  readonly identified: boolean;
  /** Signed URLs only: what the URL allows. */
  readonly grant?: UrlGrant | undefined;
  /** Client certificates only: the full subject, issuer and serial, for the audit log. */
  readonly certificate?:
    | { readonly subject: string; readonly issuer?: string; readonly serial?: string }
    | undefined;
}

/** What authentication sees of a request. */
export interface AuthRequest {
  /**
   * The destination path, percent-decoded and NFC-normalised (`/a/b.zip`), or undefined when
   * the path is not a valid destination.
   */
  readonly destination: string | undefined;
  /** Query parameters, percent-decoded. */
  readonly query: ReadonlyMap<string, string>;
  /** Lower-case header names. */
  readonly headers: ReadonlyMap<string, string>;
  /** True when the request reached the server over TLS (Basic credentials only travel then). */
  readonly secure: boolean;
  /**
   * The client's address as the front door reports it (behind the ALB, the entry the ALB
   * added), for counting refused passwords; undefined when it is not known.
   */
  readonly address?: string | undefined;
  /**
   * The client certificate's subject as a front door that verified it reports it (ALB mutual
   * TLS in verify mode, or the local server's own TLS); undefined when there is none or when
   * the front door is not one whose report can be trusted.
   */
  readonly clientCertificate?:
    | { readonly subject: string; readonly issuer?: string; readonly serial?: string }
    | undefined;
}

export type AuthResult =
  | { readonly kind: "ok"; readonly principal: Principal }
  /** 401 with `WWW-Authenticate: Basic realm="<realm>"`: never an Ack. */
  | { readonly kind: "challenge"; readonly realm: string; readonly reason: string }
  /** 403 + E_ACCESSDENIED: credentials were presented and are not good. */
  | { readonly kind: "denied"; readonly reason: string }
  /**
   * 503 + `Retry-After`, a transient error to BITS: too many refused passwords from this
   * address or for this user name; the credentials were not checked (docs/security.md).
   */
  | { readonly kind: "throttled"; readonly retryAfterSeconds: number; readonly reason: string };

export interface Authenticator {
  /** @param nowMs epoch milliseconds */
  authenticate(request: AuthRequest, nowMs: number): Promise<AuthResult>;
  /**
   * Loads and checks the secrets now, so that a missing parameter or a malformed file stops the
   * start with a clear message instead of failing every request.
   */
  ready?(): Promise<void>;
}
