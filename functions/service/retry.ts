import { BitsError } from "../bits/errors.ts";
import type { SessionRecord } from "../bits/session.ts";

/** A session record as a handler holds it: read from the table now, or remembered. */
export interface Held {
  readonly record: SessionRecord | undefined;
  /** Read from the table by this request; false for what a warm instance remembered. */
  readonly fresh: boolean;
  /** Fragment: its tail was rebuilt from the staged objects (docs/durability.md). */
  readonly rebuilt?: boolean | undefined;
}

/** What one attempt on a session concluded. */
export type Attempt<T> =
  /** The request's answer. */
  | { readonly done: T }
  /**
   * The record changed under the attempt (a conditional write was lost, or what was remembered
   * is stale): decide again on the record as it is now.
   */
  | { readonly again: Held };

/** How often a handler decides again after the record changed under it. */
const MAX_ATTEMPTS = 8;

/**
 * The version-conflict loop of Fragment, Close-Session and Cancel-Session: every write is
 * conditional on the version the attempt read, and a lost write hands the attempt the record
 * as it is now. A record that keeps changing is a transient failure (E_FAIL): the client resends.
 */
export async function untilSettled<T>(
  first: Held,
  attempt: (held: Held) => Promise<Attempt<T>>,
  what: string,
): Promise<T> {
  let held = first;
  for (let round = 0; round < MAX_ATTEMPTS; round++) {
    const outcome = await attempt(held);
    if ("done" in outcome) return outcome.done;
    held = outcome.again;
  }
  throw new BitsError("internal", `the session kept changing under this ${what}`);
}

export const done = <T>(value: T): Attempt<T> => ({ done: value });
export const again = (
  record: SessionRecord | undefined,
  more: { rebuilt?: boolean } = {},
): Attempt<never> => ({
  again: { record, fresh: true, ...more },
});
