import type { AuthMode } from "../auth/types.ts";
import type { FragmentLimits } from "../bits/fragment-plan.ts";
import type { NotificationRule } from "../bits/notification.ts";
import type { Notifier } from "../ports/notifier.ts";
import type { ObjectStore } from "../ports/object-store.ts";
import type { Runtime } from "../ports/runtime.ts";
import type { SessionCaps, SessionStore } from "../ports/session-store.ts";
import type { InstanceCache } from "./instance-cache.ts";
import type { MetricsSettings } from "./metrics.ts";

export interface ServiceSettings {
  readonly keyPrefix: string;
  /** Path prefixes that accept uploads, like IIS virtual directories with BITS enabled. */
  readonly uploadPaths: readonly string[];
  /** Where staged fragments live in the bucket; never a destination key. */
  readonly stagingPrefix: string;
  readonly limits: FragmentLimits;
  readonly allowOverwrite: boolean;
  /** An idle session is forgotten after this long ([MC-BUP] 3.2.6.1; BITSSessionTimeout). */
  readonly sessionTimeoutSeconds: number;
  /** How long closed and cancelled sessions answer repeats with 200. */
  readonly tombstoneSeconds: number;
  /** Open sessions allowed per slot (a principal) and in all (docs/security.md, Caps). */
  readonly caps: SessionCaps;
  /** Fragments that write, per MiB of the file, on top of a fixed allowance. */
  readonly maxFragmentsPerMiB: number;
  /**
   * Whether a fragment that only stages bytes, on an instance that remembers its session,
   * is acknowledged without a record write (docs/durability.md). Needs the warm cache.
   */
  readonly deferStagedRecords?: boolean | undefined;
  /** Template of the key prefix a principal is confined to (`{principal}`); "" for none. */
  readonly principalPrefix: string;
  /** Principals that may replace existing objects even when `allowOverwrite` is off. */
  readonly overwritePrincipals: readonly string[];
  /**
   * Modes whose principals are the Basic user of the same name (`BITS_JOIN_PRINCIPALS`,
   * docs/security.md, "Principals"); none when undefined.
   */
  readonly joinedModes?: readonly AuthMode[] | undefined;
  /** The bucket's name, as a notified application is told where files are. */
  readonly bucket: string;
  /** Which paths are upload-reply destinations, and whom they notify (docs/upload-reply.md). */
  readonly notifications: readonly NotificationRule[];
  readonly notificationTimeoutMs: number;
  readonly maxReplyBytes: number;
  /**
   * `https://host[:port]` as clients reach the server (BITS_PUBLIC_ORIGIN): relative
   * notification URLs resolve against it, and reply URLs are built on it. Without it, a
   * relative notification URL is refused and reply URLs use the client's Host header.
   */
  readonly publicOrigin?: string | undefined;
  /** URL path under which replies are served (`/.bits-replies`). */
  readonly replyPath: string;
  /**
   * Largest response body the front door carries (an ALB takes 1 MB from a Lambda function);
   * a larger reply download is redirected to a presigned S3 URL.
   */
  readonly maxResponseBody: number;
  /** CloudWatch metrics in the log lines (Embedded Metric Format); none when undefined. */
  readonly metrics?: MetricsSettings | undefined;
}

export interface ServiceContext {
  readonly sessions: SessionStore;
  readonly objects: ObjectStore;
  readonly runtime: Runtime;
  readonly settings: ServiceSettings;
  /**
   * What this instance remembers between requests to skip reads; none when undefined (turned
   * off with BITS_WARM_CACHE_SIZE=0), which changes no answer, only how many reads are made.
   */
  readonly cache?: InstanceCache | undefined;
  /** Tells server applications of upload-reply jobs; needed only when a path notifies. */
  readonly notifier?: Notifier | undefined;
}

export function nowSeconds(context: ServiceContext): number {
  return Math.floor(context.runtime.now() / 1000);
}
