import { readFileSync } from "node:fs";
import { resolve } from "node:path";

/**
 * The AWS API calls the functions make, in the form the IAM simulation evaluates
 * (test/deploy/iam.test.ts): which role makes it, the IAM action, which of the stack's
 * resources it touches and the condition keys that matter. Names of buckets, tables and keys
 * are the tests' own, so a call records the resource's kind (an object under the upload prefix
 * or the staging prefix, the table, ...) and the simulation fills in the deployed stack's ARNs.
 *
 * test/deploy/aws-calls.json is the checked-in list. The recorder (record-aws-calls.ts) adds
 * to it with BITS_RECORD_AWS_CALLS=1 and otherwise fails a test file that made a call not in
 * it; the IAM test evaluates the list. Neither depends on the order test files run in.
 */

export type Role = "upload" | "cleanup";

export type ResourceKind =
  | "object:upload"
  | "object:staged"
  | "bucket"
  | "table"
  | "stream"
  | "secret"
  | "bus"
  | "function";

export interface AwsCall {
  readonly role: Role;
  readonly action: string;
  readonly resource: ResourceKind;
  /** Condition keys: s3:prefix as a kind ("upload", "staged"), dynamodb:LeadingKeys as a key. */
  readonly context?: Readonly<Record<string, string>>;
  /** The SDK command that made it. */
  readonly command: string;
  /**
   * Set where the role is denied this call on purpose: a call only a store that checks less
   * than S3 leads to. The IAM test expects it denied, with this reason written down.
   */
  readonly deniedOnPurpose?: string;
}

export const CALLS_FILE = resolve(import.meta.dirname, "../deploy/aws-calls.json");

export const callKey = (call: AwsCall) =>
  `${call.role} ${call.action} ${call.resource} ${JSON.stringify(call.context ?? {})} (${call.command})`;

export function readCalls(): AwsCall[] {
  return JSON.parse(readFileSync(CALLS_FILE, "utf8")) as AwsCall[];
}

/** Where a call comes from, by the code on its stack; undefined for the tests' own calls. */
export function roleOf(stack: string): Role | "operator" | "local" | undefined {
  const frames = stack.split("\n").filter((line) => !line.includes("/node_modules/"));
  if (!frames.some((line) => line.includes("/functions/"))) return undefined;
  // The operator's tool runs with the operator's credentials, not a function's role.
  if (frames.some((line) => /\/cli\/|service\/operator\.ts|function-environment\.ts/.test(line))) {
    return "operator";
  }
  // The local server's stream poller stands in for Lambda's event source mapping.
  if (frames.some((line) => /stream-poller\.ts|functions\/local\.ts/.test(line))) return "local";
  if (
    frames.some((line) =>
      /service\/cleanup\.ts|lambda\/cleanup-handler\.ts|events\/eventbridge-sink\.ts/.test(line),
    )
  ) {
    return "cleanup";
  }
  return "upload";
}

type Input = Record<string, unknown>;

/** The kind of an object key: under the staging prefix, or anything else (the upload prefix). */
const keyKind = (key: unknown, stagingPrefix: string): ResourceKind =>
  String(key ?? "").startsWith(stagingPrefix) ? "object:staged" : "object:upload";

const prefixKind = (key: unknown, stagingPrefix: string) =>
  keyKind(key, stagingPrefix) === "object:staged" ? "staged" : "upload";

/** A copy source "bucket/key" (URL-encoded) as its key. */
const copySourceKey = (source: unknown) => {
  const text = decodeURIComponent(String(source ?? "")).replace(/^\//, "");
  return text.slice(text.indexOf("/") + 1);
};

/**
 * A deleted item's partition key as dynamodb:LeadingKeys sees it (the cleanup role may delete
 * one item only), with IDs made one placeholder.
 */
function leadingKey(key: unknown): Record<string, string> {
  const pk = (key as { pk?: { S?: string } } | undefined)?.pk?.S;
  if (pk === undefined) return {};
  return { "dynamodb:LeadingKeys": pk === "C#sweep" ? pk : pk.replace(/#.*/s, "#x") };
}

const item = (action: string, resource: ResourceKind, context?: Record<string, string>) => ({
  action,
  resource,
  ...(context && Object.keys(context).length > 0 ? { context } : {}),
});

/**
 * The IAM actions one SDK command needs, as AWS documents them: S3's multipart calls need
 * s3:PutObject, a copy reads its source with s3:GetObject, a HEAD or GET of a missing key is
 * answered 404 only with s3:ListBucket on that key as the prefix (otherwise 403), DeleteObjects
 * checks s3:DeleteObject per key, TransactWriteItems each action it contains.
 */
export function actionsOf(
  command: string,
  input: Input,
  stagingPrefix: string,
): ReturnType<typeof item>[] {
  const name = command.replace(/Command$/, "");
  const key = input.Key;
  switch (name) {
    case "PutObject":
    case "CreateMultipartUpload":
    case "UploadPart":
    case "CompleteMultipartUpload":
      return [item("s3:PutObject", keyKind(key, stagingPrefix))];
    case "AbortMultipartUpload":
      return [item("s3:AbortMultipartUpload", keyKind(key, stagingPrefix))];
    case "GetObject":
    case "HeadObject":
      return [
        item("s3:GetObject", keyKind(key, stagingPrefix)),
        item("s3:ListBucket", "bucket", { "s3:prefix": prefixKind(key, stagingPrefix) }),
      ];
    case "UploadPartCopy":
    case "CopyObject":
      return [
        item("s3:PutObject", keyKind(key, stagingPrefix)),
        item("s3:GetObject", keyKind(copySourceKey(input.CopySource), stagingPrefix)),
      ];
    case "DeleteObject":
      return [item("s3:DeleteObject", keyKind(key, stagingPrefix))];
    case "DeleteObjects": {
      const objects = (input.Delete as { Objects?: { Key?: string }[] } | undefined)?.Objects;
      return (objects ?? []).map((object) =>
        item("s3:DeleteObject", keyKind(object.Key, stagingPrefix)),
      );
    }
    case "ListObjectsV2":
      return [
        item("s3:ListBucket", "bucket", { "s3:prefix": prefixKind(input.Prefix, stagingPrefix) }),
      ];
    case "ListParts":
      return [item("s3:ListMultipartUploadParts", keyKind(key, stagingPrefix))];
    case "ListMultipartUploads":
      return [item("s3:ListBucketMultipartUploads", "bucket")];
    case "GetItem":
    case "PutItem":
    case "UpdateItem":
      return [item(`dynamodb:${name}`, "table")];
    case "DeleteItem":
      return [item("dynamodb:DeleteItem", "table", leadingKey(key))];
    case "TransactWriteItems": {
      const items = (input.TransactItems ?? []) as Record<
        string,
        { Key?: unknown; Item?: unknown }
      >[];
      const actions: Record<string, string> = {
        Put: "dynamodb:PutItem",
        Update: "dynamodb:UpdateItem",
        Delete: "dynamodb:DeleteItem",
        ConditionCheck: "dynamodb:ConditionCheckItem",
      };
      return items.flatMap((entry) =>
        Object.entries(entry).map(([kind, operation]) =>
          kind === "Delete"
            ? item("dynamodb:DeleteItem", "table", leadingKey(operation.Key))
            : item(actions[kind] ?? `dynamodb:${kind}`, "table"),
        ),
      );
    }
    case "BatchGetItem":
    case "BatchWriteItem":
    case "Scan":
    case "Query":
    case "DescribeTable":
      return [item(`dynamodb:${name}`, "table")];
    case "DescribeStream":
    case "GetRecords":
    case "GetShardIterator":
    case "ListStreams":
      return [item(`dynamodb:${name}`, "stream")];
    case "GetParameter":
      return [item("ssm:GetParameter", "secret")];
    case "PutEvents":
      return [item("events:PutEvents", "bus")];
    case "Invoke":
      return [item("lambda:InvokeFunction", "function")];
    default:
      return [item(`unknown:${name}`, "table")];
  }
}
