import {
  CloudFormationClient,
  DescribeStackResourcesCommand,
  type StackResource,
} from "@aws-sdk/client-cloudformation";
import { CloudWatchClient, DescribeAlarmsCommand } from "@aws-sdk/client-cloudwatch";
import {
  DeleteRuleCommand,
  EventBridgeClient,
  PutRuleCommand,
  PutTargetsCommand,
  RemoveTargetsCommand,
} from "@aws-sdk/client-eventbridge";
import { GetFunctionConfigurationCommand, LambdaClient } from "@aws-sdk/client-lambda";
import {
  CreateQueueCommand,
  DeleteMessageCommand,
  DeleteQueueCommand,
  GetQueueAttributesCommand,
  ReceiveMessageCommand,
  SetQueueAttributesCommand,
  SQSClient,
} from "@aws-sdk/client-sqs";

/**
 * The smoke test's checks of the stack itself (`--stack NAME`, docs/smoke.md), with the
 * operator's credentials: the completion event of the smoke test's own upload arrives on the
 * stack's bus, and the alarms the stack defines exist. The stack is never changed: the event is
 * watched through a temporary rule and SQS queue of the smoke test's, deleted afterwards.
 */

export interface StackCheck {
  readonly ok: boolean | "skipped";
  readonly saw: string;
}

export interface StackClients {
  readonly cloudformation: CloudFormationClient;
  readonly cloudwatch: CloudWatchClient;
  readonly lambda: LambdaClient;
  readonly events: EventBridgeClient;
  readonly sqs: SQSClient;
}

/** The SDK's own configuration (credentials, AWS_ENDPOINT_URL), in `region` when given. */
export function stackClients(region?: string): StackClients {
  const config = region ? { region } : {};
  return {
    cloudformation: new CloudFormationClient(config),
    cloudwatch: new CloudWatchClient(config),
    lambda: new LambdaClient(config),
    events: new EventBridgeClient(config),
    sqs: new SQSClient(config),
  };
}

/** An AWS error in one line: its code, the message, and the call that got it. */
export const refused = (call: string, error: unknown) =>
  `${call}: ${(error as Error).name}: ${(error as Error).message}`;

export async function stackResources(
  clients: StackClients,
  stackName: string,
): Promise<StackResource[]> {
  const answer = await clients.cloudformation
    .send(new DescribeStackResourcesCommand({ StackName: stackName }))
    .catch((error) => {
      throw new Error(refused("cloudformation:DescribeStackResources", error));
    });
  return answer.StackResources ?? [];
}

/**
 * The alarms the stack defines (its AWS::CloudWatch::Alarm resources, infra/monitoring.yml)
 * exist in CloudWatch. Their state is reported, not judged: a fresh stack's alarms are
 * INSUFFICIENT_DATA.
 */
export async function alarmsExist(
  cloudwatch: CloudWatchClient,
  resources: readonly StackResource[],
): Promise<StackCheck> {
  const names = resources
    .filter((r) => r.ResourceType === "AWS::CloudWatch::Alarm")
    .map((r) => r.PhysicalResourceId ?? "");
  if (names.length === 0) return { ok: false, saw: "the stack lists no AWS::CloudWatch::Alarm" };
  const found = new Map<string, string>();
  // DescribeAlarms takes at most 100 names a call.
  for (let i = 0; i < names.length; i += 100) {
    const answer = await cloudwatch
      .send(new DescribeAlarmsCommand({ AlarmNames: names.slice(i, i + 100), MaxRecords: 100 }))
      .catch((error) => {
        throw new Error(refused("cloudwatch:DescribeAlarms", error));
      });
    for (const alarm of [...(answer.MetricAlarms ?? []), ...(answer.CompositeAlarms ?? [])]) {
      found.set(alarm.AlarmName ?? "", alarm.StateValue ?? "?");
    }
  }
  const missing = names.filter((name) => !found.has(name));
  if (missing.length > 0) {
    return {
      ok: false,
      saw: `${missing.length} of ${names.length} missing: ${missing.join(", ")}`,
    };
  }
  const states = [...found.values()].reduce<Record<string, number>>((counts, state) => {
    counts[state] = (counts[state] ?? 0) + 1;
    return counts;
  }, {});
  return {
    ok: true,
    saw: `${names.length} alarms (${Object.entries(states)
      .map(([state, n]) => `${n} ${state}`)
      .join(", ")})`,
  };
}

/** Where the stack's completion events go: the cleanup function's BITS_EVENT_BUS and source. */
async function eventBus(clients: StackClients, resources: readonly StackResource[]) {
  const cleanup = resources.find((r) => r.LogicalResourceId === "CleanupLambdaFunction");
  if (!cleanup?.PhysicalResourceId) throw new Error("the stack has no CleanupLambdaFunction");
  const config = await clients.lambda
    .send(new GetFunctionConfigurationCommand({ FunctionName: cleanup.PhysicalResourceId }))
    .catch((error) => {
      throw new Error(refused("lambda:GetFunctionConfiguration", error));
    });
  const variables = config.Environment?.Variables ?? {};
  return {
    bus: variables.BITS_EVENT_BUS || "default",
    source: variables.BITS_EVENT_SOURCE || "bits.upload",
  };
}

export interface EventWatch {
  /** The bus and source watched. */
  readonly where: string;
  /** Waits (at most `seconds`) for the `Upload Completed` event of this session. */
  completion(sessionId: string, seconds: number): Promise<StackCheck>;
  /** Deletes the rule and the queue; answers what could not be deleted. */
  remove(): Promise<string[]>;
}

const bare = (id: string) => id.replace(/[{}]/g, "").toLowerCase();

/**
 * A temporary rule `bits-smoke-<tag>` on the stack's bus, matching its completion events, with
 * an SQS queue of the same name as its only target. Whatever was created is deleted by
 * `remove`, also when a later step failed.
 */
export async function watchEvents(
  clients: StackClients,
  resources: readonly StackResource[],
  tag: string,
): Promise<EventWatch> {
  const { bus, source } = await eventBus(clients, resources);
  const name = `bits-smoke-${tag}`;
  const undo: { what: string; run: () => Promise<unknown> }[] = [];
  const remove = async () => {
    const left: string[] = [];
    for (const step of undo.reverse()) {
      await step.run().catch((error) => left.push(refused(step.what, error)));
    }
    undo.length = 0;
    return left;
  };
  try {
    const queue = await clients.sqs
      .send(new CreateQueueCommand({ QueueName: name }))
      .catch((error) => {
        throw new Error(refused("sqs:CreateQueue", error));
      });
    const QueueUrl = queue.QueueUrl ?? "";
    undo.push({
      what: "sqs:DeleteQueue",
      run: () => clients.sqs.send(new DeleteQueueCommand({ QueueUrl })),
    });
    const attributes = await clients.sqs
      .send(new GetQueueAttributesCommand({ QueueUrl, AttributeNames: ["QueueArn"] }))
      .catch((error) => {
        throw new Error(refused("sqs:GetQueueAttributes", error));
      });
    const queueArn = attributes.Attributes?.QueueArn ?? "";
    const rule = await clients.events
      .send(
        new PutRuleCommand({
          Name: name,
          EventBusName: bus,
          EventPattern: JSON.stringify({ source: [source], "detail-type": ["Upload Completed"] }),
          State: "ENABLED",
          Description: "Temporary: npm run smoke watches its own upload's completion event",
        }),
      )
      .catch((error) => {
        throw new Error(refused("events:PutRule", error));
      });
    undo.push({
      what: "events:DeleteRule",
      run: () => clients.events.send(new DeleteRuleCommand({ Name: name, EventBusName: bus })),
    });
    // EventBridge may send to the queue only for this rule.
    const policy = {
      Version: "2012-10-17",
      Statement: [
        {
          Effect: "Allow",
          Principal: { Service: "events.amazonaws.com" },
          Action: "sqs:SendMessage",
          Resource: queueArn,
          Condition: { ArnEquals: { "aws:SourceArn": rule.RuleArn } },
        },
      ],
    };
    await clients.sqs
      .send(
        new SetQueueAttributesCommand({
          QueueUrl,
          Attributes: { Policy: JSON.stringify(policy) },
        }),
      )
      .catch((error) => {
        throw new Error(refused("sqs:SetQueueAttributes", error));
      });
    await clients.events
      .send(
        new PutTargetsCommand({
          Rule: name,
          EventBusName: bus,
          Targets: [{ Id: "smoke-queue", Arn: queueArn }],
        }),
      )
      .catch((error) => {
        throw new Error(refused("events:PutTargets", error));
      });
    undo.push({
      what: "events:RemoveTargets",
      run: () =>
        clients.events.send(
          new RemoveTargetsCommand({ Rule: name, EventBusName: bus, Ids: ["smoke-queue"] }),
        ),
    });
    return {
      where: `bus ${bus}, source ${source}`,
      remove,
      completion: (sessionId, seconds) => awaitCompletion(clients, QueueUrl, sessionId, seconds),
    };
  } catch (error) {
    const left = await remove();
    throw new Error(
      [(error as Error).message, ...left.map((l) => `and could not delete: ${l}`)].join("; "),
    );
  }
}

async function awaitCompletion(
  clients: StackClients,
  QueueUrl: string,
  sessionId: string,
  seconds: number,
): Promise<StackCheck> {
  const deadline = Date.now() + seconds * 1000;
  const others: string[] = [];
  while (Date.now() < deadline) {
    const wait = Math.max(1, Math.min(10, Math.floor((deadline - Date.now()) / 1000)));
    const answer = await clients.sqs
      .send(new ReceiveMessageCommand({ QueueUrl, WaitTimeSeconds: wait, MaxNumberOfMessages: 10 }))
      .catch((error) => {
        throw new Error(refused("sqs:ReceiveMessage", error));
      });
    for (const message of answer.Messages ?? []) {
      await clients.sqs.send(
        new DeleteMessageCommand({ QueueUrl, ReceiptHandle: message.ReceiptHandle }),
      );
      const event = JSON.parse(message.Body ?? "{}") as {
        "detail-type"?: string;
        detail?: { sessionId?: string; key?: string; outcome?: string; stored?: boolean };
      };
      const detail = event.detail ?? {};
      if (bare(detail.sessionId ?? "") !== bare(sessionId)) {
        others.push(detail.sessionId ?? "?");
        continue;
      }
      return {
        ok: detail.outcome === "completed" && detail.stored === true,
        saw: `${event["detail-type"]} for ${detail.key}: outcome ${detail.outcome}, stored ${detail.stored}`,
      };
    }
  }
  return {
    ok: false,
    saw: `no Upload Completed for session ${sessionId} within ${seconds} s${others.length ? ` (${others.length} of other sessions)` : ""}`,
  };
}
