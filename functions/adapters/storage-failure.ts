import { StorageError } from "../ports/storage-error.ts";

/** Error names of the AWS SDKs that a later retry may get past. */
const TRANSIENT_NAMES = new Set([
  "InternalError",
  "ServiceUnavailable",
  "SlowDown",
  "RequestTimeout",
  "RequestTimeoutException",
  "ThrottlingException",
  "Throttling",
  "ProvisionedThroughputExceededException",
  "RequestLimitExceeded",
  "TransactionConflictException",
  "TimeoutError",
]);

/** Node's codes for a connection that failed or dropped. */
const NETWORK_CODES = new Set([
  "ECONNRESET",
  "ECONNREFUSED",
  "ECONNABORTED",
  "EPIPE",
  "ETIMEDOUT",
  "ENOTFOUND",
  "EAI_AGAIN",
]);

interface SdkLike {
  name?: string;
  code?: string;
  message?: string;
  $retryable?: unknown;
  $metadata?: { httpStatusCode?: number };
}

/**
 * Whether an error of an AWS SDK call is worth a retry later: what the SDK itself marks so,
 * a 5xx or 429 answer, throttling, a timeout, or a connection that failed. Written here
 * rather than taken from `@smithy/service-error-classification`, which is only a transitive
 * dependency; the adapters need this much and no more.
 */
export function isRetryable(error: unknown): boolean {
  const e = (error ?? {}) as SdkLike;
  const status = e.$metadata?.httpStatusCode;
  if (e.$retryable) return true;
  if (status !== undefined && (status >= 500 || status === 429)) return true;
  return TRANSIENT_NAMES.has(e.name ?? "") || NETWORK_CODES.has(e.code ?? "");
}

/** `error` as the ports speak: a StorageError naming the store and the call that failed. */
export function storageError(operation: string, error: unknown): StorageError {
  if (error instanceof StorageError) return error;
  const e = (error ?? {}) as SdkLike;
  const status = e.$metadata?.httpStatusCode;
  const detail = `${e.name ?? "Error"}${status === undefined ? "" : ` (${status})`}: ${e.message ?? String(error)}`;
  return new StorageError(`${operation} failed: ${detail}`, {
    cause: error,
    retryable: isRetryable(error),
  });
}

/**
 * Runs one adapter method so that only port errors leave it: errors `passes` accepts (the
 * port's own, already translated) go through, every other one becomes a StorageError.
 */
export async function translated<T>(
  operation: string,
  passes: (error: unknown) => boolean,
  run: () => Promise<T>,
): Promise<T> {
  try {
    return await run();
  } catch (error) {
    if (error instanceof StorageError || passes(error)) throw error;
    throw storageError(operation, error);
  }
}

/**
 * A stream whose failures are StorageErrors too: an object's body can fail long after the call
 * that opened it returned (a connection dropped mid-download).
 */
export function translatedStream(
  operation: string,
  stream: ReadableStream<Uint8Array>,
): ReadableStream<Uint8Array> {
  const reader = stream.getReader();
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const { done, value } = await reader.read();
        if (done) controller.close();
        else controller.enqueue(value);
      } catch (error) {
        controller.error(storageError(operation, error));
      }
    },
    cancel(reason) {
      return reader.cancel(reason);
    },
  });
}
