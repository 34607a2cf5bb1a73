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
    try {
      return await attempt();
    } catch (error) {
      if (error instanceof TransientAnswer) reason = error.message;
      else if (error instanceof NetworkError)
        reason = error.code ? `${error.code}: ${error.message}` : error.message;
      else throw error;
    }
    if (failures > policy.retries) {
      const tries = `gave up after ${policy.retries} ${policy.retries === 1 ? "retry" : "retries"}`;
      throw new GaveUpError(`${what}: ${reason}; ${tries}`);
    }
    const delayMs = backoff(policy.backoffMs, failures);
    policy.onRetry({ what, reason, attempt: failures, delayMs });
    await sleep(delayMs);
  }
}

/**
 * The wait before retry `n` (from 1): `first × 2^(n-1)`, at most 30 s, the upper half of it
 * random, so that many clients cut off at once do not all come back at once.
 */
export function backoff(firstMs: number, n: number, random = Math.random): number {
  const ceiling = Math.min(30_000, firstMs * 2 ** Math.min(n - 1, 20));
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}
