import { isIPv6 } from "node:net";
import { LRUCache } from "lru-cache";

/** How many refused passwords a key may collect, and how long it is locked out after the last. */
export interface AttemptLimit {
  /** Refused passwords after which the key is locked out. */
  readonly failures: number;
  /** The lock lasts this long after the last refused password (and a count is forgotten then). */
  readonly windowMs: number;
  /** Keys remembered at most; the least recently failing are forgotten first. */
  readonly maxKeys: number;
}

interface Count {
  readonly failures: number;
  readonly untilMs: number;
}

/**
 * Refused passwords per key (a client address, a user name), in one instance's memory
 * (docs/security.md, "Password guessing"). Only a refusal that cost a bcrypt comparison is
 * counted; a locked-out key is answered before any bcrypt, so guessing costs the guesser time
 * and costs the server nothing. lru-cache bounds the memory; a key pushed out by many others is
 * forgotten, which needs as many distinct failing keys as `maxKeys`.
 */
export class FailedAttempts {
  readonly #limit: AttemptLimit;
  readonly #counts: LRUCache<string, Count>;

  constructor(limit: AttemptLimit) {
    this.#limit = limit;
    this.#counts = new LRUCache({ max: limit.maxKeys });
  }

  /** Milliseconds `key` stays locked out from `nowMs`; 0 when it is not locked out. */
  lockedFor(key: string, nowMs: number): number {
    const count = this.#counts.get(key);
    if (count === undefined || nowMs >= count.untilMs) return 0;
    return count.failures >= this.#limit.failures ? count.untilMs - nowMs : 0;
  }

  /** Counts one refused password for `key` at `nowMs`. */
  fail(key: string, nowMs: number): void {
    const count = this.#counts.get(key);
    const failures = count !== undefined && nowMs < count.untilMs ? count.failures + 1 : 1;
    this.#counts.set(key, { failures, untilMs: nowMs + this.#limit.windowMs });
  }

  clear(): void {
    this.#counts.clear();
  }
}

/**
 * The part of a client address one party controls: an IPv4 address, or the /64 network of an
 * IPv6 one (a single host commonly holds a whole /64, so counting per IPv6 address would give
 * it 2^64 fresh starts). An IPv4-mapped IPv6 address counts as its IPv4 address.
 */
export function addressKey(address: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped?.[1] !== undefined) return mapped[1];
  if (!isIPv6(address)) return address;
  const [head = "", tail] = address.toLowerCase().split("::");
  const left = head === "" ? [] : head.split(":");
  const right = tail === undefined || tail === "" ? [] : tail.split(":");
  const groups = [
    ...left,
    ...Array(Math.max(0, 8 - left.length - right.length)).fill("0"),
    ...right,
  ];
  const network = groups.slice(0, 4).map((group) => Number.parseInt(group, 16).toString(16));
  return `${network.join(":")}::/64`;
}
