/** What the service needs from its surroundings besides storage: time, IDs and a log. */
export interface Runtime {
  /** Epoch milliseconds. */
  now(): number;
  /** A new, unguessable session ID. */
  newSessionId(): string;
  log(level: "info" | "warn" | "error", message: string, fields?: Record<string, unknown>): void;
}
