import type { SecretText } from "../ports/secrets.ts";

/**
 * A secret in its parsed form (the htpasswd users, the URL signing keys), parsed once per text:
 * the text is asked for on every use, as the source allows (`RefreshingSecret` re-reads it at
 * most every `BITS_SECRETS_REFRESH`), and parsed again only when it changed. The start parses it
 * through the same object (`Authenticator.ready`), so the first request does not parse it again.
 */
export class ParsedSecret<T> {
  readonly #source: SecretText;
  readonly #parse: (text: string) => T;
  #parsed: { readonly text: string; readonly value: T } | undefined;

  constructor(source: SecretText, parse: (text: string) => T) {
    this.#source = source;
    this.#parse = parse;
  }

  /**
   * The value of the text as the source says now. A malformed text throws an error that names
   * the source (never the secret), and nothing parsed from an older text is used meanwhile.
   */
  async current(): Promise<T> {
    const text = await this.#source.current();
    if (this.#parsed?.text === text) return this.#parsed.value;
    this.#parsed = undefined;
    try {
      this.#parsed = { text, value: this.#parse(text) };
    } catch (error) {
      if (!(error instanceof Error)) throw new Error(`${this.#source.source}: ${String(error)}`);
      error.message = `${this.#source.source}: ${error.message}`;
      throw error;
    }
    return this.#parsed.value;
  }
}
