import { execFile } from "node:child_process";
import { resolve } from "node:path";
import { promisify } from "node:util";
import {
  CloudFormationClient,
  CreateStackCommand,
  DescribeStacksCommand,
  type StackResource,
} from "@aws-sdk/client-cloudformation";
import { CloudWatchClient, PutMetricAlarmCommand } from "@aws-sdk/client-cloudwatch";
import { EventBridgeClient, ListRulesCommand } from "@aws-sdk/client-eventbridge";
import { ListQueuesCommand, SQSClient } from "@aws-sdk/client-sqs";
import { afterAll, describe, expect, inject, it } from "vitest";
import type { Check } from "../../scripts/smoke.ts";
import { alarmsExist } from "../../scripts/smoke-stack.ts";
import { MOTO_CLIENT, motoAvailable } from "../support/moto.ts";
import { type Started, start, stop } from "../support/npm-start.ts";
import { packagedTemplate } from "../support/packaging.ts";
import { DEFAULT_PARAMS } from "../support/template.ts";

/**
 * `npm run smoke -- <URL> --stack NAME` (scripts/smoke-stack.ts) on moto, which emulates
 * CloudFormation, Lambda's API, EventBridge, SQS and CloudWatch. moto cannot create the packaged
 * stack (docs/platform.md, "moto's CloudFormation"), so the stack here is a small one moto can
 * create: the cleanup function (its environment names the bus) and the bus. `npm start` publishes
 * its completion events to that bus on moto for real (BITS_EVENTS=eventbridge), so the event
 * check watches a real event through the temporary rule and queue. moto's CloudFormation has no
 * alarms, so the alarm check is run here on the packaged template's alarms, created in moto's
 * CloudWatch by the test. The moto is the run's (the global setup's): nothing else in the run
 * makes stacks, buses, rules, queues or alarms on it, and this stack's names are its own.
 */

const ROOT = resolve(import.meta.dirname, "../..");
const execFileAsync = promisify(execFile);
const STACK = "bits-smoke-test";
const BUS = "bits-uploads-bus";

/** What moto's CloudFormation can create of the stack: the cleanup function and the bus. */
const TEMPLATE = {
  Resources: {
    Bus: { Type: "AWS::Events::EventBus", Properties: { Name: BUS } },
    CleanupFunctionRole: {
      Type: "AWS::IAM::Role",
      Properties: {
        AssumeRolePolicyDocument: {
          Version: "2012-10-17",
          Statement: [
            {
              Effect: "Allow",
              Principal: { Service: "lambda.amazonaws.com" },
              Action: "sts:AssumeRole",
            },
          ],
        },
      },
    },
    CleanupLambdaFunction: {
      Type: "AWS::Lambda::Function",
      Properties: {
        Runtime: "nodejs20.x",
        Handler: "index.handler",
        Role: { "Fn::GetAtt": ["CleanupFunctionRole", "Arn"] },
        Code: { ZipFile: "exports.handler = async () => {};" },
        Environment: {
          Variables: {
            BITS_EVENTS: "eventbridge",
            BITS_EVENT_BUS: BUS,
            BITS_EVENT_SOURCE: "bits.upload",
          },
        },
      },
    },
  },
};

async function smoke(url: string, moto: { endpoint: string }, ...args: string[]) {
  const env = {
    ...process.env,
    NODE_NO_WARNINGS: "1",
    AWS_ENDPOINT_URL: moto.endpoint,
    AWS_REGION: MOTO_CLIENT.region,
    AWS_ACCESS_KEY_ID: MOTO_CLIENT.credentials.accessKeyId,
    AWS_SECRET_ACCESS_KEY: MOTO_CLIENT.credentials.secretAccessKey,
  };
  try {
    const { stdout } = await execFileAsync(
      process.execPath,
      ["--import", "tsx", "scripts/smoke.ts", `${url}/`, "--json", ...args],
      { cwd: ROOT, env, timeout: 120_000 },
    );
    return { code: 0, checks: (JSON.parse(stdout) as { checks: Check[] }).checks };
  } catch (error) {
    const e = error as { code?: number; stdout?: string; stderr?: string };
    if (!e.stdout) throw new Error(`smoke failed to run: ${e.stderr}`);
    return { code: e.code, checks: (JSON.parse(e.stdout) as { checks: Check[] }).checks };
  }
}

describe.skipIf(!motoAvailable())("npm run smoke --stack, on moto", () => {
  const moto = { endpoint: inject("motoEndpoint") };
  let server: Started | undefined;
  afterAll(async () => {
    await stop(server);
  });

  const client = () => ({ ...MOTO_CLIENT, endpoint: moto.endpoint });

  it("sees the upload's completion event on the stack's bus and leaves no rule or queue", async () => {
    const cloudformation = new CloudFormationClient(client());
    await cloudformation.send(
      new CreateStackCommand({
        StackName: STACK,
        TemplateBody: JSON.stringify(TEMPLATE),
        Capabilities: ["CAPABILITY_IAM"],
      }),
    );
    const stacks = await cloudformation.send(new DescribeStacksCommand({ StackName: STACK }));
    expect(stacks.Stacks?.[0]?.StackStatus).toBe("CREATE_COMPLETE");

    // The local server publishes its completion events to the bus on moto.
    server = await start(
      {
        BITS_EVENTS: "eventbridge",
        BITS_EVENT_BUS: BUS,
        AWS_ENDPOINT_URL_EVENTBRIDGE: moto.endpoint,
        AWS_REGION: MOTO_CLIENT.region,
        AWS_ACCESS_KEY_ID: MOTO_CLIENT.credentials.accessKeyId,
        AWS_SECRET_ACCESS_KEY: MOTO_CLIENT.credentials.secretAccessKey,
      },
      { ownStandIns: true },
    );
    const { code, checks } = await smoke(
      server.url,
      moto,
      "--stack",
      STACK,
      "--event-timeout",
      "30",
    );
    const byName = Object.fromEntries(checks.map((c) => [c.name, c]));
    expect(byName.completion_event_arrived).toMatchObject({ ok: true });
    expect(byName.completion_event_arrived?.saw).toMatch(
      /^Upload Completed for \S*smoke-\w+\.bin: outcome completed, stored true \(bus bits-uploads-bus, source bits\.upload\)$/,
    );
    // moto's CloudFormation creates no alarms: the check says so, and fails.
    expect(byName.alarms_exist).toEqual({
      name: "alarms_exist",
      ok: false,
      saw: "the stack lists no AWS::CloudWatch::Alarm",
    });
    expect(checks.filter((c) => c.ok === false).map((c) => c.name)).toEqual(["alarms_exist"]);
    expect(code).toBe(1);

    // Nothing of the smoke test's is left on the bus or in SQS.
    const rules = await new EventBridgeClient(client()).send(
      new ListRulesCommand({ EventBusName: BUS }),
    );
    expect(rules.Rules ?? []).toEqual([]);
    const queues = await new SQSClient(client()).send(new ListQueuesCommand({}));
    expect(queues.QueueUrls ?? []).toEqual([]);
  }, 180_000);

  it("fails the event check by name when the server publishes elsewhere", async () => {
    await stop(server);
    // Events on standard output: nothing reaches the bus.
    server = await start({});
    const { checks } = await smoke(server.url, moto, "--stack", STACK, "--event-timeout", "3");
    const failed = checks.filter((c) => c.ok === false);
    expect(failed.map((c) => c.name)).toEqual(["completion_event_arrived", "alarms_exist"]);
    expect(failed[0]?.saw).toMatch(/^no Upload Completed for session \S+ within 3 s/);
    const rules = await new EventBridgeClient(client()).send(
      new ListRulesCommand({ EventBusName: BUS }),
    );
    expect(rules.Rules ?? []).toEqual([]);
  }, 180_000);

  it("finds the packaged stack's alarms in CloudWatch, and names a missing one", async () => {
    const template = packagedTemplate<{
      Resources: Record<string, { Type: string; Properties: { AlarmName?: string } }>;
    }>(DEFAULT_PARAMS);
    const resources: StackResource[] = Object.entries(template.Resources)
      .filter(([, r]) => r.Type === "AWS::CloudWatch::Alarm")
      .map(([logical, r]) => ({
        LogicalResourceId: logical,
        PhysicalResourceId: r.Properties.AlarmName,
        ResourceType: r.Type,
        ResourceStatus: "CREATE_COMPLETE",
        Timestamp: new Date(),
      }));
    expect(resources).toHaveLength(6);
    const cloudwatch = new CloudWatchClient(client());
    const create = (name: string | undefined) =>
      cloudwatch.send(
        new PutMetricAlarmCommand({
          AlarmName: name,
          Namespace: "BitsUploadServer",
          MetricName: "Requests",
          Statistic: "Sum",
          Period: 300,
          EvaluationPeriods: 1,
          Threshold: 0,
          ComparisonOperator: "GreaterThanThreshold",
        }),
      );
    for (const r of resources.slice(1)) await create(r.PhysicalResourceId);
    const missing = await alarmsExist(cloudwatch, resources);
    expect(missing).toEqual({
      ok: false,
      saw: `1 of 6 missing: ${resources[0]?.PhysicalResourceId}`,
    });
    await create(resources[0]?.PhysicalResourceId);
    // The state is reported, not judged (moto starts an alarm at OK, AWS at INSUFFICIENT_DATA).
    const all = await alarmsExist(cloudwatch, resources);
    expect(all.ok).toBe(true);
    expect(all.saw).toMatch(/^6 alarms \(6 (OK|INSUFFICIENT_DATA)\)$/);
  }, 180_000);
});
