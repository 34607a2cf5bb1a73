/**
 * The server application of an upload-reply job ([MC-BUP] 3.3; docs/upload-reply.md): told
 * about a completed upload, it answers with a reply, a static reply URL or an error.
 */

export type NotificationType = "reference" | "value";

/** An object in the bucket, as the application is told about it. */
export interface ObjectLocation {
  readonly bucket: string;
  readonly key: string;
}

export interface NotificationRequest {
  readonly type: NotificationType;
  /**
   * Where to notify: an absolute `http:`/`https:` URL (the remote name's query string already
   * appended), or `lambda:<function name or ARN>`.
   */
  readonly target: string;
  /** The job's remote URL, absolute: `BITS-Original-Request-URL`. */
  readonly originalUrl: string;
  readonly sessionId: string;
  readonly principal: string;
  /** The uploaded file. */
  readonly request: ObjectLocation & {
    readonly size: number;
    /** A time-limited presigned GET URL of the file, for applications outside AWS. */
    readonly readUrl: string;
    /** Streams the file (by value): never held whole in memory. */
    open(): Promise<ReadableStream<Uint8Array>>;
  };
  /** Where a by-reference application puts its reply. */
  readonly response: ObjectLocation & {
    /** A time-limited presigned PUT URL for the reply. */
    readonly writeUrl: string;
  };
  /** The whole exchange must end within this; then the result is `timeout`. */
  readonly timeoutMs: number;
  /** A reply body above this is an error (the application's reply is buffered). */
  readonly maxReplyBytes: number;
}

export type NotificationResult =
  | {
      readonly kind: "ok";
      /** `BITS-Static-Response-URL`: the reply URL to give the client as is. */
      readonly staticUrl?: string | undefined;
      /** `BITS-Copy-File-To-Destination`: also keep the upload at its destination key. */
      readonly copyToDestination: boolean;
      /** By value (or from a Lambda function): the reply's bytes; undefined when none. */
      readonly reply?: Uint8Array | undefined;
    }
  /** The application answered with an error status (or a Lambda function failed). */
  | {
      readonly kind: "app-error";
      readonly status: number;
      /** The application's `BITS-Error-Code`, when it sent a well-formed one. */
      readonly errorCode?: number | undefined;
      readonly message: string;
    }
  | { readonly kind: "timeout" }
  /** The application could not be reached, or answered something unusable. */
  | { readonly kind: "unreachable"; readonly message: string };

export interface Notifier {
  notify(request: NotificationRequest): Promise<NotificationResult>;
}
