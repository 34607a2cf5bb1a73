import { DynamoDBServiceException } from "@aws-sdk/client-dynamodb";
import { S3ServiceException } from "@aws-sdk/client-s3";
import { inject } from "vitest";
import { standInDynamoDb, standInS3 } from "../../infra/stand-ins.ts";

/**
 * How one storage call goes wrong:
 * - `fail`: the service answers an error (S3 500 InternalError, DynamoDB 503
 *   ServiceUnavailable); nothing is sent.
 * - `timeout`: the request is sent, but the caller gives up at once with a TimeoutError; the real
 *   call goes on and may land later (see `settle()`).
 * - `lost`: the call is performed in full, then the caller sees a dropped connection.
 */
export type FaultKind = "fail" | "timeout" | "lost";

export const FAULT_KINDS: readonly FaultKind[] = ["fail", "timeout", "lost"];

/** The fault to inject: `kind` at the `at`-th call (1-based) counted across both clients. */
export interface FaultPlan {
  readonly at: number;
  readonly kind: FaultKind;
}

export interface CallRecord {
  /** 1-based position among all calls of both clients. */
  readonly index: number;
  readonly client: "s3" | "dynamodb";
  /** `command.constructor.name`, e.g. `PutItemCommand`. */
  readonly command: string;
  readonly fault: FaultKind | undefined;
  /** How the real call ended: `ok`, the error's name, `not sent`, or `pending` until it ends. */
  outcome: string;
}

export interface UploadRecord {
  readonly key: string;
  readonly uploadId: string;
  /** The CreateMultipartUpload call that returned it. */
  readonly call: number;
  /** False when the caller never saw the answer (lost or timed out): only S3 knows the id. */
  readonly answered: boolean;
}

export interface FaultyClients {
  /** Dedicated clients for the code under test; verification uses its own, unwrapped ones. */
  readonly s3: ReturnType<typeof standInS3>;
  readonly dynamodb: ReturnType<typeof standInDynamoDb>;
  readonly calls: readonly CallRecord[];
  readonly uploads: readonly UploadRecord[];
  /** The call the fault hit, once it has happened. */
  injected(): CallRecord | undefined;
  /** Waits for every real call a timeout left running (they never reject). */
  settle(): Promise<void>;
  destroy(): void;
}

interface Command {
  readonly input?: unknown;
}

type Send = (command: Command, options?: unknown) => Promise<unknown>;

const metadata = (httpStatusCode?: number) => ({
  ...(httpStatusCode === undefined ? {} : { httpStatusCode }),
  requestId: "injected-fault",
  attempts: 1,
  totalRetryDelay: 0,
});

function serviceError(client: "s3" | "dynamodb"): Error {
  if (client === "s3") {
    return new S3ServiceException({
      name: "InternalError",
      $fault: "server",
      $metadata: metadata(500),
      message: "We encountered an internal error. Please try again. (injected)",
    });
  }
  return new DynamoDBServiceException({
    name: "ServiceUnavailable",
    $fault: "server",
    $metadata: metadata(503),
    message: "Service unavailable (injected)",
  });
}

function timeoutError(): Error {
  return Object.assign(new Error("Connection timed out after 3000 ms (injected)"), {
    name: "TimeoutError",
    $metadata: metadata(),
  });
}

function droppedError(): Error {
  return Object.assign(new Error("socket hang up (injected)"), {
    code: "ECONNRESET",
    $metadata: metadata(),
  });
}

const nameOf = (error: unknown) => (error as { name?: string }).name ?? String(error);

/**
 * New S3 and DynamoDB clients for the stand-ins whose `send()` calls share one counter; the
 * `plan.at`-th call gets `plan.kind`. Every call's command name is recorded, and every UploadId
 * CreateMultipartUpload returned, also when the caller never saw the answer.
 */
export function faultyClients(plan?: FaultPlan): FaultyClients {
  const s3 = standInS3(inject("s3Endpoint"));
  const dynamodb = standInDynamoDb(inject("dynamodbEndpoint"));
  const calls: CallRecord[] = [];
  const uploads: UploadRecord[] = [];
  const pending: Promise<void>[] = [];

  const noteUpload = (call: CallRecord, command: Command, output: unknown, answered: boolean) => {
    if (call.command !== "CreateMultipartUploadCommand") return;
    const uploadId = (output as { UploadId?: string } | undefined)?.UploadId;
    const key = (command.input as { Key?: string } | undefined)?.Key;
    if (uploadId !== undefined && key !== undefined) {
      uploads.push({ key, uploadId, call: call.index, answered });
    }
  };

  const wrap = (client: object, name: "s3" | "dynamodb") => {
    const target = client as { send: Send };
    const original: Send = target.send.bind(client);
    target.send = async (command, options) => {
      const index = calls.length + 1;
      const fault = plan !== undefined && plan.at === index ? plan.kind : undefined;
      const call: CallRecord = {
        index,
        client: name,
        command: command.constructor.name,
        fault,
        outcome: "pending",
      };
      calls.push(call);
      if (fault === "fail") {
        call.outcome = "not sent";
        throw serviceError(name);
      }
      const real = original(command, options).then(
        (output) => {
          call.outcome = "ok";
          return { output };
        },
        (error: unknown) => {
          call.outcome = nameOf(error);
          return { error };
        },
      );
      if (fault === "timeout") {
        pending.push(
          real.then((result) => {
            if ("output" in result) noteUpload(call, command, result.output, false);
          }),
        );
        throw timeoutError();
      }
      const result = await real;
      if ("output" in result) noteUpload(call, command, result.output, fault === undefined);
      if (fault === "lost") throw droppedError();
      if ("error" in result) throw result.error;
      return result.output;
    };
  };
  wrap(s3, "s3");
  wrap(dynamodb, "dynamodb");

  return {
    s3,
    dynamodb,
    calls,
    uploads,
    injected: () => calls.find((call) => call.fault !== undefined),
    async settle() {
      // A settled call starts no other, so one pass over a snapshot is enough.
      await Promise.all([...pending]);
    },
    destroy() {
      s3.destroy();
      dynamodb.destroy();
    },
  };
}

/** `PutItemCommand` -> `PutItem`. */
export const shortName = (command: string) => command.replace(/Command$/, "");
