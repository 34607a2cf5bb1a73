import type { NotificationRequest, NotificationResult, Notifier } from "../../ports/notifier.ts";

/**
 * A failure HRESULT as in `BITS-Error-Code`: `0x` and 8 hex digits, or decimal (signed or
 * unsigned 32-bit), with the severity bit set. Anything else is undefined, so a malformed value
 * never reaches the client as if it were a code.
 */
export function parseHresult(value: string | null | undefined): number | undefined {
  const text = value?.trim() ?? "";
  let code: number;
  if (/^0x[0-9a-f]{8}$/i.test(text)) code = Number.parseInt(text.slice(2), 16);
  else if (/^-?\d{1,10}$/.test(text)) code = Number(text);
  else return undefined;
  if (code < 0 && code >= -0x8000_0000) code >>>= 0;
  return code >= 0x8000_0000 && code <= 0xffff_ffff ? code : undefined;
}

/** An absolute http(s) URL as given, else undefined: a static reply URL goes to the client as is. */
export function absoluteHttpUrl(value: string): string | undefined {
  try {
    const url = new URL(value);
    return url.protocol === "http:" || url.protocol === "https:" ? value : undefined;
  } catch {
    return undefined;
  }
}

export const unreachable = (message: string): NotificationResult => ({
  kind: "unreachable",
  message,
});

export interface NotifierRoutes {
  /** For `http:` and `https:` targets. */
  readonly http: Notifier;
  /**
   * For `lambda:` targets, made on first use so entry points load the Lambda client only when a
   * job notifies a function. Absent: such targets are unreachable.
   */
  readonly lambda?: (() => Promise<Notifier>) | undefined;
}

/** Picks the notifier by the target's scheme; any other scheme is unreachable. */
export class RoutingNotifier implements Notifier {
  private lambda: Promise<Notifier> | undefined;

  constructor(private readonly routes: NotifierRoutes) {}

  async notify(request: NotificationRequest): Promise<NotificationResult> {
    const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(request.target)?.[1]?.toLowerCase();
    if (scheme === "http" || scheme === "https") return this.routes.http.notify(request);
    if (scheme !== "lambda") {
      // The scheme only: the rest of the target may carry a token.
      return unreachable(
        `unsupported notification target scheme ${scheme?.slice(0, 32) ?? "(none)"}`,
      );
    }
    const make = this.routes.lambda;
    if (!make) return unreachable("Lambda notification targets are not enabled");
    this.lambda ??= make();
    let lambda: Notifier;
    try {
      lambda = await this.lambda;
    } catch (error) {
      this.lambda = undefined; // a failed load is retried by the next notification
      throw error;
    }
    return lambda.notify(request);
  }
}

export function createNotifier(routes: NotifierRoutes): Notifier {
  return new RoutingNotifier(routes);
}

/**
 * The notification's time budget: `signal` aborts when it runs out (and `expired` says so), or
 * when `end` is called, which also stops the timer.
 */
export function deadline(ms: number) {
  const controller = new AbortController();
  let expired = false;
  const timer = setTimeout(() => {
    expired = true;
    controller.abort(new Error("notification timed out"));
  }, ms);
  return {
    signal: controller.signal,
    get expired() {
      return expired;
    },
    end() {
      clearTimeout(timer);
      controller.abort(new Error("notification over"));
    },
  };
}
