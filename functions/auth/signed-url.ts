/**
 * Signed upload URLs (docs/security.md, "Signed upload URLs"): a backend that decides who may
 * upload what hands out a URL, and the server checks it with a shared key, without a database.
 *
 * Query parameters (values percent-encoded; any other parameter is ignored and not signed):
 *
 *   bits-expires   epoch seconds, decimal without leading zeros: no upload may START after it
 *   bits-kid       the key ID, [A-Za-z0-9._-]{1,64}
 *   bits-sig       HMAC-SHA256 of the string to sign under that key, base64url without padding,
 *                  in its one canonical spelling (the last character's unused bits zero)
 *   bits-max-size  optional: the largest file the URL allows, decimal bytes; 0 allows only an
 *                  empty file, and the signer refuses it
 *   bits-prefix    optional: a destination prefix starting and ending with "/"; the URL then
 *                  allows any destination under it. Without it the URL allows exactly its path.
 *   bits-sub       optional: the principal name, [A-Za-z0-9._@+-]{1,128}
 *
 * The string to sign is these six lines joined with "\n" (no final newline), UTF-8 encoded:
 *
 *   BITS-SIGNED-URL-1
 *   the scope: the URL's path with each segment percent-decoded once and NFC-normalised
 *              (`/a/b.zip`), or the prefix when bits-prefix is present
 *   `key`, or `prefix` when bits-prefix is present
 *   bits-expires
 *   bits-max-size, or an empty line
 *   bits-sub, or an empty line
 *
 * Keys (`parseUrlKeys`): one `<id> <secret>` per line, the secret base64url or base64 of at
 * least 32 bytes. The first key signs; every listed key verifies.
 */
import { createHmac, timingSafeEqual } from "node:crypto";
import { destinationPath, isSegment } from "../bits/key.ts";
import type { SecretText } from "../ports/secrets.ts";
import { scopeRefusal } from "./authorization.ts";
import { ParsedSecret } from "./parsed-secret.ts";
import type { AuthRequest, AuthResult, Principal } from "./types.ts";

const VERSION = "BITS-SIGNED-URL-1";
const PARAMS = ["bits-expires", "bits-kid", "bits-sig", "bits-max-size", "bits-prefix", "bits-sub"];
const KEY_ID = /^[A-Za-z0-9._-]{1,64}$/;
const SUBJECT = /^[A-Za-z0-9._@+-]{1,128}$/;
const DECIMAL = /^(0|[1-9]\d{0,15})$/;
const SIGNATURE = /^[A-Za-z0-9_-]{43}$/;
const MIN_SECRET_BYTES = 32;

/** The parsed keys file: the key new URLs are signed with, and every key that verifies. */
export interface UrlKeys {
  readonly signing: { readonly id: string; readonly secret: Uint8Array };
  readonly all: ReadonlyMap<string, Uint8Array>;
}

/** The keys file; rotate by adding the new key first and removing the old once its URLs expire. */
export function parseUrlKeys(text: string): UrlKeys {
  const all = new Map<string, Uint8Array>();
  text.split("\n").forEach((raw, index) => {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) return;
    const where = `url keys line ${index + 1}`;
    const [id = "", secret = "", ...rest] = line.split(/\s+/);
    if (rest.length > 0 || secret === "") throw new Error(`${where}: expected "<id> <secret>"`);
    if (!KEY_ID.test(id)) throw new Error(`${where}: key ID must match ${KEY_ID.source}`);
    if (all.has(id)) throw new Error(`${where}: key ID ${id} is listed twice`);
    const bytes = /^[A-Za-z0-9+/_-]+={0,2}$/.test(secret) ? Buffer.from(secret, "base64") : [];
    if (bytes.length < MIN_SECRET_BYTES) {
      throw new Error(`${where}: the secret of ${id} must be base64 of ${MIN_SECRET_BYTES}+ bytes`);
    }
    all.set(id, new Uint8Array(bytes));
  });
  const [first] = all;
  if (first === undefined) throw new Error("url keys: no key listed");
  return { signing: { id: first[0], secret: first[1] }, all };
}

/** What `signUploadUrl` signs into a URL (see the format above). */
export interface SignOptions {
  readonly keyId: string;
  readonly secret: Uint8Array;
  /** Epoch seconds. */
  readonly expiresAt: number;
  readonly maxBytes?: number;
  readonly prefix?: string;
  readonly subject?: string;
}

/** `url` with the signed-URL parameters added; any it held before are replaced. */
export function signUploadUrl(url: string | URL, options: SignOptions): string {
  const target = new URL(url);
  const prefix = options.prefix === undefined ? undefined : options.prefix.normalize("NFC");
  const claim = {
    expires: String(options.expiresAt),
    keyId: options.keyId,
    maxBytes: options.maxBytes === undefined ? undefined : String(options.maxBytes),
    prefix,
    subject: options.subject,
  };
  const problem = claimProblem(claim);
  if (problem !== undefined) throw new Error(`cannot sign: ${problem}`);
  // Zero means zero (an empty file only), never "no limit"; a URL for that is a mistake.
  if (options.maxBytes === 0) throw new Error("cannot sign: bits-max-size must be at least 1");
  if (options.secret.length < MIN_SECRET_BYTES) throw new Error("cannot sign: secret too short");
  const scope = prefix ?? signedPath(target.pathname);
  if (scope === undefined) throw new Error("cannot sign: the URL's path is not a destination");
  const signature = sign(options.secret, scope, claim).toString("base64url");

  const kept = target.search
    .slice(1)
    .split("&")
    .filter((part) => part !== "" && !PARAMS.includes(parameterName(part)));
  const added: [string, string | undefined][] = [
    ["bits-expires", claim.expires],
    ["bits-kid", claim.keyId],
    ["bits-max-size", claim.maxBytes],
    ["bits-prefix", claim.prefix],
    ["bits-sub", claim.subject],
    ["bits-sig", signature],
  ];
  // encodeURIComponent, not URLSearchParams: "+" must stay "%2B" whatever decoder reads it.
  for (const [name, value] of added) {
    if (value !== undefined) kept.push(`${name}=${encodeURIComponent(value)}`);
  }
  target.search = kept.join("&");
  return target.href;
}

/**
 * Checks signed upload URLs against the keys `source` holds. Expiry is not checked here: the
 * service refuses Create-Session after `grant.expiresAt` but lets a started upload finish,
 * since BITS may take days to resume (docs/security.md).
 */
export class SignedUrlAuthenticator {
  readonly #keys: ParsedSecret<UrlKeys>;

  constructor(source: SecretText) {
    this.#keys = new ParsedSecret(source, parseUrlKeys);
  }

  /** Reads and parses the keys now: a missing or malformed secret stops the start. */
  async ready(): Promise<void> {
    await this.#keys.current();
  }

  /** Undefined when the request is not a signed-URL request (it has no `bits-sig`). */
  async authenticate(request: AuthRequest, _nowMs: number): Promise<AuthResult | undefined> {
    const signature = request.query.get("bits-sig");
    if (signature === undefined) return undefined;
    const keys = (await this.#keys.current()).all;
    const q = (name: string) => request.query.get(name);
    const claim = {
      expires: q("bits-expires") ?? "",
      keyId: q("bits-kid") ?? "",
      maxBytes: q("bits-max-size"),
      prefix: q("bits-prefix"),
      subject: q("bits-sub"),
    };
    const problem = isCanonicalSignature(signature) ? claimProblem(claim) : "bits-sig is malformed";
    if (problem !== undefined) return denied(`malformed signed URL: ${problem}`);
    const key = keys.get(claim.keyId);
    if (key === undefined) return denied("signed URL names an unknown key");
    const destination = request.destination;
    if (destination === undefined) return denied("signed URL for a path that is no destination");
    const expected = sign(key, claim.prefix ?? destination, claim);
    if (!timingSafeEqual(Buffer.from(signature, "base64url"), expected)) {
      return denied("signed URL has a bad signature");
    }
    const scope = { path: claim.prefix ?? destination, prefix: claim.prefix !== undefined };
    const refusal = scopeRefusal(scope, destination);
    if (refusal !== undefined) return denied(refusal);
    const principal: Principal = {
      name: claim.subject ?? "signed-url",
      mode: "signed-url",
      identified: claim.subject !== undefined,
      grant: {
        ...scope,
        expiresAt: Number(claim.expires),
        maxBytes: claim.maxBytes === undefined ? undefined : Number(claim.maxBytes),
        keyId: claim.keyId,
      },
    };
    return { kind: "ok", principal };
  }
}

interface Claim {
  readonly expires: string;
  readonly keyId: string;
  readonly maxBytes: string | undefined;
  readonly prefix: string | undefined;
  readonly subject: string | undefined;
}

function claimProblem(claim: Claim): string | undefined {
  if (!isDecimal(claim.expires)) return "bits-expires must be epoch seconds";
  if (!KEY_ID.test(claim.keyId)) return "bits-kid is malformed";
  if (claim.maxBytes !== undefined && !isDecimal(claim.maxBytes)) {
    return "bits-max-size must be a number of bytes";
  }
  if (claim.prefix !== undefined && !isPrefix(claim.prefix)) {
    return "bits-prefix must be a path starting and ending with /";
  }
  if (claim.subject !== undefined && !SUBJECT.test(claim.subject)) return "bits-sub is malformed";
  return undefined;
}

function sign(secret: Uint8Array, scope: string, claim: Claim): Buffer {
  const kind = claim.prefix === undefined ? "key" : "prefix";
  const lines = [VERSION, scope, kind, claim.expires, claim.maxBytes ?? "", claim.subject ?? ""];
  return createHmac("sha256", secret).update(lines.join("\n"), "utf8").digest();
}

/**
 * 43 base64url characters carry 258 bits for a 256-bit HMAC: the last character's two low bits
 * are unused, so four characters decode to the same bytes. Only the spelling the signer writes
 * (those bits zero) is accepted: a changed URL is never a valid one.
 */
function isCanonicalSignature(signature: string): boolean {
  return (
    SIGNATURE.test(signature) &&
    Buffer.from(signature, "base64url").toString("base64url") === signature
  );
}

function denied(reason: string): AuthResult {
  return { kind: "denied", reason };
}

function isDecimal(text: string): boolean {
  return DECIMAL.test(text) && Number.isSafeInteger(Number(text));
}

function isPrefix(text: string): boolean {
  if (text === "/") return true;
  if (!text.startsWith("/") || !text.endsWith("/") || text.normalize("NFC") !== text) return false;
  return text.slice(1, -1).split("/").every(isSegment);
}

/** The destination a URL path names, exactly as the server maps it. */
function signedPath(pathname: string): string | undefined {
  try {
    return destinationPath(pathname);
  } catch {
    return undefined;
  }
}

function parameterName(part: string): string {
  const name = part.split("=", 1)[0] ?? "";
  try {
    return decodeURIComponent(name.replaceAll("+", " "));
  } catch {
    return name;
  }
}
