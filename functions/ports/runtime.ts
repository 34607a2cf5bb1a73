/** What the service needs from its surroundings besides storage: time, IDs and a log. */
export interface Runtime {
  /** Epoch milliseconds. */
  now(): number;
  /** A new, unguessable session ID. */
  newSessionId(): string;
  /**
   * Waits `ms` milliseconds of this runtime's clock, the one `now()` reads: a wait measured
   * against `now()` sleeps here, so that a test moving the clock moves both.
   */
  sleep(ms: number): Promise<void>;
  log(level: "info" | "warn" | "error", message: string, fields?: Record<string, unknown>): void;
}
