/**
 * A store (S3, DynamoDB) failed in a way the port has no more specific answer for: unavailable,
 * throttled, refused access, or answered something unexpected. Adapters throw this, never their
 * vendor's own errors, so callers depend on the ports alone. The service answers it like any
 * unexpected failure (500, E_FAIL): the client retries the packet later.
 */
export class StorageError extends Error {
  override name = "StorageError";
  /**
   * Whether the same call may succeed if repeated later (a 5xx, throttling, a timeout or a
   * dropped connection), as opposed to one that will keep failing (access denied, a missing
   * bucket or table, a malformed request).
   */
  readonly retryable: boolean;

  constructor(message: string, options: { cause: unknown; retryable: boolean }) {
    super(message, { cause: options.cause });
    this.retryable = options.retryable;
  }
}
