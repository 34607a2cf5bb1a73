import type { TestProject } from "vitest/node";
import { startMoto, startStandIns } from "../../infra/stand-ins.ts";

declare module "vitest" {
  export interface ProvidedContext {
    s3Endpoint: string;
    dynamodbEndpoint: string;
    /** One moto_server: S3 and DynamoDB on the same endpoint (docs/platform.md). */
    motoEndpoint: string;
  }
}

/**
 * Starts the real stand-ins once for the whole run, fauxqs with DynamoDB Local and moto beside
 * them; every test file gets its own bucket/table.
 */
export default async function setup(project: TestProject) {
  const [standIns, moto] = await Promise.all([startStandIns(), startMoto()]);
  project.provide("s3Endpoint", standIns.s3Endpoint);
  project.provide("dynamodbEndpoint", standIns.dynamodbEndpoint);
  project.provide("motoEndpoint", moto.endpoint);
  return async () => {
    await Promise.all([standIns.stop(), moto.stop()]);
  };
}
