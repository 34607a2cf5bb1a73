/**
 * A secret held outside the code (a file locally; an SSM parameter or a Secrets Manager secret
 * when deployed): the htpasswd file, the signing keys of upload URLs. `current()` answers the
 * text as it is now, or as it was at most a refresh interval ago; callers re-parse it when it
 * changes, so a rotated secret takes effect on warm instances without a redeploy.
 */
export interface SecretText {
  current(): Promise<string>;
  /** Where the secret comes from, for error messages (never the secret itself). */
  readonly source: string;
}
