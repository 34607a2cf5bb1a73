import { readFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { SWEEP_POSITION } from "../../functions/adapters/dynamodb/session-item.ts";
import { packaged, packagedDir, packagedTemplate } from "../support/packaging.ts";
import {
  ALTERNATIVE_PARAMS,
  asArray,
  CERTIFICATE,
  DEFAULT_PARAMS,
  type Deployment,
  deploy,
  deployedStatements,
  HARDENED_PARAMS,
  isObject,
  type Json,
  type JsonObject,
  type Resource,
  stringsIn,
  type Template,
} from "../support/template.ts";

/**
 * The CloudFormation template `npm run package` writes from serverless.yml and infra/*.yml,
 * checked offline: the front door's rules, the storage settings, the event sources, that no
 * IAM policy grants a wildcard action or the "*" resource, and what a deployment with the
 * template's own parameter values would create (a small evaluator of conditions and intrinsic
 * functions, below), so that a choice such as the auth mode is checked for its effect.
 */

/** What a failed packaging run printed (it must fail and write no template). */
function packagingFailure(params: Record<string, string>) {
  const result = packaged(params);
  return {
    message: result.dir === undefined ? result.output : undefined,
    wroteTemplate: result.dir !== undefined,
  };
}

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

/** A CloudFormation Fn::Sub placeholder: cf("Bucket") is "${Bucket}". */
const cf = (name: string) => `\${${name}}`;

/** The resources a deployed role may apply an action to (each statement's Resource list). */
function deployedGrants(stack: Deployment, roleId: string, action: string) {
  return deployedStatements(stack, roleId)
    .filter((statement) => statement.Effect === "Allow")
    .filter((statement) => asArray(statement.Action).includes(action))
    .flatMap((statement) => asArray(statement.Resource).map(String));
}

/** Whether an IAM pattern (`*` any run of characters, `?` one character) matches a value. */
function iamMatches(pattern: string, value: string) {
  const body = [...pattern]
    .map((char) =>
      char === "*" ? ".*" : char === "?" ? "." : char.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"),
    )
    .join("");
  return new RegExp(`^${body}$`).test(value);
}

/** A function's environment variables. */
const environment = (fn: Resource | undefined): JsonObject =>
  (fn?.Properties.Environment as { Variables?: JsonObject } | undefined)?.Variables ?? {};

/** A deployed function's ARN in the evaluator's account and Region. */
const functionArn = (name: string) => `arn:aws:lambda:us-east-1:123456789012:function:${name}`;

/** What a deployed alarm watches: each metric it reads (one, or those of its metric math). */
function alarmMetrics(alarm: Resource | undefined) {
  const props = alarm?.Properties ?? {};
  const single = props.MetricName === undefined ? [] : [props];
  const stats = asArray(props.Metrics)
    .filter(isObject)
    .map((metric) => metric.MetricStat)
    .filter(isObject);
  return [
    ...single.map((p) => ({
      namespace: p.Namespace,
      name: p.MetricName,
      dimensions: p.Dimensions,
      stat: p.Statistic,
      period: p.Period,
    })),
    ...stats.map((stat) => {
      const metric = isObject(stat.Metric) ? stat.Metric : {};
      return {
        namespace: metric.Namespace,
        name: metric.MetricName,
        dimensions: metric.Dimensions,
        stat: stat.Stat,
        period: stat.Period,
      };
    }),
  ];
}

/** The metric math expression an alarm alarms on, if any. */
const alarmExpression = (alarm: Resource | undefined) =>
  asArray(alarm?.Properties.Metrics)
    .filter(isObject)
    .find((metric) => metric.ReturnData === true)?.Expression;

interface DashboardWidget {
  type: string;
  properties: {
    title?: string;
    region?: string;
    metrics?: (string | Record<string, unknown>)[][];
    alarms?: string[];
  };
}

/**
 * A deployed dashboard's metric lines: [namespace, name, dimension name, value, ..., options]
 * as { namespace, name, dimensions, options, widget }.
 */
function dashboardMetrics(widgets: DashboardWidget[]) {
  return widgets.flatMap((widget) =>
    (widget.properties.metrics ?? [])
      .filter((line) => typeof line[0] === "string")
      .map((line) => {
        const last = line[line.length - 1];
        const options = typeof last === "object" ? last : {};
        const strings = line.filter((item): item is string => typeof item === "string");
        const [namespace, name, ...rest] = strings;
        const dimensions: Record<string, string> = {};
        for (let i = 0; i + 1 < rest.length; i += 2)
          dimensions[String(rest[i])] = String(rest[i + 1]);
        return { namespace, name, dimensions, options, widget: widget.properties.title };
      }),
  );
}

describe("the packaged CloudFormation template (serverless.yml + infra/*.yml)", () => {
  let template: Template;
  let alternative: Template;
  let hardened: Template;
  let zips: Record<string, Buffer>;

  beforeAll(() => {
    template = packagedTemplate(DEFAULT_PARAMS);
    const packagedDefault = packagedDir(DEFAULT_PARAMS);
    zips = {
      upload: readFileSync(join(packagedDefault, "upload.zip")),
      cleanup: readFileSync(join(packagedDefault, "cleanup.zip")),
    };
    alternative = packagedTemplate(ALTERNATIVE_PARAMS);
    hardened = packagedTemplate(HARDENED_PARAMS);
  }, 240_000);

  describe("front door: ALB", () => {
    it("forwards BITS_POST, and POST with X-Http-Method-Override: BITS_POST, to the function", () => {
      const rules = ofType(template, "AWS::ElasticLoadBalancingV2::ListenerRule").map(
        ([, rule]) => rule.Properties,
      );
      expect(rules).toHaveLength(3);
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

    it("forwards GET and HEAD of <replyPath>/* (upload-reply downloads) to the function", () => {
      const rule = template.Resources.ReplyDownloadRule;
      expect(rule?.Condition).toBe("UseAlb");
      expect(rule?.Properties).toEqual({
        ListenerArn: { Ref: "Listener" },
        Priority: 3,
        Conditions: [
          { Field: "http-request-method", HttpRequestMethodConfig: { Values: ["GET", "HEAD"] } },
          {
            Field: "path-pattern",
            PathPatternConfig: { Values: [{ "Fn::Sub": `${cf("ReplyPath")}/*` }] },
          },
        ],
        Actions: [{ Type: "forward", TargetGroupArn: { Ref: "UploadTargetGroup" } }],
      });
      const deployed = deploy(template).resources.ReplyDownloadRule?.Properties;
      expect(stringsIn(deployed?.Conditions)).toContain('"Values":["/.bits-replies/*"]');
      expect(deploy(alternative).resources.ReplyDownloadRule).toBeUndefined();
      // The function and the rule read the same parameter.
      expect(environment(template.Resources.UploadLambdaFunction).BITS_REPLY_PATH).toEqual({
        Ref: "ReplyPath",
      });
      const pattern = new RegExp(`^(?:${template.Parameters.ReplyPath?.AllowedPattern})$`);
      for (const good of ["/.bits-replies", "/a/b~c"]) expect(good).toMatch(pattern);
      for (const bad of ["", "/", ".bits-replies", "/.bits-replies/", "/a*", "/a//b"]) {
        expect(bad).not.toMatch(pattern);
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
      expect(["NEW_AND_OLD_IMAGES"]).toContain(
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
          Prefix: { "Fn::Sub": `${cf("StagingPrefix")}/` },
          ExpirationInDays: { Ref: "LifecycleDays" },
        }),
      );
      expect(template.Parameters.LifecycleDays?.Default).toBe(15);
      expect(template.Parameters.StagingPrefix?.Default).toBe(".bits-staging");
      const deployed = deploy(template).resources.UploadBucket?.Properties.LifecycleConfiguration;
      expect(stringsIn(deployed)).toContain('"Prefix":".bits-staging/"');
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

    it("the stream function puts completion events on exactly the named bus, and nothing else does", () => {
      const puts = (role: string) =>
        allowed(template, role).filter((s) => stringsIn(s.actions).includes("events:"));
      expect(puts("UploadFunctionRole")).toEqual([]);
      const [grant, ...more] = puts("CleanupFunctionRole");
      expect(more).toEqual([]);
      expect(grant?.actions).toEqual(["events:PutEvents"]);
      expect(grant?.resources).toEqual([
        {
          "Fn::Sub": `arn:${cf("AWS::Partition")}:events:${cf("AWS::Region")}:${cf("AWS::AccountId")}:event-bus/default`,
        },
      ]);
      const cleanup = template.Resources.CleanupLambdaFunction?.Properties as JsonObject;
      const env = (cleanup.Environment as JsonObject).Variables as JsonObject;
      expect(env).toMatchObject({
        BITS_EVENTS: "eventbridge",
        BITS_EVENT_BUS: "default",
        BITS_EVENT_SOURCE: "bits.upload",
      });
    });

    it("a named bus is the only one the role may put events on", () => {
      const [grant] = allowed(alternative, "CleanupFunctionRole").filter((s) =>
        stringsIn(s.actions).includes("events:"),
      );
      expect(stringsIn(grant?.resources)).toMatch(/event-bus\/bits-uploads-bus"/);
      expect(stringsIn(grant?.resources)).not.toContain("*");
    });

    it("the cleanup function hears session endings and TTL removals from the table's stream", () => {
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
      expect(filters.map((filter) => JSON.parse(filter.Pattern))).toEqual([
        { eventName: ["REMOVE"], dynamodb: { Keys: { pk: { S: [{ prefix: "S#" }] } } } },
        // Only the write that gives a session its outcome: fragments never invoke it.
        {
          eventName: ["INSERT", "MODIFY"],
          dynamodb: {
            Keys: { pk: { S: [{ prefix: "S#" }] } },
            NewImage: { out: { S: [{ exists: true }] } },
            OldImage: { out: { S: [{ exists: false }] } },
          },
        },
      ]);
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
      ["hardened (all auth modes, secrets, KMS for secrets)", () => hardened],
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
      expect(objects).toContain(`${cf("Bucket")}/${cf("KeyPrefix")}/*`);
      expect(objects).toContain(`${cf("Bucket")}/${cf("StagingPrefix")}/*`);
      for (const action of ["s3:GetObject", "s3:AbortMultipartUpload"]) {
        expect(stringsIn(grant(action).flatMap((s) => s.resources))).toBe(objects);
      }
      const deletes = grant("s3:DeleteObject").flatMap((s) => s.resources);
      expect(stringsIn(deletes)).toContain(`${cf("StagingPrefix")}/*`);
      expect(stringsIn(deletes)).not.toContain(`${cf("KeyPrefix")}`);
      const [list] = grant("s3:ListBucket");
      expect(stringsIn(list?.resources)).toContain(
        `arn:${cf("AWS::Partition")}:s3:::${cf("Bucket")}`,
      );
      // Without ListBucket on the key prefix a HeadObject of a missing destination is a 403.
      expect(list?.condition).toEqual({
        StringLike: {
          "s3:prefix": [
            { "Fn::Sub": `${cf("StagingPrefix")}/*` },
            { "Fn::Sub": `${cf("KeyPrefix")}/*` },
          ],
        },
      });
      // TransactWriteItems is authorized per contained action: Put, Update, Delete, checks.
      expect(grant("dynamodb:PutItem")[0]?.actions.sort()).toEqual([
        "dynamodb:BatchGetItem",
        "dynamodb:BatchWriteItem",
        "dynamodb:ConditionCheckItem",
        "dynamodb:DeleteItem",
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
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
      // HEAD of a destination only (did a timed-out commit land?), never a staged object.
      expect(grant("s3:GetObject").map((s) => s.actions)).toEqual([["s3:GetObject"]]);
      expect(stringsIn(grant("s3:GetObject")[0]?.resources)).toContain(
        `${cf("Bucket")}/${cf("KeyPrefix")}/*`,
      );
      expect(stringsIn(grant("s3:GetObject")[0]?.resources)).not.toContain("StagingPrefix");
      expect(stringsIn(grant("s3:AbortMultipartUpload")[0]?.resources)).toContain(
        `${cf("Bucket")}/${cf("KeyPrefix")}/*`,
      );
      expect(stringsIn(grant("s3:DeleteObject")[0]?.resources)).toContain(
        `${cf("Bucket")}/${cf("StagingPrefix")}/*`,
      );
      // The staging prefix, and destinations' keys: HEAD of a missing one answers 404, not 403.
      expect(grant("s3:ListBucket")[0]?.condition).toEqual({
        StringLike: {
          "s3:prefix": [
            { "Fn::Sub": `${cf("StagingPrefix")}/*` },
            { "Fn::Sub": `${cf("KeyPrefix")}/*` },
          ],
        },
      });
      // Releasing an expired session's slots: a Put of a once-only marker, counter updates.
      expect(grant("dynamodb:Scan")[0]?.actions.sort()).toEqual([
        "dynamodb:BatchWriteItem",
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:Scan",
        "dynamodb:UpdateItem",
      ]);
      // Deleting: only the sweep's saved position (docs/cleanup.md).
      expect(grant("dynamodb:DeleteItem")).toEqual([
        {
          actions: ["dynamodb:DeleteItem"],
          resources: [{ "Fn::GetAtt": ["SessionsTable", "Arn"] }],
          condition: {
            "ForAllValues:StringEquals": { "dynamodb:LeadingKeys": [SWEEP_POSITION] },
          },
        },
      ]);
      expect(stringsIn(cleanup)).not.toContain("ssm:");
      expect(stringsIn(cleanup)).not.toContain("secretsmanager:");
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

  describe("authentication: chosen, never defaulted", () => {
    it("packaging without auth stops with a message naming the check", () => {
      const failure = packagingFailure({});
      expect(failure.message).toContain(
        "auth_must_be_chosen_anonymous_or_from_basic_signed-url_client-cert",
      );
      expect(failure.wroteTemplate).toBe(false);
    }, 60_000);

    it("anonymous only when named: the Auth parameter lists it, no default chooses it", () => {
      expect(template.Parameters.Auth?.AllowedValues).toEqual([
        "anonymous",
        "basic",
        "signed-url",
        "client-cert",
        "basic,signed-url",
        "basic,client-cert",
        "signed-url,client-cert",
        "basic,signed-url,client-cert",
      ]);
      expect(alternative.Parameters.Auth?.Default).toBe("anonymous");
      expect(template.Parameters.Auth?.Default).toBe("basic");
    });

    it("basic auth over an HTTP listener stops packaging", () => {
      const failure = packagingFailure({ ...DEFAULT_PARAMS, listenerProtocol: "HTTP" });
      expect(failure.message).toContain("basic_auth_needs_an_HTTPS_listener");
      expect(failure.wroteTemplate).toBe(false);
    }, 60_000);

    it("client-cert auth without the ALB or a trust store stops packaging", () => {
      const failure = packagingFailure({ auth: "signed-url,client-cert", frontDoor: "httpapi" });
      for (const check of [
        "client-cert_auth_needs_frontDoor_alb",
        "client-cert_auth_needs_trustStoreBucket",
        "client-cert_auth_needs_trustStoreKey",
        "signed-url_auth_needs_urlKeysParameter",
      ]) {
        expect(failure.message).toContain(check);
      }
      expect(failure.wroteTemplate).toBe(false);
    }, 60_000);

    it("the same combinations, set through the stack's parameters, fail the deployment", () => {
      // A guard that is not created but referred to: CloudFormation refuses the stack.
      expect(deploy(template, { ListenerProtocol: "HTTP" }).dangling).toEqual([
        "BasicAuthNeedsTls",
      ]);
      expect(deploy(template, { Auth: "basic,client-cert" }).dangling).toEqual([
        "ClientCertAuthNeedsAlbHttpsAndTrustStore",
      ]);
      expect(deploy(hardened, { TrustStoreKey: "" }).dangling).toEqual([
        "ClientCertAuthNeedsAlbHttpsAndTrustStore",
      ]);
      expect(deploy(hardened, { FrontDoor: "httpapi" }).dangling).toEqual([
        "ClientCertAuthNeedsAlbHttpsAndTrustStore",
      ]);
      expect(deploy(hardened, { ListenerProtocol: "HTTP" }).dangling).toEqual([
        "BasicAuthNeedsTls",
        "ClientCertAuthNeedsAlbHttpsAndTrustStore",
        "SignedUrlAuthNeedsTlsOrAllowPlainHttp",
      ]);
      // The HTTP API is always HTTPS.
      expect(deploy(template, { FrontDoor: "httpapi", ListenerProtocol: "HTTP" }).dangling).toEqual(
        [],
      );
    });

    it("signed URLs over an HTTP listener: packaging stops unless allowPlainHttp=true", () => {
      const inClear = {
        auth: "signed-url",
        urlKeysParameter: "/bits/url-keys",
        listenerProtocol: "HTTP",
      };
      const refused = packagingFailure(inClear);
      expect(refused.message).toContain(
        "signed-url_auth_over_plain_HTTP_needs_allowPlainHttp_true",
      );
      expect(refused.wroteTemplate).toBe(false);
      // The opt-in, by name; still never for passwords.
      expect(packaged({ ...inClear, allowPlainHttp: "true" }).dir).toBeDefined();
      const basic = packagingFailure({
        ...DEFAULT_PARAMS,
        ...inClear,
        auth: "basic,signed-url",
        allowPlainHttp: "true",
      });
      expect(basic.message).toContain("basic_auth_needs_an_HTTPS_listener");
      // Through the stack's parameters: the deployment fails, unless AllowPlainHttp is "true".
      const viaParameters = {
        Auth: "signed-url",
        UrlKeysParameter: "/k",
        ListenerProtocol: "HTTP",
      };
      expect(deploy(template, viaParameters).dangling).toEqual([
        "SignedUrlAuthNeedsTlsOrAllowPlainHttp",
      ]);
      expect(deploy(template, { ...viaParameters, AllowPlainHttp: "true" }).dangling).toEqual([]);
      expect(deploy(template, { ...viaParameters, FrontDoor: "httpapi" }).dangling).toEqual([]);
      expect(template.Parameters.AllowPlainHttp?.Default).toBe("false");
    }, 60_000);

    it("an HTTPS listener without certificateArn stops packaging, with that one message", () => {
      const failure = packagingFailure({ auth: "anonymous" });
      expect(failure.message).toContain("listenerProtocol_HTTPS_needs_certificateArn");
      expect(failure.message?.match(/Cannot resolve variable/g)).toHaveLength(1);
      expect(failure.wroteTemplate).toBe(false);
      // Neither the HTTP API nor an HTTP listener needs one.
      expect(packaged({ auth: "anonymous", frontDoor: "httpapi" }).dir).toBeDefined();
    }, 60_000);

    it("the functions get the auth settings and caps in their environment", () => {
      for (const id of ["UploadLambdaFunction", "CleanupLambdaFunction"]) {
        const variables = deploy(hardened).resources[id]?.Properties.Environment as {
          Variables: JsonObject;
        };
        expect(variables.Variables, id).toMatchObject({
          BITS_AUTH: "basic,signed-url,client-cert",
          BITS_AUTH_REALM: "BITS uploads",
          BITS_HTPASSWD_PARAMETER: "bits-htpasswd",
          BITS_URL_KEYS_PARAMETER: "/aws/reference/secretsmanager/bits/url-keys",
          BITS_SECRETS_REFRESH: "300",
          BITS_PRINCIPAL_PREFIX: "{principal}",
          BITS_OVERWRITE_PRINCIPALS: "deployer,backup",
          BITS_MAX_SESSIONS_PER_PRINCIPAL: "5",
          BITS_MAX_SESSIONS: "10000",
          BITS_MAX_FRAGMENTS_PER_MIB: "512",
          BITS_MAX_UPLOAD_SIZE: "10GiB",
          BITS_KEY_PREFIX: "uploads",
          BITS_STAGING_PREFIX: ".bits-staging",
        });
      }
      const plain = template.Resources.UploadLambdaFunction?.Properties.Environment as {
        Variables: JsonObject;
      };
      expect(plain.Variables).toMatchObject({
        BITS_AUTH: { Ref: "Auth" },
        BITS_HTPASSWD_PARAMETER: { Ref: "HtpasswdParameter" },
        BITS_URL_KEYS_PARAMETER: { Ref: "UrlKeysParameter" },
        BITS_PRINCIPAL_PREFIX: "",
        BITS_OVERWRITE_PRINCIPALS: "",
        BITS_MAX_SESSIONS_PER_PRINCIPAL: "50",
      });
    });
  });

  describe("secrets: the upload role reads exactly the named ones", () => {
    const ssm = (name: string) => `arn:aws:ssm:us-east-1:123456789012:parameter${name}`;

    it("an SSM parameter named with a leading /", () => {
      const stack = deploy(template);
      expect(deployedGrants(stack, "UploadFunctionRole", "ssm:GetParameter")).toEqual([
        ssm("/bits/htpasswd"),
      ]);
      expect(deployedGrants(stack, "UploadFunctionRole", "secretsmanager:GetSecretValue")).toEqual(
        [],
      );
      expect(stringsIn(deployedStatements(stack, "UploadFunctionRole"))).not.toContain(
        "DecryptSecrets",
      );
    });

    it("a name without a leading /, a Secrets Manager secret, a customer-managed key", () => {
      const stack = deploy(hardened);
      expect(deployedGrants(stack, "UploadFunctionRole", "ssm:GetParameter")).toEqual([
        ssm("/bits-htpasswd"),
        ssm("/aws/reference/secretsmanager/bits/url-keys"),
      ]);
      const secrets = deployedGrants(stack, "UploadFunctionRole", "secretsmanager:GetSecretValue");
      expect(secrets).toEqual([
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:bits/url-keys-??????",
      ]);
      const [secret = ""] = secrets;
      expect(
        iamMatches(
          secret,
          "arn:aws:secretsmanager:us-east-1:123456789012:secret:bits/url-keys-AbC123",
        ),
      ).toBe(true);
      expect(
        iamMatches(
          secret,
          "arn:aws:secretsmanager:us-east-1:123456789012:secret:bits/url-keys-2-AbC123",
        ),
      ).toBe(false);
      const decrypt = deployedStatements(stack, "UploadFunctionRole").find(
        (statement) => statement.Sid === "DecryptSecrets",
      );
      expect(decrypt).toEqual({
        Sid: "DecryptSecrets",
        Effect: "Allow",
        Action: "kms:Decrypt",
        Resource: HARDENED_PARAMS.secretsKmsKeyArn,
        Condition: {
          StringEquals: {
            "kms:ViaService": [
              "ssm.us-east-1.amazonaws.com",
              "secretsmanager.us-east-1.amazonaws.com",
            ],
          },
        },
      });
    });

    it("no secrets, no grants; and never for the cleanup role", () => {
      const stack = deploy(alternative);
      for (const action of ["ssm:GetParameter", "secretsmanager:GetSecretValue", "kms:Decrypt"]) {
        expect(deployedGrants(stack, "UploadFunctionRole", action), action).toEqual(
          action === "kms:Decrypt" ? [alternative.Parameters.KmsKeyArn?.Default] : [],
        );
        expect(deployedGrants(deploy(hardened), "CleanupFunctionRole", action), action).toEqual([]);
      }
    });
  });

  describe("client certificates", () => {
    it("only with client-cert: a trust store and the listener verifying certificates", () => {
      const stack = deploy(hardened);
      expect(stack.resources.TrustStore?.Properties).toMatchObject({
        CaCertificatesBundleS3Bucket: "my-ca-bucket",
        CaCertificatesBundleS3Key: "bits/ca-bundle.pem",
      });
      expect(stack.resources.Listener?.Properties).toMatchObject({
        Protocol: "HTTPS",
        MutualAuthentication: {
          Mode: "verify",
          TrustStoreArn: "<TrustStore>",
          IgnoreClientCertificateExpiry: false,
        },
      });
    });

    it("without client-cert: no trust store, mutual authentication off", () => {
      for (const stack of [deploy(template), deploy(hardened, { Auth: "basic,signed-url" })]) {
        expect(stack.resources.TrustStore).toBeUndefined();
        expect(stack.resources.Listener?.Properties.MutualAuthentication).toEqual({ Mode: "off" });
      }
      const http = deploy(template, { Auth: "signed-url", ListenerProtocol: "HTTP" });
      expect(http.resources.Listener?.Properties.MutualAuthentication).toBeUndefined();
    });
  });

  describe("caps on what a flood of requests can cost", () => {
    it("the upload function reserves 50 concurrent executions, none with `none`", () => {
      expect(template.Resources.UploadLambdaFunction?.Properties.ReservedConcurrentExecutions).toBe(
        50,
      );
      expect(hardened.Resources.UploadLambdaFunction?.Properties).not.toHaveProperty(
        "ReservedConcurrentExecutions",
      );
      expect(hardened.Resources.UploadLambdaFunction?.Properties.Timeout).toBe(60);
    });

    it("the table's on-demand throughput is capped; -1 leaves a cap out", () => {
      expect(deploy(template).resources.SessionsTable?.Properties.OnDemandThroughput).toEqual({
        MaxReadRequestUnits: "4000",
        MaxWriteRequestUnits: "4000",
      });
      expect(deploy(hardened).resources.SessionsTable?.Properties.OnDemandThroughput).toEqual({
        MaxWriteRequestUnits: "4000",
      });
      const uncapped = deploy(template, { TableMaxReadUnits: "-1", TableMaxWriteUnits: "-1" });
      expect(uncapped.resources.SessionsTable?.Properties).not.toHaveProperty("OnDemandThroughput");
    });

    it("with wafRateLimit: a web ACL that blocks a client IP above the rate, on the ALB", () => {
      const stack = deploy(hardened);
      const acl = stack.resources.WebAcl?.Properties;
      expect(acl).toMatchObject({ Scope: "REGIONAL", DefaultAction: { Allow: {} } });
      const rules = asArray(acl?.Rules);
      expect(rules).toHaveLength(1);
      expect(rules[0]).toMatchObject({
        Action: { Block: {} },
        Statement: {
          RateBasedStatement: { Limit: "2000", AggregateKeyType: "IP", EvaluationWindowSec: 300 },
        },
      });
      expect(stack.resources.WebAclAssociation?.Properties).toEqual({
        ResourceArn: "<LoadBalancer>",
        WebACLArn: "<WebAcl.Arn>",
      });
    });

    it("without wafRateLimit, or without the ALB, no web ACL", () => {
      for (const stack of [
        deploy(template),
        deploy(alternative),
        deploy(hardened, { FrontDoor: "httpapi", Auth: "signed-url" }),
      ]) {
        expect(stack.resources.WebAcl).toBeUndefined();
        expect(stack.resources.WebAclAssociation).toBeUndefined();
      }
      expect(template.Resources.WebAclAssociation?.Condition).toBe("UseWaf");
    });
  });

  describe("audit: the load balancer's access logs", () => {
    const attributes = (stack: Deployment) =>
      Object.fromEntries(
        asArray(stack.resources.LoadBalancer?.Properties.LoadBalancerAttributes)
          .filter(isObject)
          .map((attribute) => [String(attribute.Key), attribute.Value]),
      );

    it("off by default", () => {
      const found = attributes(deploy(template));
      expect(found["access_logs.s3.enabled"]).toBe("false");
      expect(found).not.toHaveProperty("access_logs.s3.bucket");
    });

    it("into the operator's bucket under the prefix when accessLogBucket is given", () => {
      expect(attributes(deploy(hardened))).toMatchObject({
        "access_logs.s3.enabled": "true",
        "access_logs.s3.bucket": "my-log-bucket",
        "access_logs.s3.prefix": "bits-alb",
        "routing.http.drop_invalid_header_fields.enabled": "true",
        "idle_timeout.timeout_seconds": "60",
      });
    });
  });

  describe("S3 access stays inside the prefixes, as folders", () => {
    const OBJECT_ACTIONS = ["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"];

    it.each([
      ["default", () => deploy(template), "<UploadBucket>", "uploads"],
      ["alternative", () => deploy(alternative), "my-existing-bucket", "incoming/bits"],
    ])("%s: every object resource is <bucket>/<non-empty prefix>/*", (_, get, bucket, prefix) => {
      const stack = get();
      for (const role of ["UploadFunctionRole", "CleanupFunctionRole"]) {
        const resources = [...OBJECT_ACTIONS, "s3:DeleteObject"].flatMap((action) =>
          deployedGrants(stack, role, action),
        );
        expect(resources.length, role).toBeGreaterThan(0);
        for (const resource of resources) {
          expect(resource, role).toMatch(/^arn:aws:s3:::[^/]+\/[^/*]+(\/[^/*]+)*\/\*$/);
          expect(resource, role).not.toBe(`arn:aws:s3:::${bucket}/*`);
        }
      }
      const uploads = deployedGrants(stack, "UploadFunctionRole", "s3:PutObject");
      expect(uploads).toEqual([
        `arn:aws:s3:::${bucket}/${prefix}/*`,
        `arn:aws:s3:::${bucket}/.bits-staging/*`,
      ]);
    });

    it("the prefix uploads does not reach uploads-private/x, nor .bits-staging .bits-staging2/x", () => {
      const stack = deploy(template);
      const object = (key: string) => `arn:aws:s3:::<UploadBucket>/${key}`;
      const reaches = (role: string, action: string, key: string) =>
        deployedGrants(stack, role, action).some((pattern) => iamMatches(pattern, object(key)));
      expect(reaches("UploadFunctionRole", "s3:PutObject", "uploads/x")).toBe(true);
      expect(reaches("UploadFunctionRole", "s3:PutObject", "uploads/alice/a.bin")).toBe(true);
      expect(reaches("UploadFunctionRole", "s3:PutObject", "uploads-private/x")).toBe(false);
      expect(reaches("UploadFunctionRole", "s3:PutObject", "uploadsx")).toBe(false);
      expect(reaches("UploadFunctionRole", "s3:GetObject", "other/x")).toBe(false);
      expect(reaches("UploadFunctionRole", "s3:DeleteObject", ".bits-staging/s/1")).toBe(true);
      expect(reaches("UploadFunctionRole", "s3:DeleteObject", ".bits-staging2/x")).toBe(false);
      expect(reaches("UploadFunctionRole", "s3:DeleteObject", "uploads/x")).toBe(false);
      expect(reaches("CleanupFunctionRole", "s3:AbortMultipartUpload", "uploads-private/x")).toBe(
        false,
      );
      // ListBucket: only prefixes inside the two folders.
      const prefixes = deployedStatements(stack, "UploadFunctionRole")
        .filter((statement) => statement.Action === "s3:ListBucket")
        .flatMap((statement) =>
          asArray(
            (statement.Condition as { StringLike: { "s3:prefix": Json } }).StringLike["s3:prefix"],
          ).map(String),
        );
      expect(prefixes).toEqual([".bits-staging/*", "uploads/*"]);
      expect(prefixes.some((pattern) => iamMatches(pattern, "uploads-private/"))).toBe(false);
      expect(prefixes.some((pattern) => iamMatches(pattern, "uploads/alice/"))).toBe(true);
    });
  });

  describe("upload-reply jobs", () => {
    const variables = (stack: Deployment) => environment(stack.resources.UploadLambdaFunction);

    it("the functions get the notification settings, with their defaults", () => {
      for (const id of ["UploadLambdaFunction", "CleanupLambdaFunction"]) {
        const env = environment(template.Resources[id]);
        expect(env, id).toMatchObject({
          BITS_NOTIFICATION_TYPE: { Ref: "NotificationType" },
          BITS_NOTIFICATION_URL: { Ref: "NotificationUrl" },
          BITS_NOTIFICATION_PATHS: "",
          BITS_NOTIFICATION_TIMEOUT: { Ref: "NotificationTimeoutSeconds" },
          BITS_MAX_REPLY_SIZE: "64MiB",
          BITS_REPLY_PATH: { Ref: "ReplyPath" },
        });
      }
      expect(variables(deploy(template))).toMatchObject({
        BITS_NOTIFICATION_TYPE: "none",
        BITS_NOTIFICATION_URL: "",
        BITS_NOTIFICATION_PATHS: "",
        BITS_NOTIFICATION_TIMEOUT: "40",
        BITS_MAX_REPLY_SIZE: "64MiB",
        BITS_REPLY_PATH: "/.bits-replies",
      });
      expect(variables(deploy(hardened))).toMatchObject({
        BITS_NOTIFICATION_TYPE: "value",
        BITS_NOTIFICATION_URL: HARDENED_PARAMS.notificationUrl,
        BITS_NOTIFICATION_PATHS: HARDENED_PARAMS.notificationPaths,
        BITS_NOTIFICATION_TIMEOUT: "50",
      });
      expect(JSON.parse(String(variables(deploy(hardened)).BITS_NOTIFICATION_PATHS))).toEqual([
        { path: "/x/", type: "reference", url: "lambda:path-app" },
      ]);
      expect(template.Parameters.NotificationType?.AllowedValues).toEqual([
        "none",
        "reference",
        "value",
      ]);
    });

    it("no lambda: target, no Lambda grant", () => {
      for (const stack of [
        deploy(template),
        deploy(alternative),
        deploy(template, { NotificationType: "value", NotificationUrl: "https://app.example/n" }),
        deploy(template, { NotificationType: "reference", NotificationUrl: "/notify?x=lambda:y" }),
      ]) {
        expect(deployedGrants(stack, "UploadFunctionRole", "lambda:InvokeFunction")).toEqual([]);
        expect(stringsIn(deployedStatements(stack, "UploadFunctionRole"))).not.toContain("lambda:");
      }
    });

    it("lambda:<name>: the upload role may invoke exactly that function", () => {
      const stack = deploy(template, {
        NotificationType: "value",
        NotificationUrl: "lambda:inventory-app",
      });
      const grants = deployedGrants(stack, "UploadFunctionRole", "lambda:InvokeFunction");
      expect(grants).toEqual([functionArn("inventory-app")]);
      expect(grants.some((grant) => grant.includes("*") || grant.includes("?"))).toBe(false);
      expect(deployedGrants(stack, "CleanupFunctionRole", "lambda:InvokeFunction")).toEqual([]);
      const lambda = deployedStatements(stack, "UploadFunctionRole").filter((statement) =>
        stringsIn(statement.Action).includes("lambda:"),
      );
      expect(lambda).toEqual([
        {
          Sid: "InvokeNotificationFunction",
          Effect: "Allow",
          Action: "lambda:InvokeFunction",
          Resource: functionArn("inventory-app"),
        },
      ]);
      expect(stack.dangling).toEqual([]);
    });

    it("lambda:<ARN> as given; the ARNs of notificationFunctionArns for notificationPaths", () => {
      const stack = deploy(hardened);
      expect(deployedGrants(stack, "UploadFunctionRole", "lambda:InvokeFunction")).toEqual([
        functionArn("inventory-app:live"),
        functionArn("path-app"),
        functionArn("other-app:2"),
      ]);
      const only = deploy(template, {
        NotificationFunctionArns: functionArn("path-app"),
      });
      expect(deployedGrants(only, "UploadFunctionRole", "lambda:InvokeFunction")).toEqual([
        functionArn("path-app"),
      ]);
    });

    it("a relative notification URL is refused without publicOrigin, never resolved on Host", () => {
      const relative = { NotificationType: "value", NotificationUrl: "notify.asp" };
      expect(deploy(template, relative).dangling).toEqual([
        "RelativeNotificationUrlNeedsPublicOrigin",
      ]);
      const origin = { ...relative, PublicOrigin: "https://uploads.example.com" };
      expect(deploy(template, origin).dangling).toEqual([]);
      expect(variables(deploy(template, origin)).BITS_PUBLIC_ORIGIN).toBe(origin.PublicOrigin);
      for (const url of ["https://app.example/n", "http://app.example/n", "lambda:app", ""]) {
        const absolute = { NotificationType: "reference", NotificationUrl: url };
        expect(deploy(template, absolute).dangling, url).toEqual([]);
      }
      expect(deploy(template, { NotificationUrl: "notify.asp" }).dangling).toEqual([]);
      const pattern = new RegExp(`^(?:${template.Parameters.PublicOrigin?.AllowedPattern})$`);
      for (const good of ["", "https://uploads.example.com", "http://10.0.0.5:8080"]) {
        expect(good).toMatch(pattern);
      }
      for (const bad of ["uploads.example.com", "https://u.example/bits", "https://u.example/"]) {
        expect(bad).not.toMatch(pattern);
      }
    });

    it("neither parameter can name a wildcard function", () => {
      const url = new RegExp(`^(?:${template.Parameters.NotificationUrl?.AllowedPattern})$`);
      for (const good of [
        "",
        "https://app.example/notify?a=*",
        "notify/here",
        "lambda:inventory-app",
        "lambda:inventory-app:live",
        `lambda:${functionArn("inventory-app")}`,
      ]) {
        expect(good).toMatch(url);
      }
      for (const bad of ["lambda:*", "lambda:inv*", "lambda:inv?", "lambda:", "lambda:a b"]) {
        expect(bad).not.toMatch(url);
      }
      const arns = new RegExp(
        `^(?:${template.Parameters.NotificationFunctionArns?.AllowedPattern})$`,
      );
      for (const good of ["", functionArn("a"), functionArn("a:$LATEST")]) {
        expect(good).toMatch(arns);
      }
      for (const bad of ["*", functionArn("*"), functionArn("a*"), "inventory-app"]) {
        expect(bad).not.toMatch(arns);
      }
    });

    it("presigned URLs and the copy to the destination need no more S3 access", () => {
      const stack = deploy(template);
      const object = (key: string) => `arn:aws:s3:::<UploadBucket>/${key}`;
      const reaches = (action: string, key: string) =>
        deployedGrants(stack, "UploadFunctionRole", action).some((pattern) =>
          iamMatches(pattern, object(key)),
        );
      // The upload the application reads and the reply it writes (presigned GET/PUT), the
      // source (GetObject) and destination (PutObject) of the copy.
      for (const key of [".bits-staging/{session}/request", ".bits-staging/{session}/reply"]) {
        expect(reaches("s3:GetObject", key), key).toBe(true);
        expect(reaches("s3:PutObject", key), key).toBe(true);
      }
      expect(reaches("s3:PutObject", "uploads/alice/file.bin")).toBe(true);
      expect(reaches("s3:AbortMultipartUpload", "uploads/alice/file.bin")).toBe(true);
      expect(deployedGrants(stack, "UploadFunctionRole", "s3:ListMultipartUploadParts")).toEqual(
        [],
      );
    });

    it("the notification ends (at most 50 s) before the function (60 s) and the ALB (60 s)", () => {
      const timeout = template.Parameters.NotificationTimeoutSeconds;
      expect(timeout).toMatchObject({ Type: "Number", Default: "40", MinValue: 1, MaxValue: 50 });
      const functionTimeout = Number(template.Resources.UploadLambdaFunction?.Properties.Timeout);
      const idle = asArray(template.Resources.LoadBalancer?.Properties.LoadBalancerAttributes)
        .filter(isObject)
        .find((attribute) => attribute.Key === "idle_timeout.timeout_seconds")?.Value;
      expect(functionTimeout).toBe(60);
      expect(Number(idle)).toBeGreaterThanOrEqual(functionTimeout);
      // Time for completing the file before and storing the reply after.
      expect(Number(timeout?.MaxValue)).toBeLessThanOrEqual(functionTimeout - 10);
      expect(hardened.Parameters.NotificationTimeoutSeconds?.Default).toBe("50");
    });

    it("a notificationType outside none, reference, value stops packaging", () => {
      const failure = packagingFailure({ ...DEFAULT_PARAMS, notificationType: "url" });
      expect(failure.message).toContain("notificationType_must_be_none_reference_or_value");
      expect(failure.wroteTemplate).toBe(false);
    }, 60_000);
  });

  describe("monitoring: metrics, alarms and a dashboard", () => {
    const ALARMS = [
      "CleanupFailuresAlarm",
      "CleanupFunctionErrorsAlarm",
      "ServerErrorRateAlarm",
      "SessionsTableThrottlesAlarm",
      "UploadFunctionErrorsAlarm",
      "UploadFunctionThrottlesAlarm",
    ];
    const TOPIC = HARDENED_PARAMS.alarmTopicArn;
    const stage = [{ Name: "Stage", Value: "dev" }];
    const dashboard = (stack: Deployment) => {
      const props = stack.resources.Dashboard?.Properties;
      const body = String(props?.DashboardBody);
      return {
        name: props?.DashboardName,
        body,
        widgets: JSON.parse(body).widgets as DashboardWidget[],
      };
    };

    it("the functions get the metrics namespace and the stage", () => {
      for (const id of ["UploadLambdaFunction", "CleanupLambdaFunction"]) {
        expect(environment(template.Resources[id]), id).toMatchObject({
          BITS_METRICS_NAMESPACE: { Ref: "MetricsNamespace" },
          BITS_METRICS_STAGE: "dev",
        });
        expect(environment(deploy(template).resources[id]), id).toMatchObject({
          BITS_METRICS_NAMESPACE: "BitsUploadServer",
          BITS_METRICS_STAGE: "dev",
        });
        expect(environment(deploy(alternative).resources[id]), id).toMatchObject({
          BITS_METRICS_NAMESPACE: "Acme/Bits",
        });
      }
      expect(template.Parameters.MetricsNamespace?.Default).toBe("BitsUploadServer");
      expect(template.Parameters.AlarmTopicArn?.Default).toBe("");
      expect(template.Parameters.ServerErrorRateThreshold).toMatchObject({
        Type: "Number",
        Default: "5",
      });
      expect(hardened.Parameters.AlarmTopicArn?.Default).toBe(TOPIC);
      expect(hardened.Parameters.ServerErrorRateThreshold?.Default).toBe("2");
    });

    it("the alarms always exist, described, quiet without data", () => {
      for (const t of [template, alternative, hardened]) {
        const alarms = ofType(t, "AWS::CloudWatch::Alarm");
        expect(alarms.map(([id]) => id).sort()).toEqual(ALARMS);
        for (const [id, alarm] of alarms) {
          expect(alarm.Condition, id).toBeUndefined();
          expect(stringsIn(alarm.Properties.AlarmDescription).length, id).toBeGreaterThan(40);
          expect(alarm.Properties.TreatMissingData, id).toBe("notBreaching");
          expect(alarm.Properties.ComparisonOperator, id).toBe("GreaterThanThreshold");
        }
      }
    });

    it("5xx rate: 100 * ServerErrors / Requests per 5 minutes above the threshold, 2 of 3", () => {
      const alarm = deploy(template).resources.ServerErrorRateAlarm;
      expect(alarmMetrics(alarm)).toEqual([
        {
          namespace: "BitsUploadServer",
          name: "ServerErrors",
          dimensions: stage,
          stat: "Sum",
          period: 300,
        },
        {
          namespace: "BitsUploadServer",
          name: "Requests",
          dimensions: stage,
          stat: "Sum",
          period: 300,
        },
      ]);
      const ids = asArray(alarm?.Properties.Metrics).filter(isObject);
      expect(ids.map((metric) => metric.Id)).toEqual(["errors", "requests", "rate"]);
      expect(String(alarmExpression(alarm)).replace(/\s+/g, "")).toBe(
        "100*FILL(errors,0)/requests",
      );
      expect(alarm?.Properties).toMatchObject({
        Threshold: "5",
        EvaluationPeriods: 3,
        DatapointsToAlarm: 2,
      });
      expect(String(alarm?.Properties.AlarmDescription)).toContain("5 percent");
      expect(deploy(hardened).resources.ServerErrorRateAlarm?.Properties.Threshold).toBe("2");
      expect(alarmMetrics(deploy(alternative).resources.ServerErrorRateAlarm)[0]?.namespace).toBe(
        "Acme/Bits",
      );
    });

    it("Lambda errors and throttles, cleanup failures, table throttles: any at all", () => {
      const r = deploy(template).resources;
      const fn = (id: string) => [{ Name: "FunctionName", Value: `<${id}>` }];
      const lambda = (name: string, id: string) => ({
        namespace: "AWS/Lambda",
        name,
        dimensions: fn(id),
        stat: "Sum",
        period: 300,
      });
      expect(alarmMetrics(r.UploadFunctionErrorsAlarm)).toEqual([
        lambda("Errors", "UploadLambdaFunction"),
      ]);
      expect(alarmMetrics(r.UploadFunctionThrottlesAlarm)).toEqual([
        lambda("Throttles", "UploadLambdaFunction"),
      ]);
      expect(alarmMetrics(r.CleanupFunctionErrorsAlarm)).toEqual([
        lambda("Errors", "CleanupLambdaFunction"),
      ]);
      expect(alarmMetrics(r.CleanupFailuresAlarm)).toEqual([
        {
          namespace: "BitsUploadServer",
          name: "CleanupFailures",
          dimensions: stage,
          stat: "Sum",
          period: 300,
        },
      ]);
      const table = [{ Name: "TableName", Value: "<SessionsTable>" }];
      expect(alarmMetrics(r.SessionsTableThrottlesAlarm)).toEqual([
        {
          namespace: "AWS/DynamoDB",
          name: "ReadThrottleEvents",
          dimensions: table,
          stat: "Sum",
          period: 300,
        },
        {
          namespace: "AWS/DynamoDB",
          name: "WriteThrottleEvents",
          dimensions: table,
          stat: "Sum",
          period: 300,
        },
      ]);
      expect(String(alarmExpression(r.SessionsTableThrottlesAlarm)).replace(/\s+/g, "")).toBe(
        "FILL(reads,0)+FILL(writes,0)",
      );
      for (const id of ALARMS.filter((id) => id !== "ServerErrorRateAlarm")) {
        expect(r[id]?.Properties.Threshold, id).toBe(0);
      }
    });

    it("the alarms notify the topic (alarm and OK) only when alarmTopicArn is given", () => {
      const quiet = deploy(template);
      const loud = deploy(hardened);
      const overridden = deploy(alternative, { AlarmTopicArn: TOPIC });
      for (const id of ALARMS) {
        expect(quiet.resources[id]?.Properties.AlarmActions, id).toBeUndefined();
        expect(quiet.resources[id]?.Properties.OKActions, id).toBeUndefined();
        for (const stack of [loud, overridden]) {
          expect(stack.resources[id]?.Properties.AlarmActions, id).toEqual([TOPIC]);
          expect(stack.resources[id]?.Properties.OKActions, id).toEqual([TOPIC]);
        }
      }
      expect(quiet.conditions.get("HasAlarmTopic")).toBe(false);
      expect(loud.conditions.get("HasAlarmTopic")).toBe(true);
      expect(quiet.dangling).toEqual([]);
      const topic = new RegExp(`^(?:${template.Parameters.AlarmTopicArn?.AllowedPattern})$`);
      for (const good of ["", TOPIC, "arn:aws-us-gov:sns:us-gov-west-1:111122223333:ops.fifo"]) {
        expect(good).toMatch(topic);
      }
      for (const bad of ["ops", "arn:aws:sns:us-east-1:111122223333:*", `${TOPIC},${TOPIC}`]) {
        expect(bad).not.toMatch(topic);
      }
    });

    it("the dashboard bits-<stage>: uploads and bytes per hour, errors, latency, sessions", () => {
      const { name, body, widgets } = dashboard(deploy(template));
      expect(name).toBe("bits-dev");
      expect(template.Resources.Dashboard?.Properties.DashboardBody).toHaveProperty("Fn::Sub");
      expect(body).not.toContain("${");
      expect(template.Outputs.DashboardName?.Value).toEqual({ Ref: "Dashboard" });
      const metrics = dashboardMetrics(widgets);
      const ours = (metric: string) =>
        metrics.filter(
          (m) =>
            m.namespace === "BitsUploadServer" &&
            m.name === metric &&
            m.dimensions.Stage === "dev" &&
            Object.keys(m.dimensions).length === 1,
        );
      const summed = (metric: string, period: number) =>
        ours(metric).some((m) => m.options.stat === "Sum" && m.options.period === period);
      // Uploads per hour, bytes per hour.
      expect(summed("SessionsCompleted", 3600)).toBe(true);
      expect(summed("BytesStored", 3600)).toBe(true);
      expect(summed("BytesReceived", 3600)).toBe(true);
      // Error rates per 5 minutes, the functions' errors and throttles.
      expect(summed("ServerErrors", 300)).toBe(true);
      expect(summed("RefusedRequests", 300)).toBe(true);
      for (const [metric, fn] of [
        ["Errors", "<UploadLambdaFunction>"],
        ["Throttles", "<UploadLambdaFunction>"],
        ["Errors", "<CleanupLambdaFunction>"],
      ]) {
        expect(
          metrics.some(
            (m) =>
              m.namespace === "AWS/Lambda" && m.name === metric && m.dimensions.FunctionName === fn,
          ),
          `${metric} ${fn}`,
        ).toBe(true);
      }
      // Latency p50 and p99.
      expect(ours("Latency").map((m) => m.options.stat)).toEqual(["p50", "p99"]);
      // Sessions.
      for (const metric of ["SessionsCreated", "SessionsCancelled", "SessionsExpired"]) {
        expect(ours(metric), metric).not.toEqual([]);
      }
      for (const widget of widgets.filter((w) => w.type === "metric")) {
        expect(widget.properties.region, widget.properties.title).toBe("us-east-1");
      }
      const alarms = widgets.find((w) => w.type === "alarm")?.properties.alarms ?? [];
      expect([...alarms].sort()).toEqual(ALARMS.map((id) => `<${id}.Arn>`));
    });

    it("the dashboard follows the namespace", () => {
      const { body } = dashboard(deploy(alternative));
      expect(body).toContain('"Acme/Bits"');
      expect(body).not.toContain("BitsUploadServer");
    });
  });

  describe("parameters and conditions", () => {
    it("each variant is a condition on a parameter whose default is the --param value", () => {
      expect(template.Conditions).toMatchObject({
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
      expect(hardened.Conditions).toEqual(template.Conditions);
      const defaults = (t: Template) =>
        Object.fromEntries(Object.entries(t.Parameters).map(([k, v]) => [k, v.Default]));
      expect(defaults(template)).toMatchObject({
        FrontDoor: "alb",
        ListenerProtocol: "HTTPS",
        CertificateArn: CERTIFICATE,
        VpcId: "",
        ExistingBucket: "",
        KmsKeyArn: "",
        KeyPrefix: "uploads",
        StagingPrefix: ".bits-staging",
        Auth: "basic",
        HtpasswdParameter: "/bits/htpasswd",
        UrlKeysParameter: "",
        SecretsKmsKeyArn: "",
        TrustStoreBucket: "",
        TrustStoreKey: "",
        TableMaxReadUnits: "4000",
        TableMaxWriteUnits: "4000",
        WafRateLimit: "",
        AccessLogBucket: "",
        AccessLogPrefix: "bits-alb",
      });
      expect(defaults(alternative)).toMatchObject({
        FrontDoor: "httpapi",
        ListenerProtocol: "HTTP",
        ExistingBucket: "my-existing-bucket",
        KmsKeyArn: "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
        KeyPrefix: "incoming/bits",
        Auth: "anonymous",
      });
      expect(defaults(hardened)).toMatchObject({
        Auth: "basic,signed-url,client-cert",
        HtpasswdParameter: "bits-htpasswd",
        UrlKeysParameter: "/aws/reference/secretsmanager/bits/url-keys",
        TrustStoreBucket: "my-ca-bucket",
        TrustStoreKey: "bits/ca-bundle.pem",
        WafRateLimit: "2000",
        AccessLogBucket: "my-log-bucket",
        TableMaxReadUnits: "-1",
      });
      expect(template.Parameters.FrontDoor?.AllowedValues).toEqual(["alb", "httpapi"]);
    });

    it("every parameter's default is a value the parameter accepts", () => {
      for (const t of [template, alternative, hardened]) {
        for (const [name, parameter] of Object.entries(t.Parameters)) {
          const value = String(parameter.Default);
          if (parameter.AllowedValues) expect(parameter.AllowedValues, name).toContain(value);
          // CloudFormation matches the whole value (Java regular expressions), each item of a
          // CommaDelimitedList on its own.
          if (parameter.AllowedPattern !== undefined) {
            const items = parameter.Type === "CommaDelimitedList" ? value.split(",") : [value];
            for (const item of items) {
              expect(item, name).toMatch(new RegExp(`^(?:${parameter.AllowedPattern})$`));
            }
          }
          if (parameter.MinValue !== undefined) {
            expect(Number(value), name).toBeGreaterThanOrEqual(parameter.MinValue);
          }
          if (parameter.MaxValue !== undefined) {
            expect(Number(value), name).toBeLessThanOrEqual(parameter.MaxValue);
          }
        }
      }
    });

    it("the prefixes are non-empty path segments without a leading or trailing /", () => {
      for (const name of ["KeyPrefix", "StagingPrefix"]) {
        const pattern = new RegExp(`^(?:${template.Parameters[name]?.AllowedPattern})$`);
        for (const good of ["uploads", "incoming/bits", ".bits-staging"]) {
          expect(good, name).toMatch(pattern);
        }
        for (const bad of ["", "/", "uploads/", "/uploads", "a//b"]) {
          expect(bad, name).not.toMatch(pattern);
        }
      }
    });

    it("with the HTTP API no load balancer resource is made, with the ALB no HTTP API", () => {
      for (const t of [template, alternative, hardened]) {
        const viaApi = deploy(t, { FrontDoor: "httpapi" }).resources;
        const viaAlb = deploy(t, { FrontDoor: "alb", ListenerProtocol: "HTTPS" }).resources;
        for (const [id, resource] of Object.entries(viaApi)) {
          expect(resource.Type, id).not.toMatch(/^AWS::(ElasticLoadBalancingV2|WAFv2|EC2)::/);
        }
        for (const [id, resource] of Object.entries(viaAlb)) {
          expect(resource.Type, id).not.toMatch(/^AWS::ApiGatewayV2::/);
        }
        expect(viaApi.UploadFunctionAlbPermission).toBeUndefined();
        expect(viaApi.UploadFunctionHttpApiPermission).toBeDefined();
        expect(viaAlb.UploadFunctionHttpApiPermission).toBeUndefined();
        expect(viaAlb.LoadBalancer).toBeDefined();
        expect(t.Resources.LoadBalancerSecurityGroup?.Condition).toBe("UseAlb");
      }
    });

    it("each variant deploys with every reference resolved", () => {
      expect(deploy(template).dangling).toEqual([]);
      expect(deploy(alternative).dangling).toEqual([]);
      expect(deploy(hardened).dangling).toEqual([]);
      expect(deploy(hardened, { FrontDoor: "httpapi", Auth: "signed-url" }).dangling).toEqual([]);
      expect(deploy(template, { Auth: "anonymous", ListenerProtocol: "HTTP" }).dangling).toEqual(
        [],
      );
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

    it("the HTTP API stage throttles every route by default (httpApiRateLimit, httpApiBurstLimit)", () => {
      const stage = deploy(alternative).resources.HttpApiDefaultStage?.Properties;
      expect(stage?.DefaultRouteSettings).toEqual({
        ThrottlingRateLimit: "100",
        ThrottlingBurstLimit: "200",
      });
      const tuned = deploy(alternative, { HttpApiRateLimit: "20", HttpApiBurstLimit: "40" });
      expect(tuned.resources.HttpApiDefaultStage?.Properties.DefaultRouteSettings).toEqual({
        ThrottlingRateLimit: "20",
        ThrottlingBurstLimit: "40",
      });
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
      const failure = packagingFailure({ auth: "anonymous", frontDoor: "cloudfront" });
      expect(failure.message).toContain("frontDoor_must_be_alb_or_httpapi");
      expect(failure.wroteTemplate).toBe(false);
      // Only that message: no check that reads the front door fails along with it.
      const bogus = packagingFailure({
        auth: "basic",
        htpasswdParameter: "/bits/htpasswd",
        frontDoor: "cloudfront",
        wafRateLimit: "2000",
        accessLogBucket: "my-log-bucket",
      });
      expect(bogus.message?.match(/Cannot resolve variable/g)).toHaveLength(1);
      expect(bogus.message).toContain("frontDoor_must_be_alb_or_httpapi");
    }, 60_000);
  });
});
