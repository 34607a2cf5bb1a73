/**
 * The packaged CloudFormation template as data, the variants the tests package, and a small
 * evaluator of what a deployment of it would create.
 */

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type JsonObject = { [key: string]: Json };
export interface Resource {
  Type: string;
  Condition?: string;
  DependsOn?: string | string[];
  Metadata?: JsonObject;
  Properties: JsonObject;
}
export interface Parameter {
  Type: string;
  Default: Json;
  AllowedValues?: string[];
  AllowedPattern?: string;
  MinValue?: number;
  MaxValue?: number;
}
export interface Template {
  Parameters: Record<string, Parameter>;
  Conditions: Record<string, Json>;
  Resources: Record<string, Resource>;
  Outputs: Record<string, { Condition?: string; Value: Json }>;
}

/** The certificate of the HTTPS listener in the variants that have one. */
export const CERTIFICATE =
  "arn:aws:acm:us-east-1:123456789012:certificate/1234abcd-12ab-34cd-56ef-1234567890ab";

/** The default (`auth=basic`) template's packaging parameters. */
export const DEFAULT_PARAMS = {
  auth: "basic",
  htpasswdParameter: "/bits/htpasswd",
  certificateArn: CERTIFICATE,
};

/** The hardened variant's packaging parameters: every mode, client certificates, WAF, logs. */
export const HARDENED_PARAMS = {
  auth: "basic,signed-url,client-cert",
  certificateArn: CERTIFICATE,
  // A name without a leading "/", and a Secrets Manager secret with a "/" in its name.
  htpasswdParameter: "bits-htpasswd",
  urlKeysParameter: "/aws/reference/secretsmanager/bits/url-keys",
  secretsKmsKeyArn: "arn:aws:kms:us-east-1:123456789012:key/0000aaaa-11bb-22cc-33dd-444444eeeeee",
  trustStoreBucket: "my-ca-bucket",
  trustStoreKey: "bits/ca-bundle.pem",
  wafRateLimit: "2000",
  accessLogBucket: "my-log-bucket",
  reservedConcurrency: "none",
  tableMaxReadUnits: "-1",
  principalPrefix: "{principal}",
  overwritePrincipals: "deployer,backup",
  maxSessionsPerPrincipal: "5",
  // Upload-reply jobs: a qualified function ARN, functions named only in the paths' JSON.
  notificationType: "value",
  notificationUrl: "lambda:arn:aws:lambda:us-east-1:123456789012:function:inventory-app:live",
  notificationPaths: '[{"path":"/x/","type":"reference","url":"lambda:path-app"}]',
  notificationFunctionArns:
    "arn:aws:lambda:us-east-1:123456789012:function:path-app,arn:aws:lambda:us-east-1:123456789012:function:other-app:2",
  notificationTimeoutSeconds: "50",
  // Monitoring: the alarms notify a topic, at a tighter 5xx rate.
  alarmTopicArn: "arn:aws:sns:us-east-1:111122223333:ops",
  serverErrorRateThreshold: "2",
};

/** The alternative variant: the HTTP API, anonymous, an existing bucket under a KMS key. */
export const ALTERNATIVE_PARAMS = {
  auth: "anonymous",
  frontDoor: "httpapi",
  listenerProtocol: "HTTP",
  existingBucket: "my-existing-bucket",
  kmsKeyArn: "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
  keyPrefix: "incoming/bits",
  metricsNamespace: "Acme/Bits",
  eventBus: "bits-uploads-bus",
};

export const asArray = (value: Json | undefined): Json[] =>
  value === undefined ? [] : Array.isArray(value) ? value : [value];

export const isObject = (value: Json | undefined): value is JsonObject =>
  typeof value === "object" && value !== null && !Array.isArray(value);

export const stringsIn = (value: unknown): string => JSON.stringify(value);

export const PSEUDO: Record<string, string> = {
  "AWS::Partition": "aws",
  "AWS::Region": "us-east-1",
  "AWS::AccountId": "123456789012",
  "AWS::StackName": "bits-upload-server-dev",
  "AWS::URLSuffix": "amazonaws.com",
};

/**
 * A stack as CloudFormation would make it from the template with its parameters' defaults (and
 * some overrides): which conditions hold, and each created resource's properties with Fn::If,
 * Fn::Sub, Fn::Join, Fn::Split, Fn::Select and AWS::NoValue worked out. A resource is written
 * `<Id>` where referenced, an attribute `<Id.Attr>`. `dangling` lists the resources that
 * created ones refer to but that are not created: CloudFormation refuses such a stack
 * ("Unresolved resource dependencies").
 */
export function deploy(
  template: Template,
  overrides: Record<string, string> = {},
  /** A created resource's name (attribute undefined) or attribute; `<Id>`/`<Id.Attr>` if none. */
  physical: (id: string, attribute?: string) => string | undefined = () => undefined,
) {
  const parameters = new Map<string, Json>();
  for (const [name, parameter] of Object.entries(template.Parameters)) {
    const value = overrides[name] ?? String(parameter.Default);
    parameters.set(name, parameter.Type === "CommaDelimitedList" ? value.split(",") : value);
  }
  const conditions = new Map<string, boolean>();
  const referenced = new Set<string>();

  const ref = (name: string): Json | undefined => {
    if (name === "AWS::NoValue") return undefined;
    const pseudo = PSEUDO[name];
    if (pseudo !== undefined) return pseudo;
    const parameter = parameters.get(name);
    if (parameter !== undefined) return parameter;
    if (!(name in template.Resources)) throw new Error(`Ref to unknown ${name}`);
    referenced.add(name);
    return physical(name) ?? `<${name}>`;
  };
  const getAtt = (id: string, attribute: string) => {
    if (!(id in template.Resources)) throw new Error(`GetAtt of unknown ${id}`);
    referenced.add(id);
    return physical(id, attribute) ?? `<${id}.${attribute}>`;
  };
  const holds = (name: string): boolean => {
    const known = conditions.get(name);
    if (known !== undefined) return known;
    const definition = template.Conditions[name];
    if (definition === undefined) throw new Error(`unknown condition ${name}`);
    const value = truth(definition);
    conditions.set(name, value);
    return value;
  };
  const truth = (value: Json): boolean => {
    if (!isObject(value)) throw new Error(`not a condition: ${stringsIn(value)}`);
    const [[fn, args] = []] = Object.entries(value);
    const list = asArray(args);
    switch (fn) {
      case "Condition":
        return holds(String(args));
      case "Fn::Equals":
        return stringsIn(evaluate(list[0])) === stringsIn(evaluate(list[1]));
      case "Fn::Not":
        return !truth(list[0] ?? null);
      case "Fn::And":
        return list.every(truth);
      case "Fn::Or":
        return list.some(truth);
      default:
        throw new Error(`not a condition function: ${String(fn)}`);
    }
  };
  const sub = (text: string, names: JsonObject) =>
    text.replace(/\$\{([^}]+)\}/g, (_, name: string) => {
      if (name in names) return String(evaluate(names[name]));
      const dot = name.indexOf(".");
      if (dot > 0 && !name.startsWith("AWS::"))
        return getAtt(name.slice(0, dot), name.slice(dot + 1));
      return String(ref(name));
    });
  function evaluate(value: Json | undefined): Json | undefined {
    if (Array.isArray(value)) {
      return value.map(evaluate).filter((item): item is Json => item !== undefined);
    }
    if (!isObject(value)) return value;
    const keys = Object.keys(value);
    const [fn] = keys;
    const args = fn === undefined ? undefined : value[fn];
    if (keys.length === 1 && (fn === "Ref" || fn?.startsWith("Fn::"))) {
      const list = asArray(args);
      switch (fn) {
        case "Ref":
          return ref(String(args));
        case "Fn::GetAtt":
          return getAtt(String(list[0]), String(list[1]));
        case "Fn::If":
          return evaluate(holds(String(list[0])) ? list[1] : list[2]);
        case "Fn::Sub":
          return typeof args === "string"
            ? sub(args, {})
            : sub(String(list[0]), isObject(list[1]) ? list[1] : {});
        case "Fn::Join":
          return asArray(evaluate(list[1])).join(String(list[0]));
        case "Fn::Split":
          return String(evaluate(list[1])).split(String(list[0]));
        case "Fn::GetAZs":
          return ["us-east-1a", "us-east-1b", "us-east-1c"];
        case "Fn::Cidr":
          return Array.from({ length: Number(evaluate(list[1])) }, (_, i) => `<cidr ${i}>`);
        case "Fn::Select": {
          const items = asArray(evaluate(list[1]));
          const index = Number(evaluate(list[0]));
          if (index >= items.length) throw new Error(`Fn::Select ${index} of ${stringsIn(items)}`);
          return items[index];
        }
        default:
          return value;
      }
    }
    const out: JsonObject = {};
    for (const [key, item] of Object.entries(value)) {
      const evaluated = evaluate(item);
      if (evaluated !== undefined) out[key] = evaluated;
    }
    return out;
  }

  const created = (id: string) => {
    const condition = template.Resources[id]?.Condition;
    return id in template.Resources && (condition === undefined || holds(condition));
  };
  const resources: Record<string, Resource> = {};
  for (const [id, resource] of Object.entries(template.Resources)) {
    if (!created(id)) continue;
    for (const dependency of asArray(resource.DependsOn)) referenced.add(String(dependency));
    resources[id] = evaluate(resource as unknown as Json) as unknown as Resource;
  }
  const outputs: Record<string, Json | undefined> = {};
  for (const [name, output] of Object.entries(template.Outputs)) {
    if (output.Condition === undefined || holds(output.Condition)) {
      outputs[name] = evaluate(output.Value);
    }
  }
  for (const name of Object.keys(template.Conditions)) holds(name);
  const dangling = [...referenced].filter((id) => !created(id)).sort();
  return { parameters, conditions, resources, outputs, dangling };
}
export type Deployment = ReturnType<typeof deploy>;

/** The statements of a created role's policies, as deployed. */
export function deployedStatements(stack: Deployment, roleId: string) {
  const role = stack.resources[roleId];
  return asArray(role?.Properties.Policies).flatMap((policy) =>
    isObject(policy) && isObject(policy.PolicyDocument)
      ? asArray(policy.PolicyDocument.Statement).filter(isObject)
      : [],
  );
}
