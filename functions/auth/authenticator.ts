import type { SecretText } from "../ports/secrets.ts";
import { BasicAuthenticator } from "./basic.ts";
import { certificatePrincipal } from "./client-cert.ts";
import { SignedUrlAuthenticator } from "./signed-url.ts";
import { AUTH_MODES, type Authenticator, type AuthMode, type AuthResult } from "./types.ts";

/** The secrets and settings the enabled modes need. */
export interface AuthenticatorOptions {
  /** The realm of the Basic challenge. */
  readonly realm: string;
  /** The htpasswd file; required when `basic` is enabled. */
  readonly htpasswd?: SecretText;
  /** The signing keys of upload URLs; required when `signed-url` is enabled. */
  readonly urlKeys?: SecretText;
  /** bcrypt's compare, for tests that count calls. */
  readonly compare?: (password: string, hash: string) => Promise<boolean>;
}

const ANONYMOUS_RESULT: AuthResult = {
  kind: "ok",
  principal: { name: "anonymous", mode: "anonymous", identified: false },
};

/**
 * One authenticator for the enabled modes, tried from the strongest proof to none
 * (docs/security.md, "Authentication"): a verified client certificate, then a signed URL, then
 * Basic, then anonymous. A request that presents a credential is judged by it alone: a bad
 * signature or a wrong password never falls through to a weaker mode.
 */
export function createAuthenticator(
  modes: readonly AuthMode[],
  options: AuthenticatorOptions,
): Authenticator {
  const unknown = modes.filter((mode) => !AUTH_MODES.includes(mode));
  if (unknown.length > 0) throw new Error(`unknown auth mode: ${unknown.join(", ")}`);
  if (modes.length === 0) throw new Error("at least one auth mode must be enabled");
  const enabled = new Set(modes);
  const anonymous = enabled.has("anonymous");
  const clientCert = enabled.has("client-cert");
  const basic = enabled.has("basic") ? basicAuthenticator(options) : undefined;
  const signed = enabled.has("signed-url") ? signedAuthenticator(options) : undefined;

  return {
    async authenticate(request, nowMs) {
      if (clientCert && request.clientCertificate !== undefined) {
        const principal = certificatePrincipal(request.clientCertificate);
        if (principal !== undefined) return { kind: "ok", principal };
      }
      const signedResult = await signed?.authenticate(request, nowMs);
      if (signedResult !== undefined) return signedResult;
      // With anonymous also enabled, Basic is optional: only a request that sends credentials
      // is held to them (and a wrong password is challenged, not let in as anonymous).
      if (basic !== undefined && (!anonymous || request.headers.has("authorization"))) {
        return basic.authenticate(request, nowMs);
      }
      if (anonymous) return ANONYMOUS_RESULT;
      return { kind: "denied", reason: "no credentials" };
    },
    // Parsed into the same objects the requests use: the first request parses nothing again.
    async ready() {
      await basic?.ready();
      await signed?.ready();
    },
  };
}

/** Lets everyone in: the default of tests and of the local server on loopback. */
export const ANONYMOUS: Authenticator = createAuthenticator(["anonymous"], { realm: "" });

function basicAuthenticator(options: AuthenticatorOptions): BasicAuthenticator {
  if (options.htpasswd === undefined) throw new Error("basic auth needs an htpasswd file");
  return new BasicAuthenticator(options.htpasswd, {
    realm: options.realm,
    ...(options.compare === undefined ? {} : { compare: options.compare }),
  });
}

function signedAuthenticator(options: AuthenticatorOptions): SignedUrlAuthenticator {
  if (options.urlKeys === undefined) throw new Error("signed-url auth needs url signing keys");
  return new SignedUrlAuthenticator(options.urlKeys);
}
