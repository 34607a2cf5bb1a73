import type { NotificationType } from "../ports/notifier.ts";

/**
 * Which uploads notify a server application, and where ([MC-BUP] 3.2.1.1: the server decides
 * the mode from the destination's configuration, like IIS's per-virtual-directory
 * BITSServerNotificationType and BITSServerNotificationURL). Pure: no I/O.
 */
export interface NotificationRule {
  /** A URL path prefix (`/` for everything); the longest matching prefix wins. */
  readonly path: string;
  readonly type: NotificationType | "none";
  /** `http(s)://...`, a path relative to the remote name's directory, or `lambda:<name>`. */
  readonly url?: string | undefined;
}

/** The rule for a request path: the longest prefix that covers it as whole segments. */
export function ruleFor(rules: readonly NotificationRule[], path: string) {
  let best: NotificationRule | undefined;
  for (const rule of rules) {
    const prefix = rule.path.replace(/\/$/, "");
    const covers = rule.path === "/" || path === rule.path || path.startsWith(`${prefix}/`);
    if (covers && (best === undefined || rule.path.length > best.path.length)) best = rule;
  }
  return best?.type === "none" || best?.url === undefined ? undefined : best;
}

/**
 * True for a notification URL that is relative to the remote name's directory: it needs an
 * origin to resolve against, which must be one the operator configured (docs/security.md).
 */
export function isRelativeTarget(url: string): boolean {
  return !url.startsWith("lambda:") && !/^https?:\/\//i.test(url);
}

/**
 * Where to notify for one job ([MC-BUP] 3.3.5.2; IIS BITSServerNotificationURL): a relative URL
 * resolves against the remote name's directory, and the remote name's query string is appended
 * (remote `/v/file.asp?ACCOUNT=86433` + `http://other/bag.asp` gives
 * `http://other/bag.asp?ACCOUNT=86433`). A parameter the notification URL already has is the
 * operator's: the client's of the same name (compared case-insensitively, as ASP does) is
 * dropped, never added beside it. A Lambda function is named as it is.
 */
export function notificationTarget(url: string, remoteUrl: string): string {
  if (url.startsWith("lambda:")) return url;
  const remote = new URL(remoteUrl);
  const target = new URL(url, remote);
  const configured = new Set([...target.searchParams.keys()].map((name) => name.toLowerCase()));
  const query = remote.search
    .slice(1)
    .split("&")
    .filter((part) => part !== "" && !configured.has(parameterName(part).toLowerCase()))
    .join("&");
  if (query !== "")
    target.search = target.search === "" ? query : `${target.search.slice(1)}&${query}`;
  return target.toString();
}

/** A query string part's name as an application reads it (decoded, `+` a space). */
function parameterName(part: string): string {
  return [...new URLSearchParams(part).keys()][0] ?? "";
}

/** A notification or reply URL may be at most 2,200 characters ([MC-BUP] 2.2.1.2). */
export const MAX_REPLY_URL_LENGTH = 2200;
