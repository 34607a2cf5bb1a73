import { GetParameterCommand, SSMClient } from "@aws-sdk/client-ssm";
import type { SecretText } from "../../ports/secrets.ts";

/** SSM's answer codes that mean the role or the KMS key does not let us read the parameter. */
const DENIED = new Set(["AccessDeniedException", "InvalidKeyId", "UnrecognizedClientException"]);

/**
 * A SecureString parameter, or a Secrets Manager secret named through SSM's reference path
 * `/aws/reference/secretsmanager/<secret-id>`: SSM fetches the secret for us, so the Lambda
 * bundles only the SSM client and its role needs `ssm:GetParameter` plus
 * `secretsmanager:GetSecretValue` on that secret. Vendor errors stay in this file; messages name
 * the parameter, never its value.
 */
export class SsmSecret implements SecretText {
  readonly source: string;

  constructor(
    private readonly client: SSMClient,
    private readonly name: string,
  ) {
    this.source = `ssm ${name}`;
  }

  async current(): Promise<string> {
    let value: string | undefined;
    try {
      const out = await this.client.send(
        new GetParameterCommand({ Name: this.name, WithDecryption: true }),
      );
      value = out.Parameter?.Value;
    } catch (error) {
      const code = (error as { name?: string }).name ?? "error";
      const why =
        code === "ParameterNotFound"
          ? "does not exist"
          : DENIED.has(code)
            ? `cannot be read: access denied (${code})`
            : `cannot be read (${code})`;
      throw new Error(`SSM parameter ${this.name} ${why}`, { cause: error });
    }
    if (value === undefined) throw new Error(`SSM parameter ${this.name} has no value`);
    return value;
  }
}

/**
 * An SsmSecret with its own client, for the entry points: they import this module on demand,
 * so the SSM client is loaded only where a secret lives in SSM.
 */
export function ssmSecret(region: string, name: string): SsmSecret {
  return new SsmSecret(new SSMClient({ region }), name);
}
