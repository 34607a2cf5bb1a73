import { createHmac, randomBytes } from "node:crypto";
import { compare as bcryptCompare } from "bcryptjs";
import { LRUCache } from "lru-cache";
import type { SecretText } from "../ports/secrets.ts";
import { PLACEHOLDER_NAMES } from "./authorization.ts";
import { type AttemptLimit, addressKey, FailedAttempts } from "./failed-attempts.ts";
import { ParsedSecret } from "./parsed-secret.ts";
import type { AuthRequest, AuthResult } from "./types.ts";

/** An htpasswd file this server will not use; the message never holds a hash. */
export class HtpasswdError extends Error {
  override name = "HtpasswdError";
}

// bcrypt only: `htpasswd -B` writes $2y$, other tools $2a$/$2b$. MD5, SHA-1, crypt and plain
// entries are refused outright rather than half-supported (docs/security.md, "Basic").
const BCRYPT = /^\$2[aby]\$(0[4-9]|[12]\d|3[01])\$[./A-Za-z0-9]{53}$/;

/** The users of an htpasswd file and their bcrypt hashes, strictly (see `HtpasswdError`). */
export function parseHtpasswd(text: string): Map<string, string> {
  const users = new Map<string, string>();
  const lines = new Map<string, number>();
  text.split("\n").forEach((raw, index) => {
    const line = raw.trimEnd();
    const number = index + 1;
    if (line.trim() === "" || line.trimStart().startsWith("#")) return;
    const colon = line.indexOf(":");
    if (colon <= 0) throw new HtpasswdError(`htpasswd line ${number}: expected user:hash`);
    const user = line.slice(0, colon);
    const hash = line.slice(colon + 1);
    const where = `htpasswd line ${number} (user ${JSON.stringify(user)})`;
    if (!BCRYPT.test(hash)) {
      throw new HtpasswdError(`${where}: not a bcrypt hash; recreate it with htpasswd -B`);
    }
    // They name the clients without an identity: such a user would share their prefix.
    if (PLACEHOLDER_NAMES.includes(user)) {
      throw new HtpasswdError(`${where}: the user name ${user} is reserved`);
    }
    const first = lines.get(user);
    if (first !== undefined) throw new HtpasswdError(`${where}: user also on line ${first}`);
    users.set(user, hash);
    lines.set(user, number);
  });
  return users;
}

/** The user and password of an `Authorization: Basic` header; undefined when there is none. */
export function parseBasicAuthorization(
  header: string | undefined,
): { user: string; password: string } | undefined {
  const match = /^\s*basic\s+([A-Za-z0-9+/]+={0,2})\s*$/i.exec(header ?? "");
  if (match?.[1] === undefined || match[1].length % 4 === 1) return undefined;
  let decoded: string;
  try {
    decoded = new TextDecoder("utf-8", { fatal: true }).decode(Buffer.from(match[1], "base64"));
  } catch {
    return undefined;
  }
  const colon = decoded.indexOf(":");
  if (colon < 0) return undefined;
  return { user: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

/** How a `BasicAuthenticator` challenges and how long a warm instance remembers verdicts. */
export interface BasicOptions {
  readonly realm: string;
  /** Verified credentials kept per instance (default 1000). */
  readonly cacheSize?: number;
  /** How long a verified credential is trusted without a bcrypt (default 10 minutes). */
  readonly cacheTtlMs?: number;
  /** How long a refused credential is refused without a bcrypt (default 30 seconds). */
  readonly failureTtlMs?: number;
  /** bcryptjs' `compare` unless a test counts the calls. */
  readonly compare?: (password: string, hash: string) => Promise<boolean>;
  /** Refused passwords per client address before it must wait (default `ADDRESS_LIMIT`). */
  readonly addressLimit?: AttemptLimit;
  /** Refused passwords per user name before it must wait (default `USER_LIMIT`). */
  readonly userLimit?: AttemptLimit;
}

/**
 * Password guessing (docs/security.md, "Password guessing"): 10 refused passwords from one
 * address, or 20 for one user name from anywhere, lock that address or name out of bcrypt for
 * 15 minutes after the last. A Windows client does not guess: after one refused password it
 * stops and reports the error ([MC-BUP] 3.1.5.1.7), so only guessing reaches these.
 */
export const ADDRESS_LIMIT: AttemptLimit = { failures: 10, windowMs: 15 * 60_000, maxKeys: 10_000 };
export const USER_LIMIT: AttemptLimit = { failures: 20, windowMs: 15 * 60_000, maxKeys: 10_000 };

/** The users of an htpasswd text, and the dummy hash that unknown users are compared with. */
interface Users {
  readonly hashes: ReadonlyMap<string, string>;
  readonly dummy: string;
}

function parseUsers(text: string): Users {
  const hashes = parseHtpasswd(text);
  return { hashes, dummy: `$2b$${commonCost(hashes)}$${DUMMY_BODY}` };
}

interface Verdict {
  readonly user: string;
  readonly untilMs: number;
}

/** The salt and checksum of a bcrypt hash of nothing anyone knows, put after `$2b$NN$`. */
const DUMMY_BODY = "HuxWoeuQgH0CkYgGU1zIou5LRUDuoKm0X3.1F63CWhaaeqZWsYaKy";

/**
 * HTTP Basic against an htpasswd file (docs/security.md, "Basic"). bcrypt is slow on purpose,
 * too slow to pay on every fragment of an upload, so a warm instance remembers what it verified.
 */
export class BasicAuthenticator {
  readonly #users: ParsedSecret<Users>;
  readonly #realm: string;
  readonly #ttlMs: number;
  readonly #failureTtlMs: number;
  readonly #compare: (password: string, hash: string) => Promise<boolean>;
  // A per-instance key: the caches hold HMACs nobody outside this process can test guesses on.
  readonly #key = randomBytes(32);
  readonly #verified: LRUCache<string, Verdict>;
  readonly #refused: LRUCache<string, Verdict>;
  readonly #byAddress: FailedAttempts;
  readonly #byUser: FailedAttempts;
  /** The users the caches were filled for: another text forgets them. */
  #cachedFor: Users | undefined;

  constructor(source: SecretText, options: BasicOptions) {
    this.#users = new ParsedSecret(source, parseUsers);
    this.#realm = options.realm;
    this.#ttlMs = options.cacheTtlMs ?? 10 * 60_000;
    this.#failureTtlMs = options.failureTtlMs ?? 30_000;
    this.#compare = options.compare ?? bcryptCompare;
    // Separate caches, so a flood of wrong passwords cannot evict the good credentials.
    this.#verified = new LRUCache({ max: options.cacheSize ?? 1000 });
    this.#refused = new LRUCache({ max: options.cacheSize ?? 1000 });
    this.#byAddress = new FailedAttempts(options.addressLimit ?? ADDRESS_LIMIT);
    this.#byUser = new FailedAttempts(options.userLimit ?? USER_LIMIT);
  }

  /** Reads and parses the htpasswd text now: a missing or malformed file stops the start. */
  async ready(): Promise<void> {
    await this.#current();
  }

  async authenticate(request: AuthRequest, nowMs: number): Promise<AuthResult> {
    const header = request.headers.get("authorization");
    // BITS sends credentials only in answer to a 401 challenge, never up front.
    if (header === undefined) return this.#challenge("no credentials");
    const credentials = parseBasicAuthorization(header);
    if (credentials === undefined) return this.#challenge("malformed Basic credentials");
    if (!request.secure) return { kind: "denied", reason: "Basic credentials without TLS" };
    const users = await this.#current();
    const { user, password } = credentials;
    const digest = createHmac("sha256", this.#key).update(`${user}\0${password}`).digest("hex");
    // The user is kept beside the digest: "a\0b" + "c" and "a" + "b\0c" share one HMAC input.
    // A credential verified before a lockout began is known good: its client keeps uploading.
    if (fresh(this.#verified.get(digest), user, nowMs)) return ok(user);
    if (fresh(this.#refused.get(digest), user, nowMs)) return this.#challenge("wrong credentials");
    const address = request.address === undefined ? undefined : addressKey(request.address);
    const waitMs = Math.max(
      address === undefined ? 0 : this.#byAddress.lockedFor(address, nowMs),
      this.#byUser.lockedFor(user, nowMs),
    );
    if (waitMs > 0) {
      const retryAfterSeconds = Math.ceil(waitMs / 1000);
      return { kind: "throttled", retryAfterSeconds, reason: "too many refused passwords" };
    }

    const hash = users.hashes.get(user);
    // An unknown user still costs one bcrypt, so timing does not tell which users exist.
    const good = (await this.#compare(password, hash ?? users.dummy)) && hash !== undefined;
    if (this.#cachedFor !== users) return this.authenticate(request, nowMs); // rotated meanwhile
    const cache = good ? this.#verified : this.#refused;
    cache.set(digest, { user, untilMs: nowMs + (good ? this.#ttlMs : this.#failureTtlMs) });
    if (good) return ok(user);
    if (address !== undefined) this.#byAddress.fail(address, nowMs);
    this.#byUser.fail(user, nowMs);
    return this.#challenge("wrong credentials");
  }

  #challenge(reason: string): AuthResult {
    return { kind: "challenge", realm: this.#realm, reason };
  }

  /** The users as the source says now; a changed file forgets everything verified before. */
  async #current(): Promise<Users> {
    const users = await this.#users.current();
    if (users !== this.#cachedFor) {
      this.#verified.clear();
      this.#refused.clear();
      this.#cachedFor = users;
    }
    return users;
  }
}

function fresh(verdict: Verdict | undefined, user: string, nowMs: number): boolean {
  return verdict !== undefined && verdict.user === user && nowMs < verdict.untilMs;
}

function ok(user: string): AuthResult {
  return { kind: "ok", principal: { name: user, mode: "basic", identified: true } };
}

/** The cost most entries use, so the dummy compare takes as long as a real one. */
function commonCost(users: ReadonlyMap<string, string>): string {
  const counts = new Map<string, number>();
  for (const hash of users.values()) {
    const cost = hash.slice(4, 6);
    counts.set(cost, (counts.get(cost) ?? 0) + 1);
  }
  let best = "10";
  for (const [cost, count] of counts) if (count > (counts.get(best) ?? 0)) best = cost;
  return best;
}
