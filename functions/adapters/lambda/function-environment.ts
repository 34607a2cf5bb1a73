import { GetFunctionConfigurationCommand, LambdaClient } from "@aws-sdk/client-lambda";
import { storageError } from "../storage-failure.ts";

/**
 * The environment variables of a deployed function: what a tool on the operator's machine
 * needs to act on the stack's table and bucket exactly as the function does (docs/client.md,
 * bits-sessions). Credentials come from the AWS SDK's default chain. Failures are
 * StorageErrors naming the call.
 */
export async function functionEnvironment(
  region: string,
  name: string,
): Promise<Record<string, string>> {
  const client = new LambdaClient({ region });
  try {
    const out = await client.send(new GetFunctionConfigurationCommand({ FunctionName: name }));
    return { ...out.Environment?.Variables };
  } catch (error) {
    throw storageError(`Lambda GetFunctionConfiguration of ${name}`, error);
  } finally {
    client.destroy();
  }
}
