import { BitsError, type BitsErrorKind } from "../../../functions/bits/errors.ts";

/** Runs `action` and returns the `BitsError` it throws; anything else fails the test. */
export function bitsErrorFrom(action: () => unknown): BitsError {
  try {
    action();
  } catch (error) {
    if (error instanceof BitsError) return error;
    throw new Error(`expected a BitsError, got ${String(error)}`);
  }
  throw new Error("expected a BitsError, nothing was thrown");
}

/** The kind of the `BitsError` that `action` throws. */
export function thrownKind(action: () => unknown): BitsErrorKind {
  return bitsErrorFrom(action).kind;
}
