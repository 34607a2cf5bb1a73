import { runSimulation, type Simulation } from "@cloud-copilot/iam-simulate";
import { beforeAll, describe, expect, it } from "vitest";
import { type AwsCall, type ResourceKind, type Role, readCalls } from "../support/aws-calls.ts";
import { packagedTemplate } from "../support/packaging.ts";
import {
  asArray,
  DEFAULT_PARAMS,
  type Deployment,
  deploy,
  deployedStatements,
  HARDENED_PARAMS,
  PSEUDO,
  type Template,
} from "../support/template.ts";

/**
 * The packaged stack's IAM policies, evaluated the way AWS does (@cloud-copilot/iam-simulate)
 * against the AWS calls the functions really make: test/deploy/aws-calls.json, which the
 * integration and end-to-end suites keep complete (test/support/record-aws-calls.ts fails a
 * suite that makes a call the list lacks). Every recorded call must be allowed with the
 * account, Region and stage filled in; the calls a function must never make are denied; and a
 * permission no recorded call uses is listed below with the reason it stays.
 */

const ACCOUNT = PSEUDO["AWS::AccountId"];
const REGION = PSEUDO["AWS::Region"];
const BUCKET = "bits-upload-server-dev-uploadbucket-1a2b3c4d5e6f";
const TABLE = "bits-upload-server-dev-SessionsTable-ABCDEF123456";
const TABLE_ARN = `arn:aws:dynamodb:${REGION}:${ACCOUNT}:table/${TABLE}`;
const STREAM_ARN = `${TABLE_ARN}/stream/2026-01-01T00:00:00.000`;
const DEPLOYMENT_BUCKET = "bits-upload-server-dev-serverlessdeploymentbucket-0a1b2c3d4e5f";

/** The names CloudFormation would give the stack's resources. */
function physical(id: string, attribute?: string): string | undefined {
  const names: Record<string, string> = {
    UploadBucket: BUCKET,
    SessionsTable: TABLE,
    "SessionsTable.Arn": TABLE_ARN,
    "SessionsTable.StreamArn": STREAM_ARN,
    ServerlessDeploymentBucket: DEPLOYMENT_BUCKET,
    "UploadLogGroup.Arn": `arn:aws:logs:${REGION}:${ACCOUNT}:log-group:/aws/lambda/bits-upload-server-dev-upload:*`,
    "CleanupLogGroup.Arn": `arn:aws:logs:${REGION}:${ACCOUNT}:log-group:/aws/lambda/bits-upload-server-dev-cleanup:*`,
  };
  return names[attribute === undefined ? id : `${id}.${attribute}`];
}

const ROLES: Record<Role, string> = {
  upload: "UploadFunctionRole",
  cleanup: "CleanupFunctionRole",
};

interface Variant {
  readonly name: string;
  readonly stack: Deployment;
  /** Each resource kind's ARNs in this stack (several: each must be allowed). */
  readonly arns: Record<ResourceKind, string[]>;
}

function variant(name: string, template: Template, keyPrefix: string): Variant {
  const stack = deploy(template, {}, physical);
  const parameters = stack.parameters;
  const secrets = ["HtpasswdParameter", "UrlKeysParameter"]
    .map((p) => String(parameters.get(p) ?? ""))
    .filter((value) => value !== "")
    .map((value) => `arn:aws:ssm:${REGION}:${ACCOUNT}:parameter/${value.replace(/^\//, "")}`);
  const notified = String(parameters.get("NotificationUrl") ?? "");
  return {
    name,
    stack,
    arns: {
      "object:upload": [`arn:aws:s3:::${BUCKET}/${keyPrefix}/reports/2026/q3.zip`],
      "object:staged": [
        `arn:aws:s3:::${BUCKET}/.bits-staging/{6F9619FF-8B86-D011-B42D-00C04FC964FF}/3`,
      ],
      bucket: [`arn:aws:s3:::${BUCKET}`],
      table: [TABLE_ARN],
      stream: [STREAM_ARN],
      secret: secrets,
      bus: [
        `arn:aws:events:${REGION}:${ACCOUNT}:event-bus/${String(parameters.get("EventBus") ?? "default")}`,
      ],
      function: notified.startsWith("lambda:arn:") ? [notified.slice("lambda:".length)] : [],
    },
  };
}

/** The s3:prefix a recorded kind stands for in this stack. */
const prefixes = (keyPrefix: string): Record<string, string> => ({
  upload: `${keyPrefix}/reports/2026/q3.zip`,
  staged: ".bits-staging/{6F9619FF-8B86-D011-B42D-00C04FC964FF}/3",
});

/** One request by a role, as AWS would decide it. */
async function decide(
  stack: Deployment,
  role: Role,
  action: string,
  resource: string,
  context: Record<string, string | string[]> = {},
) {
  const statements = deployedStatements(stack, ROLES[role]);
  const simulation: Simulation = {
    identityPolicies: [
      { name: `bits-${role}`, policy: { Version: "2012-10-17", Statement: statements } },
    ],
    serviceControlPolicies: [],
    resourceControlPolicies: [],
    request: {
      principal: `arn:aws:iam::${ACCOUNT}:role/bits-upload-server-dev-${role}`,
      action,
      resource: { resource, accountId: ACCOUNT },
      contextVariables: context,
    },
  } as Simulation;
  const result = await runSimulation(simulation, {});
  if (result.resultType === "error") {
    throw new Error(`${action} on ${resource}: ${JSON.stringify(result.errors)}`);
  }
  return result.overallResult;
}

/** A recorded call's condition keys in a stack. */
function contextOf(call: AwsCall, keyPrefix: string): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [key, value] of Object.entries(call.context ?? {})) {
    if (key === "s3:prefix") out[key] = prefixes(keyPrefix)[value] ?? value;
    else if (key === "dynamodb:LeadingKeys") {
      out[key] = [value.replace(/#x$/, "#{6F9619FF-8B86-D011-B42D-00C04FC964FF}")];
    } else out[key] = value;
  }
  return out;
}

/**
 * Permissions no recorded call uses, and why each stays. Anything else the roles grant must be
 * used by a recorded call.
 */
const KEPT: Record<string, string> = {
  "upload logs:CreateLogStream": "the Lambda runtime writes the function's logs with its role",
  "upload logs:PutLogEvents": "the same",
  "cleanup logs:CreateLogStream": "the same",
  "cleanup logs:PutLogEvents": "the same",
  "upload kms:GenerateDataKey":
    "S3 calls KMS with the caller's rights to write SSE-KMS objects (kmsKeyArn); no SDK call",
  "upload kms:Decrypt":
    "S3 (SSE-KMS reads, multipart completion) and SSM/Secrets Manager (SecureStrings) decrypt with the caller's rights",
  "upload secretsmanager:GetSecretValue":
    "ssm:GetParameter of /aws/reference/secretsmanager/<name> reads the secret with the caller's rights",
  "upload dynamodb:ConditionCheckItem":
    "no call uses it today (no transaction has a ConditionCheck); template.test.ts pins it, to be removed with that assertion",
  "upload ssm:GetParameter":
    "the suites read secrets from files; the SSM path runs in bundle.test.ts, in a child process the recorder does not see",
  "cleanup dynamodb:DescribeStream":
    "Lambda's event source mapping reads the table's stream with the function's role",
  "cleanup dynamodb:GetRecords": "the same",
  "cleanup dynamodb:GetShardIterator": "the same",
  "cleanup dynamodb:ListStreams": "the same",
};

describe("IAM: the roles allow exactly the calls the functions make", () => {
  let variants: Variant[];
  let calls: AwsCall[];

  beforeAll(() => {
    calls = readCalls();
    variants = [
      variant("hardened", packagedTemplate<Template>(HARDENED_PARAMS), "uploads"),
      variant("default", packagedTemplate<Template>(DEFAULT_PARAMS), "uploads"),
    ];
  }, 240_000);

  it("the list of recorded calls is not empty and names both roles", () => {
    expect(calls.some((call) => call.role === "upload")).toBe(true);
    expect(calls.some((call) => call.role === "cleanup")).toBe(true);
  });

  it("every recorded call is allowed, in every variant, but those denied on purpose", async () => {
    const denied: string[] = [];
    for (const v of variants) {
      for (const call of calls) {
        for (const resource of v.arns[call.resource]) {
          const result = await decide(
            v.stack,
            call.role,
            call.action,
            resource,
            contextOf(call, "uploads"),
          );
          if (call.deniedOnPurpose !== undefined) {
            if (result === "Allowed") {
              denied.push(
                `${v.name}: ${call.role} role may ${call.action} on ${resource}, denied on purpose`,
              );
            }
          } else if (result !== "Allowed") {
            denied.push(
              `${v.name}: ${call.role} role may not ${call.action} on ${resource} (${call.command}): ${result}`,
            );
          }
        }
      }
    }
    expect(denied).toEqual([]);
  });

  it("what a function must never do is denied", async () => {
    const stack = variants[0]?.stack as Deployment;
    const never: [Role, string, string, Record<string, string | string[]>?][] = [];
    for (const role of ["upload", "cleanup"] as const) {
      never.push(
        // Another stack's bucket and table.
        [role, "s3:PutObject", "arn:aws:s3:::other-stack-bucket/uploads/a.txt"],
        [role, "s3:GetObject", "arn:aws:s3:::other-stack-bucket/uploads/a.txt"],
        [role, "s3:DeleteObject", "arn:aws:s3:::other-stack-bucket/.bits-staging/a"],
        [role, "dynamodb:PutItem", `arn:aws:dynamodb:${REGION}:${ACCOUNT}:table/other-table`],
        [role, "dynamodb:GetItem", `arn:aws:dynamodb:${REGION}:${ACCOUNT}:table/other-table`],
        // A key outside the prefixes, and a prefix that only starts like ours.
        [role, "s3:GetObject", `arn:aws:s3:::${BUCKET}/private/payroll.csv`],
        [role, "s3:PutObject", `arn:aws:s3:::${BUCKET}/uploads-private/a.txt`],
        [role, "s3:ListBucket", `arn:aws:s3:::${BUCKET}`, { "s3:prefix": "private/" }],
        // The deployment bucket (the functions' own code).
        [role, "s3:GetObject", `arn:aws:s3:::${DEPLOYMENT_BUCKET}/serverless/upload.zip`],
        [role, "s3:PutObject", `arn:aws:s3:::${DEPLOYMENT_BUCKET}/serverless/upload.zip`],
        // Deleting the bucket or the table, or uploaded files.
        [role, "s3:DeleteBucket", `arn:aws:s3:::${BUCKET}`],
        [role, "s3:DeleteObject", `arn:aws:s3:::${BUCKET}/uploads/reports/2026/q3.zip`],
        [role, "dynamodb:DeleteTable", TABLE_ARN],
        // Other SSM parameters.
        [
          role,
          "ssm:GetParameter",
          `arn:aws:ssm:${REGION}:${ACCOUNT}:parameter/prod/database-password`,
        ],
        [
          role,
          "ssm:GetParameter",
          `arn:aws:ssm:${REGION}:${ACCOUNT}:parameter/bits-htpasswd-other`,
        ],
      );
    }
    // The cleanup role deletes the sweep's position, no session.
    never.push([
      "cleanup",
      "dynamodb:DeleteItem",
      TABLE_ARN,
      { "dynamodb:LeadingKeys": ["S#{6F9619FF-8B86-D011-B42D-00C04FC964FF}"] },
    ]);
    const allowed: string[] = [];
    for (const [role, action, resource, context] of never) {
      const result = await decide(stack, role, action, resource, context);
      if (result === "Allowed") allowed.push(`${role} role may ${action} on ${resource}`);
    }
    expect(allowed).toEqual([]);
  });

  it("every permission is used by a recorded call or kept for a written reason", () => {
    const used = new Set(calls.map((call) => `${call.role} ${call.action}`));
    const unused: string[] = [];
    for (const [role, id] of Object.entries(ROLES)) {
      for (const statement of deployedStatements(variants[0]?.stack as Deployment, id)) {
        for (const action of asArray(statement.Action).map(String)) {
          const key = `${role} ${action}`;
          if (!used.has(key) && KEPT[key] === undefined) unused.push(`${key} (${statement.Sid})`);
        }
      }
    }
    expect(unused).toEqual([]);
    // A kept permission that a call now uses needs no reason: the list shrinks.
    expect(Object.keys(KEPT).filter((key) => used.has(key))).toEqual([]);
  });
});
