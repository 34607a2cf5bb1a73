import { setTimeout as sleep } from "node:timers/promises";
import { GaveUpError } from "./errors.ts";
import { NetworkError } from "./http.ts";

/** An answer that is worth sending the same request again for (a 5xx, a 408). */
export class TransientAnswer extends Error {
  constructor(reason: string) {
    super(reason);
    this.name = "TransientAnswer";
  }
}

export interface RetryPolicy {
  /** Retries after the first attempt; past them the upload gives up (and can be resumed). */
  readonly retries: number;
  /** The first wait; each further retry doubles it, up to 30 s. */
  readonly backoffMs: number;
  /**
   * Retries while the server cannot be reached at all (connection refused, no such host) and
   * has not answered once in this run: a wrong URL or a stopped server is reported in seconds,
   * not after the whole budget. Defaults to `retries`.
   */
  readonly unreachable?: { readonly retries: number; readonly reached: () => boolean };
  readonly onRetry: (retry: {
    what: string;
    reason: string;
    attempt: number;
    delayMs: number;
  }) => void;
}

/**
 * Runs `attempt` until it answers, retrying network failures and transient answers with
 * exponential backoff. Any other error ends it at once. Every call has its own count, so each
 * packet gets the whole budget.
 */
export async function retrying<T>(
  policy: RetryPolicy,
  what: string,
  attempt: () => Promise<T>,
): Promise<T> {
  for (let failures = 1; ; failures++) {
    let reason: string;
    let retries = policy.retries;
    try {
      return await attempt();
    } catch (error) {
      if (error instanceof TransientAnswer) reason = error.message;
      else if (error instanceof NetworkError) {
        reason = error.code ? `${error.code}: ${error.message}` : error.message;
        const { unreachable } = policy;
        if (unreachable && isUnreachable(error) && !unreachable.reached()) {
          retries = Math.min(retries, unreachable.retries);
          reason = `cannot reach the server (${reason}): is it running, and is the URL right?`;
        }
      } else throw error;
    }
    if (failures > retries) {
      const tries = `gave up after ${retries} ${retries === 1 ? "retry" : "retries"}`;
      throw new GaveUpError(`${what}: ${reason}; ${tries}`);
    }
    const delayMs = backoff(policy.backoffMs, failures);
    policy.onRetry({ what, reason, attempt: failures, delayMs });
    await sleep(delayMs);
  }
}

/** Failures that say nothing listens there, as opposed to a connection that dropped. */
const UNREACHABLE = new Set([
  "ECONNREFUSED",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EHOSTUNREACH",
  "ENETUNREACH",
]);

const isUnreachable = (error: NetworkError) =>
  error.code !== undefined && UNREACHABLE.has(error.code);

/**
 * The wait before retry `n` (from 1): `first × 2^(n-1)`, at most 30 s, the upper half of it
 * random, so that many clients cut off at once do not all come back at once.
 */
export function backoff(firstMs: number, n: number, random = Math.random): number {
  const ceiling = Math.min(30_000, firstMs * 2 ** Math.min(n - 1, 20));
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}
