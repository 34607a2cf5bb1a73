import { execFileSync } from "node:child_process";
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

/**
 * The CloudFormation template `npm run package` writes from serverless.yml and infra/*.yml,
 * checked offline: the front door's rules, the storage settings, the event sources, and that no
 * IAM policy grants a wildcard action or the "*" resource.
 */

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type JsonObject = { [key: string]: Json };
interface Resource {
  Type: string;
  Condition?: string;
  DependsOn?: string | string[];
  Properties: JsonObject;
}
interface Template {
  Parameters: Record<string, { Default: Json; AllowedValues?: string[] }>;
  Conditions: Record<string, Json>;
  Resources: Record<string, Resource>;
  Outputs: Record<string, { Condition?: string; Value: Json }>;
}

const ROOT = resolve(import.meta.dirname, "../..");
const TEMPLATE = "cloudformation-template-update-stack.json";

/** The environment of a packaging run: no AWS credentials, no telemetry. */
function packagingEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    SLS_TELEMETRY_DISABLED: "1",
    SLS_NOTIFICATIONS_MODE: "off",
  };
  for (const name of [
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
  ]) {
    delete env[name];
  }
  return env;
}

function run(command: string, args: string[]) {
  return execFileSync(command, args, {
    cwd: ROOT,
    env: packagingEnv(),
    encoding: "utf8",
    stdio: "pipe",
    timeout: 180_000,
  });
}

/** `osls package` with parameters, into its own directory. */
function packageWith(params: Record<string, string>, outDir: string) {
  const flags = Object.entries(params).map(([key, value]) => `--param=${key}=${value}`);
  return run("npx", ["osls", "package", ...flags, "--package", outDir]);
}

const readTemplate = (dir: string) =>
  JSON.parse(readFileSync(join(dir, TEMPLATE), "utf8")) as Template;

const asArray = (value: Json | undefined): Json[] =>
  value === undefined ? [] : Array.isArray(value) ? value : [value];

const isObject = (value: Json | undefined): value is JsonObject =>
  typeof value === "object" && value !== null && !Array.isArray(value);

/**
 * Every value a policy element can take: both branches of each Fn::If, without AWS::NoValue.
 * Lists are flattened, so a statement list or an Action list comes out item by item.
 */
function branches(value: Json | undefined): Json[] {
  if (Array.isArray(value)) return value.flatMap(branches);
  if (isObject(value)) {
    const choice = value["Fn::If"];
    if (Array.isArray(choice)) return [...branches(choice[1]), ...branches(choice[2])];
    if (value.Ref === "AWS::NoValue") return [];
  }
  return value === undefined ? [] : [value];
}

/** Every statement of every IAM policy in the template, with where it came from. */
function iamStatements(template: Template) {
  const found: { where: string; statement: JsonObject }[] = [];
  const collect = (where: string, document: Json | undefined) => {
    if (!isObject(document)) return;
    for (const statement of branches(document.Statement)) {
      if (isObject(statement)) found.push({ where, statement });
    }
  };
  for (const [id, resource] of Object.entries(template.Resources)) {
    const props = resource.Properties;
    if (resource.Type === "AWS::IAM::Role") {
      collect(`${id} (trust)`, props.AssumeRolePolicyDocument);
      for (const policy of branches(props.Policies)) {
        if (isObject(policy)) collect(`${id}/${String(policy.PolicyName)}`, policy.PolicyDocument);
      }
    } else if (
      resource.Type === "AWS::IAM::Policy" ||
      resource.Type === "AWS::IAM::ManagedPolicy"
    ) {
      collect(id, props.PolicyDocument);
    }
  }
  return found;
}

/** The actions a role's policies allow, with the resources of each statement. */
function allowed(template: Template, roleId: string) {
  return iamStatements(template)
    .filter(
      ({ where, statement }) => where.startsWith(`${roleId}/`) && statement.Effect === "Allow",
    )
    .map(({ statement }) => ({
      actions: branches(statement.Action) as string[],
      resources: branches(statement.Resource),
      condition: statement.Condition,
    }));
}

const ofType = (template: Template, type: string) =>
  Object.entries(template.Resources).filter(([, resource]) => resource.Type === type);

const stringsIn = (value: unknown): string => JSON.stringify(value);

/** A CloudFormation Fn::Sub placeholder: cf("Bucket") is "${Bucket}". */
const cf = (name: string) => `\${${name}}`;

describe("the packaged CloudFormation template (serverless.yml + infra/*.yml)", () => {
  let template: Template;
  let alternative: Template;
  let zips: Record<string, Buffer>;
  let scratch: string;

  beforeAll(() => {
    scratch = mkdtempSync(join(tmpdir(), "bits-package-"));
    run("npm", ["run", "package"]);
    const packaged = join(ROOT, ".serverless");
    template = readTemplate(packaged);
    zips = {
      upload: readFileSync(join(packaged, "upload.zip")),
      cleanup: readFileSync(join(packaged, "cleanup.zip")),
    };
    // osls stages every package in .serverless/ before moving it: keep the default one.
    cpSync(packaged, join(scratch, "default"), { recursive: true });
    packageWith(
      {
        frontDoor: "httpapi",
        listenerProtocol: "HTTP",
        existingBucket: "my-existing-bucket",
        kmsKeyArn: "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
        keyPrefix: "uploads/",
      },
      join(scratch, "alternative"),
    );
    alternative = readTemplate(join(scratch, "alternative"));
  }, 240_000);

  afterAll(() => {
    const packaged = join(ROOT, ".serverless");
    if (scratch && !existsSync(join(packaged, TEMPLATE)) && existsSync(join(scratch, "default"))) {
      cpSync(join(scratch, "default"), packaged, { recursive: true });
    }
    if (scratch) rmSync(scratch, { recursive: true, force: true });
  });

  describe("front door: ALB", () => {
    it("forwards BITS_POST, and POST with X-Http-Method-Override: BITS_POST, to the function", () => {
      const rules = ofType(template, "AWS::ElasticLoadBalancingV2::ListenerRule").map(
        ([, rule]) => rule.Properties,
      );
      expect(rules).toHaveLength(2);
      const byPriority = [...rules].sort((a, b) => Number(a.Priority) - Number(b.Priority));
      expect(byPriority[0]?.Conditions).toEqual([
        { Field: "http-request-method", HttpRequestMethodConfig: { Values: ["BITS_POST"] } },
      ]);
      expect(byPriority[1]?.Conditions).toEqual([
        { Field: "http-request-method", HttpRequestMethodConfig: { Values: ["POST"] } },
        {
          Field: "http-header",
          HttpHeaderConfig: { HttpHeaderName: "X-Http-Method-Override", Values: ["BITS_POST"] },
        },
      ]);
      for (const rule of rules) {
        expect(rule.ListenerArn).toEqual({ Ref: "Listener" });
        expect(rule.Actions).toEqual([
          { Type: "forward", TargetGroupArn: { Ref: "UploadTargetGroup" } },
        ]);
      }
    });

    it("answers everything else with an empty 405 from the listener itself", () => {
      const listener = template.Resources.Listener?.Properties;
      expect(listener?.DefaultActions).toEqual([
        {
          Type: "fixed-response",
          FixedResponseConfig: { StatusCode: "405", ContentType: "text/plain" },
        },
      ]);
      expect(listener?.Protocol).toEqual({ "Fn::If": ["UseHttps", "HTTPS", "HTTP"] });
      expect(listener?.Certificates).toEqual({
        "Fn::If": [
          "UseHttps",
          [{ CertificateArn: { Ref: "CertificateArn" } }],
          { Ref: "AWS::NoValue" },
        ],
      });
    });

    it("targets the upload function, which the load balancer may invoke", () => {
      const group = template.Resources.UploadTargetGroup;
      expect(group?.Properties.TargetType).toBe("lambda");
      expect(group?.Properties.Targets).toEqual([
        { Id: { "Fn::GetAtt": ["UploadLambdaFunction", "Arn"] } },
      ]);
      expect(asArray(group?.DependsOn)).toContain("UploadFunctionAlbPermission");
      const permission = template.Resources.UploadFunctionAlbPermission?.Properties;
      expect(permission?.Principal).toBe("elasticloadbalancing.amazonaws.com");
      expect(permission?.FunctionName).toEqual({ "Fn::GetAtt": ["UploadLambdaFunction", "Arn"] });
      const lb = template.Resources.LoadBalancer?.Properties;
      expect(lb?.Scheme).toBe("internet-facing");
      expect(lb?.Subnets).toEqual({
        "Fn::If": [
          "CreateVpc",
          [{ Ref: "PublicSubnetA" }, { Ref: "PublicSubnetB" }],
          { Ref: "SubnetIds" },
        ],
      });
    });

    it("opens only the listener's port to the internet", () => {
      const group = template.Resources.LoadBalancerSecurityGroup?.Properties;
      expect(group?.SecurityGroupIngress).toEqual([
        expect.objectContaining({
          IpProtocol: "tcp",
          FromPort: { "Fn::If": ["UseHttps", 443, 80] },
          ToPort: { "Fn::If": ["UseHttps", 443, 80] },
          CidrIp: { Ref: "AllowedCidr" },
        }),
      ]);
      expect(template.Parameters.AllowedCidr?.Default).toBe("0.0.0.0/0");
    });

    it("creates a VPC with two public subnets in two zones only when none is given", () => {
      for (const id of [
        "Vpc",
        "InternetGateway",
        "InternetGatewayAttachment",
        "PublicSubnetA",
        "PublicSubnetB",
        "PublicRouteTable",
        "PublicDefaultRoute",
        "PublicSubnetARouteTable",
        "PublicSubnetBRouteTable",
      ]) {
        expect(template.Resources[id]?.Condition, id).toBe("CreateVpc");
      }
      expect(template.Resources.PublicSubnetA?.Properties.AvailabilityZone).toEqual({
        "Fn::Select": [0, { "Fn::GetAZs": "" }],
      });
      expect(template.Resources.PublicSubnetB?.Properties.AvailabilityZone).toEqual({
        "Fn::Select": [1, { "Fn::GetAZs": "" }],
      });
      expect(template.Resources.PublicDefaultRoute?.Properties).toMatchObject({
        DestinationCidrBlock: "0.0.0.0/0",
        GatewayId: { Ref: "InternetGateway" },
      });
    });
  });

  describe("storage", () => {
    it("the table: on demand, key pk, TTL on exp, a stream, point-in-time recovery, SSE", () => {
      const table = template.Resources.SessionsTable?.Properties;
      expect(table?.BillingMode).toBe("PAY_PER_REQUEST");
      expect(table?.KeySchema).toEqual([{ AttributeName: "pk", KeyType: "HASH" }]);
      expect(table?.AttributeDefinitions).toEqual([{ AttributeName: "pk", AttributeType: "S" }]);
      expect(table?.TimeToLiveSpecification).toEqual({ AttributeName: "exp", Enabled: true });
      expect(["OLD_IMAGE", "NEW_AND_OLD_IMAGES"]).toContain(
        (table?.StreamSpecification as JsonObject | undefined)?.StreamViewType,
      );
      expect(table?.PointInTimeRecoverySpecification).toEqual({
        PointInTimeRecoveryEnabled: true,
      });
      expect(table?.SSESpecification).toEqual({ SSEEnabled: true });
    });

    it("the bucket: private, owner-enforced, encrypted (SSE-S3, or SSE-KMS with a key)", () => {
      const bucket = template.Resources.UploadBucket;
      expect(bucket?.Condition).toBe("CreateBucket");
      expect(bucket?.Properties.PublicAccessBlockConfiguration).toEqual({
        BlockPublicAcls: true,
        BlockPublicPolicy: true,
        IgnorePublicAcls: true,
        RestrictPublicBuckets: true,
      });
      expect(
        template.Resources.ServerlessDeploymentBucket?.Properties.PublicAccessBlockConfiguration,
      ).toEqual(bucket?.Properties.PublicAccessBlockConfiguration);
      expect(bucket?.Properties.OwnershipControls).toEqual({
        Rules: [{ ObjectOwnership: "BucketOwnerEnforced" }],
      });
      expect(bucket?.Properties.BucketEncryption).toEqual({
        ServerSideEncryptionConfiguration: [
          {
            ServerSideEncryptionByDefault: {
              SSEAlgorithm: { "Fn::If": ["UseKms", "aws:kms", "AES256"] },
              KMSMasterKeyID: {
                "Fn::If": ["UseKms", { Ref: "KmsKeyArn" }, { Ref: "AWS::NoValue" }],
              },
            },
            BucketKeyEnabled: { "Fn::If": ["UseKms", true, { Ref: "AWS::NoValue" }] },
          },
        ],
      });
    });

    it("the bucket's lifecycle aborts abandoned uploads and expires staged fragments", () => {
      const lifecycle = template.Resources.UploadBucket?.Properties.LifecycleConfiguration;
      const rules = (lifecycle as { Rules: JsonObject[] }).Rules;
      expect(rules).toContainEqual(
        expect.objectContaining({
          Status: "Enabled",
          AbortIncompleteMultipartUpload: { DaysAfterInitiation: { Ref: "LifecycleDays" } },
        }),
      );
      const abort = rules.find((rule) => rule.AbortIncompleteMultipartUpload);
      expect(abort?.Prefix).toBeUndefined();
      expect(rules).toContainEqual(
        expect.objectContaining({
          Status: "Enabled",
          Prefix: { Ref: "StagingPrefix" },
          ExpirationInDays: { Ref: "LifecycleDays" },
        }),
      );
      expect(template.Parameters.LifecycleDays?.Default).toBe(15);
      expect(template.Parameters.StagingPrefix?.Default).toBe(".bits-staging/");
    });

    it("the bucket policy denies every request that is not over TLS", () => {
      const policy = template.Resources.UploadBucketPolicy;
      expect(policy?.Condition).toBe("CreateBucket");
      expect(policy?.Properties.Bucket).toEqual({ Ref: "UploadBucket" });
      const document = policy?.Properties.PolicyDocument as { Statement: JsonObject[] };
      expect(document.Statement).toContainEqual({
        Sid: "DenyInsecureTransport",
        Effect: "Deny",
        Principal: "*",
        Action: "s3:*",
        Resource: [
          { "Fn::GetAtt": ["UploadBucket", "Arn"] },
          { "Fn::Sub": `${cf("UploadBucket.Arn")}/*` },
        ],
        Condition: { Bool: { "aws:SecureTransport": false } },
      });
    });
  });

  describe("functions", () => {
    const ENV = [
      "BITS_BUCKET",
      "BITS_TABLE",
      "BITS_KEY_PREFIX",
      "BITS_STAGING_PREFIX",
      "BITS_MAX_FRAGMENT_SIZE",
      "BITS_MAX_UPLOAD_SIZE",
      "BITS_ALLOW_OVERWRITE",
      "BITS_SESSION_TIMEOUT",
      "BITS_LOG_LEVEL",
    ];

    it.each([
      ["UploadLambdaFunction", "upload", "UploadFunctionRole"],
      ["CleanupLambdaFunction", "cleanup", "CleanupFunctionRole"],
    ])("%s: nodejs22.x on arm64, its prebuilt bundle, its own role", (id, name, role) => {
      const fn = template.Resources[id]?.Properties;
      expect(fn?.Runtime).toBe("nodejs22.x");
      expect(fn?.Architectures).toEqual(["arm64"]);
      expect(fn?.Handler).toBe(`dist/${name}/handler.handler`);
      expect(fn?.Role).toEqual({ "Fn::GetAtt": [role, "Arn"] });
      const code = fn?.Code as JsonObject;
      expect(code.S3Bucket).toEqual({ Ref: "ServerlessDeploymentBucket" });
      expect(String(code.S3Key)).toMatch(new RegExp(`/${name}\\.zip$`));
      const variables = (fn?.Environment as { Variables: JsonObject } | undefined)?.Variables ?? {};
      for (const variable of ENV) expect(variables, variable).toHaveProperty(variable);
      expect(variables.BITS_TABLE).toEqual({ Ref: "SessionsTable" });
      expect(variables.BITS_BUCKET).toEqual({
        "Fn::If": ["CreateBucket", { Ref: "UploadBucket" }, { Ref: "ExistingBucket" }],
      });
      expect(variables.BITS_MAX_FRAGMENT_SIZE).toBe("1MB");
      expect(variables.BITS_ALLOW_OVERWRITE).toBe("false");
      expect(variables.BITS_SESSION_TIMEOUT).toBe("1209600");
    });

    it("the upload function has 1024 MB and a 60 s timeout", () => {
      expect(template.Resources.UploadLambdaFunction?.Properties).toMatchObject({
        MemorySize: 1024,
        Timeout: 60,
      });
    });

    it("each zip holds its own bundle and nothing else", () => {
      for (const [name, zip] of Object.entries(zips)) {
        const other = name === "upload" ? "cleanup" : "upload";
        expect(zip.includes(`dist/${name}/handler.mjs`), name).toBe(true);
        expect(zip.includes(`dist/${other}/`), name).toBe(false);
        expect(zip.includes("node_modules/"), name).toBe(false);
        expect(zip.includes("functions/"), name).toBe(false);
      }
    });

    it("there is no shared default role", () => {
      expect(template.Resources.IamRoleLambdaExecution).toBeUndefined();
      expect(
        ofType(template, "AWS::IAM::Role")
          .map(([id]) => id)
          .sort(),
      ).toEqual(["CleanupFunctionRole", "UploadFunctionRole"]);
    });

    it("the cleanup function hears TTL removals of sessions from the table's stream", () => {
      const mappings = ofType(template, "AWS::Lambda::EventSourceMapping");
      expect(mappings).toHaveLength(1);
      const mapping = mappings[0]?.[1].Properties;
      expect(mapping?.EventSourceArn).toEqual({ "Fn::GetAtt": ["SessionsTable", "StreamArn"] });
      expect(mapping?.FunctionName).toEqual({ "Fn::GetAtt": ["CleanupLambdaFunction", "Arn"] });
      expect(mapping?.StartingPosition).toBe("LATEST");
      expect(mapping?.BisectBatchOnFunctionError).toBe(true);
      expect(mapping?.MaximumRetryAttempts).toBeGreaterThan(0);
      const criteria = mapping?.FilterCriteria as { Filters: { Pattern: string }[] } | undefined;
      const filters = criteria?.Filters ?? [];
      expect(filters).toHaveLength(1);
      expect(JSON.parse(filters[0]?.Pattern ?? "{}")).toEqual({
        eventName: ["REMOVE"],
        dynamodb: { Keys: { pk: { S: [{ prefix: "S#" }] } } },
      });
    });

    it("the cleanup function also sweeps on a schedule", () => {
      const rules = ofType(template, "AWS::Events::Rule");
      expect(rules).toHaveLength(1);
      const rule = rules[0]?.[1].Properties;
      expect(rule?.ScheduleExpression).toBe("rate(6 hours)");
      expect(stringsIn(rule?.Targets)).toContain("CleanupLambdaFunction");
      const permissions = ofType(template, "AWS::Lambda::Permission").map(([, p]) => p.Properties);
      expect(permissions).toContainEqual(
        expect.objectContaining({
          Principal: "events.amazonaws.com",
          FunctionName: { "Fn::GetAtt": ["CleanupLambdaFunction", "Arn"] },
        }),
      );
    });
  });

  describe("IAM: least privilege", () => {
    it.each([
      ["default", () => template],
      ["alternative (HTTP API, existing bucket, KMS, key prefix)", () => alternative],
    ])("no policy in the %s template allows a wildcard action or the * resource", (_, get) => {
      const statements = iamStatements(get());
      expect(statements.length).toBeGreaterThanOrEqual(14);
      for (const { where, statement } of statements) {
        const label = `${where} ${stringsIn(statement.Sid ?? statement)}`;
        expect(statement.NotAction, label).toBeUndefined();
        expect(statement.NotResource, label).toBeUndefined();
        for (const action of branches(statement.Action)) {
          expect(typeof action, label).toBe("string");
          expect(action, label).not.toBe("*");
          expect(String(action).endsWith(":*"), `${label}: ${String(action)}`).toBe(false);
        }
        for (const target of branches(statement.Resource)) {
          expect(target, label).not.toBe("*");
          if (isObject(target) && "Fn::Sub" in target) {
            const sub = target["Fn::Sub"];
            expect(Array.isArray(sub) ? sub[0] : sub, label).not.toBe("*");
          }
        }
      }
    });

    it("the upload role: objects under the two prefixes, deletes only staged ones", () => {
      const upload = allowed(template, "UploadFunctionRole");
      const grant = (action: string) => upload.filter((s) => s.actions.includes(action));
      const objects = stringsIn(grant("s3:PutObject").flatMap((s) => s.resources));
      expect(objects).toContain(`${cf("Bucket")}/${cf("KeyPrefix")}*`);
      expect(objects).toContain(`${cf("Bucket")}/${cf("StagingPrefix")}*`);
      for (const action of ["s3:GetObject", "s3:AbortMultipartUpload"]) {
        expect(stringsIn(grant(action).flatMap((s) => s.resources))).toBe(objects);
      }
      const deletes = grant("s3:DeleteObject").flatMap((s) => s.resources);
      expect(stringsIn(deletes)).toContain(`${cf("StagingPrefix")}*`);
      expect(stringsIn(deletes)).not.toContain(`${cf("KeyPrefix")}`);
      const [list] = grant("s3:ListBucket");
      expect(stringsIn(list?.resources)).toContain(
        `arn:${cf("AWS::Partition")}:s3:::${cf("Bucket")}`,
      );
      // Without ListBucket on the key prefix a HeadObject of a missing destination is a 403.
      expect(list?.condition).toEqual({
        StringLike: {
          "s3:prefix": [
            { "Fn::Sub": `${cf("StagingPrefix")}*` },
            { "Fn::Sub": `${cf("KeyPrefix")}*` },
          ],
        },
      });
      expect(grant("dynamodb:PutItem")[0]?.actions.sort()).toEqual([
        "dynamodb:BatchGetItem",
        "dynamodb:BatchWriteItem",
        "dynamodb:GetItem",
        "dynamodb:PutItem",
      ]);
      expect(grant("dynamodb:PutItem")[0]?.resources).toEqual([
        { "Fn::GetAtt": ["SessionsTable", "Arn"] },
      ]);
      expect(grant("logs:PutLogEvents")[0]?.resources).toEqual([
        { "Fn::GetAtt": ["UploadLogGroup", "Arn"] },
      ]);
      expect(grant("kms:GenerateDataKey")[0]?.resources).toEqual([{ Ref: "KmsKeyArn" }]);
      expect(stringsIn(upload)).not.toContain("dynamodb:Scan");
    });

    it("the cleanup role: abort, list and delete staged objects, scan the table, read its stream", () => {
      const cleanup = allowed(template, "CleanupFunctionRole");
      const grant = (action: string) => cleanup.filter((s) => s.actions.includes(action));
      expect(grant("s3:PutObject")).toEqual([]);
      expect(grant("s3:GetObject")).toEqual([]);
      expect(stringsIn(grant("s3:AbortMultipartUpload")[0]?.resources)).toContain(
        `${cf("Bucket")}/${cf("KeyPrefix")}*`,
      );
      expect(stringsIn(grant("s3:DeleteObject")[0]?.resources)).toContain(
        `${cf("Bucket")}/${cf("StagingPrefix")}*`,
      );
      expect(grant("s3:ListBucket")[0]?.condition).toEqual({
        StringLike: { "s3:prefix": { "Fn::Sub": `${cf("StagingPrefix")}*` } },
      });
      expect(grant("dynamodb:Scan")[0]?.actions.sort()).toEqual([
        "dynamodb:BatchWriteItem",
        "dynamodb:GetItem",
        "dynamodb:Scan",
      ]);
      const stream = grant("dynamodb:GetRecords")[0];
      expect(stream?.actions.sort()).toEqual([
        "dynamodb:DescribeStream",
        "dynamodb:GetRecords",
        "dynamodb:GetShardIterator",
        "dynamodb:ListStreams",
      ]);
      expect(stream?.resources).toEqual([{ "Fn::GetAtt": ["SessionsTable", "StreamArn"] }]);
      expect(grant("logs:PutLogEvents")[0]?.resources).toEqual([
        { "Fn::GetAtt": ["CleanupLogGroup", "Arn"] },
      ]);
    });
  });

  describe("parameters and conditions", () => {
    it("each variant is a condition on a parameter whose default is the --param value", () => {
      expect(template.Conditions).toEqual({
        UseAlb: { "Fn::Equals": [{ Ref: "FrontDoor" }, "alb"] },
        UseHttpApi: { "Fn::Equals": [{ Ref: "FrontDoor" }, "httpapi"] },
        UseHttps: { "Fn::Equals": [{ Ref: "ListenerProtocol" }, "HTTPS"] },
        CreateVpc: {
          "Fn::And": [{ Condition: "UseAlb" }, { "Fn::Equals": [{ Ref: "VpcId" }, ""] }],
        },
        CreateBucket: { "Fn::Equals": [{ Ref: "ExistingBucket" }, ""] },
        UseKms: { "Fn::Not": [{ "Fn::Equals": [{ Ref: "KmsKeyArn" }, ""] }] },
      });
      expect(alternative.Conditions).toEqual(template.Conditions);
      const defaults = (t: Template) =>
        Object.fromEntries(Object.entries(t.Parameters).map(([k, v]) => [k, v.Default]));
      expect(defaults(template)).toMatchObject({
        FrontDoor: "alb",
        ListenerProtocol: "HTTPS",
        CertificateArn: "",
        VpcId: "",
        ExistingBucket: "",
        KmsKeyArn: "",
        KeyPrefix: "",
      });
      expect(defaults(alternative)).toMatchObject({
        FrontDoor: "httpapi",
        ListenerProtocol: "HTTP",
        ExistingBucket: "my-existing-bucket",
        KmsKeyArn: "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
        KeyPrefix: "uploads/",
      });
      expect(template.Parameters.FrontDoor?.AllowedValues).toEqual(["alb", "httpapi"]);
    });

    it("ALB resources exist only with UseAlb, HTTP API resources only with UseHttpApi", () => {
      for (const t of [template, alternative]) {
        for (const [id, resource] of Object.entries(t.Resources)) {
          if (resource.Type.startsWith("AWS::ElasticLoadBalancingV2::")) {
            expect(resource.Condition, id).toBe("UseAlb");
          }
          if (resource.Type.startsWith("AWS::ApiGatewayV2::")) {
            expect(resource.Condition, id).toBe("UseHttpApi");
          }
        }
        expect(t.Resources.LoadBalancerSecurityGroup?.Condition).toBe("UseAlb");
        expect(t.Resources.UploadFunctionAlbPermission?.Condition).toBe("UseAlb");
        expect(t.Resources.UploadFunctionHttpApiPermission?.Condition).toBe("UseHttpApi");
      }
    });

    it("the HTTP API sends every request to the function, payload 2.0, auto-deployed", () => {
      const r = alternative.Resources;
      expect(r.HttpApi?.Properties.ProtocolType).toBe("HTTP");
      expect(r.HttpApiIntegration?.Properties).toMatchObject({
        IntegrationType: "AWS_PROXY",
        IntegrationUri: { "Fn::GetAtt": ["UploadLambdaFunction", "Arn"] },
        PayloadFormatVersion: "2.0",
      });
      expect(r.HttpApiDefaultRoute?.Properties.RouteKey).toBe("$default");
      expect(r.HttpApiDefaultStage?.Properties).toMatchObject({
        StageName: "$default",
        AutoDeploy: true,
      });
      expect(r.UploadFunctionHttpApiPermission?.Properties.Principal).toBe(
        "apigateway.amazonaws.com",
      );
    });

    it("outputs the load balancer's DNS name or the API's URL, the bucket and the table", () => {
      expect(template.Outputs.LoadBalancerDnsName).toEqual(
        expect.objectContaining({
          Condition: "UseAlb",
          Value: { "Fn::GetAtt": ["LoadBalancer", "DNSName"] },
        }),
      );
      expect(template.Outputs.HttpApiUrl).toEqual(
        expect.objectContaining({
          Condition: "UseHttpApi",
          Value: { "Fn::GetAtt": ["HttpApi", "ApiEndpoint"] },
        }),
      );
      expect(template.Outputs.BucketName?.Value).toEqual({
        "Fn::If": ["CreateBucket", { Ref: "UploadBucket" }, { Ref: "ExistingBucket" }],
      });
      expect(template.Outputs.SessionsTableName?.Value).toEqual({ Ref: "SessionsTable" });
    });

    it("an unknown front door stops packaging with a message naming the check", () => {
      const out = join(scratch, "bogus");
      let message = "";
      try {
        packageWith({ frontDoor: "cloudfront" }, out);
      } catch (error) {
        const e = error as { stdout?: string; stderr?: string };
        message = `${e.stdout ?? ""}${e.stderr ?? ""}`;
      }
      expect(message).toContain("frontDoor_must_be_alb_or_httpapi");
      expect(existsSync(join(out, TEMPLATE))).toBe(false);
    }, 60_000);
  });
});
