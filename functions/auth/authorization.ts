/**
 * Authorization: what an authenticated principal may do (docs/security.md, "Authorization" and
 * "Principals"). Authentication (`authenticator.ts`) says who sent a request; this says which
 * sessions are theirs, which keys they may write, whether they may overwrite, and what a signed
 * URL's scope allows. No I/O: every answer is decided from the principal and the settings.
 */
import { confinedPrefix } from "../bits/key.ts";
import type { AuthMode, Principal } from "./types.ts";

/** The settings authorization reads (a subset of the service's settings). */
export interface AccessPolicy {
  readonly keyPrefix: string;
  /** Template of the key prefix a principal is confined to (`{principal}`); "" for none. */
  readonly principalPrefix: string;
  readonly allowOverwrite: boolean;
  /** Principals (their `Identity.key`) that may replace existing objects. */
  readonly overwritePrincipals: readonly string[];
  /**
   * Modes whose principals are the Basic user of the same name (`BITS_JOIN_PRINCIPALS`); none
   * when undefined: then a signed URL's `bits-sub=alice` and a certificate's `CN=alice` are
   * principals of their own, never Basic alice.
   */
  readonly joinedModes?: readonly AuthMode[] | undefined;
}

/**
 * A principal as authorization knows it. Two requests are one principal when they have the
 * same name and authenticated in one of the same modes: Basic and the modes joined to it, or
 * any other mode alone.
 */
export interface Identity {
  /** The name sessions record (`SessionRecord.principal`). */
  readonly name: string;
  /** The modes whose sessions of this name are this principal's. */
  readonly modes: readonly string[];
  /**
   * The name the caps, the confinement prefix (`{principal}`) and the overwrite list know it
   * by: a Basic user's name as it is; `signed-url:alice`, `client-cert:host-17` for a principal
   * of another mode that is not joined (a Basic name never holds ":"); `anonymous` and
   * `signed-url` for the clients without an identity.
   */
  readonly key: string;
}

/** The names of the clients without an identity; no Basic user or joined principal has them. */
export const PLACEHOLDER_NAMES: readonly string[] = ["anonymous", "signed-url"];

export function identityOf(principal: Principal, policy: AccessPolicy): Identity {
  const joined = policy.joinedModes ?? [];
  const { name, mode } = principal;
  // Only a name a Basic user could have joins: one with ":" or a placeholder's name would
  // otherwise take the key of another mode's principal.
  const canJoin = !name.includes(":") && !PLACEHOLDER_NAMES.includes(name);
  if (mode === "basic" || (joined.includes(mode) && principal.identified && canJoin)) {
    return { name, modes: ["basic", ...joined], key: name };
  }
  return { name, modes: [mode], key: principal.identified ? `${mode}:${name}` : name };
}

/**
 * The identity of the client that created a session, as its record gives it: for an operator
 * acting on the session's behalf.
 */
export function recordedIdentity(
  record: { readonly principal: string; readonly auth?: string | undefined },
  key: string,
): Identity {
  return { name: record.principal, modes: record.auth === undefined ? [] : [record.auth], key };
}

/**
 * Is a session created by `record`'s principal this identity's ([MC-BUP] 3.2.5.2.3)? Sessions
 * recorded before their mode was (no `auth`) compare by name alone.
 */
export function owns(
  identity: Identity,
  record: { readonly principal: string; readonly auth?: string | undefined },
): boolean {
  if (record.principal !== identity.name) return false;
  return record.auth === undefined || identity.modes.includes(record.auth);
}

/** May this principal replace an existing object (decided at Create-Session)? */
export function mayOverwrite(policy: AccessPolicy, identity: Identity): boolean {
  return policy.allowOverwrite || policy.overwritePrincipals.includes(identity.key);
}

/**
 * Why this principal may not write `key`, or undefined when it may ([MC-BUP] 3.2.5.2.3,
 * step 2): a confined principal only under its own prefix; a signed URL starts new uploads
 * only until it expires, while one started in time may finish, since BITS may take days to
 * resume (docs/security.md, "Signed upload URLs").
 */
export function writeRefusal(
  policy: AccessPolicy,
  principal: Principal,
  identity: Identity,
  key: string,
  start: { readonly creating: boolean; readonly nowSeconds: number },
): string | undefined {
  if (policy.principalPrefix !== "") {
    const allowed = confinedPrefix(policy.keyPrefix, policy.principalPrefix, identity.key);
    if (allowed === undefined || !key.startsWith(allowed)) return "outside the principal's prefix";
  }
  const grant = principal.grant;
  if (start.creating && grant !== undefined && grant.expiresAt <= start.nowSeconds) {
    return "the signed URL has expired";
  }
  return undefined;
}

/**
 * Why a signed URL does not allow `destination`, or undefined when it does. A key URL's
 * signature covers its path, so only a prefix needs checking here, segment-aware because a
 * prefix ends with "/": `/a/` allows `/a/x`, never `/ab/x`.
 */
export function scopeRefusal(
  scope: { readonly path: string; readonly prefix: boolean },
  destination: string,
): string | undefined {
  if (scope.prefix ? destination.startsWith(scope.path) : destination === scope.path) {
    return undefined;
  }
  return "destination outside the signed URL's prefix";
}
