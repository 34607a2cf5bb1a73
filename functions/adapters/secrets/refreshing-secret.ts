import type { SecretText } from "../../ports/secrets.ts";

export interface RefreshOptions {
  /** How long a loaded text is answered before the next call reloads it. */
  readonly refreshMs: number;
  readonly now: () => number;
  /** Wait after a failed reload before trying again; min(refreshMs, 30 s) unless given. */
  readonly retryMs?: number;
}

/**
 * Caches another SecretText so a warm instance asks SSM once per refresh interval, not once per
 * request. Callers wait for a due reload (so a rotation is seen promptly) and share it. Once a
 * load has succeeded, a failed reload answers the last good text: stale credentials beat an
 * outage caused by a brief SSM hiccup.
 */
export class RefreshingSecret implements SecretText {
  readonly source: string;
  private text: string | undefined;
  private dueAt = 0;
  private loading: Promise<string> | undefined;
  private failure: unknown;

  constructor(
    private readonly inner: SecretText,
    private readonly options: RefreshOptions,
  ) {
    this.source = inner.source;
  }

  /** The error of the last load if it failed (the last good text is being answered), else undefined. */
  get lastError(): unknown {
    return this.failure;
  }

  current(): Promise<string> {
    if (this.text !== undefined && this.options.now() < this.dueAt) {
      return Promise.resolve(this.text);
    }
    this.loading ??= this.load().finally(() => {
      this.loading = undefined;
    });
    return this.loading;
  }

  private async load(): Promise<string> {
    const { refreshMs, now, retryMs = Math.min(refreshMs, 30_000) } = this.options;
    try {
      const text = await this.inner.current();
      this.text = text;
      this.failure = undefined;
      this.dueAt = now() + refreshMs;
      return text;
    } catch (error) {
      this.failure = error;
      // Nothing to fall back on: every caller fails, and the next call tries again.
      if (this.text === undefined) throw error;
      this.dueAt = now() + retryMs;
      return this.text;
    }
  }
}
