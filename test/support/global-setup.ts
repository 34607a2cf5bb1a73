import type { TestProject } from "vitest/node";
import { startStandIns } from "../../infra/stand-ins.ts";

declare module "vitest" {
  export interface ProvidedContext {
    s3Endpoint: string;
    dynamodbEndpoint: string;
  }
}

/** Starts the real stand-ins once for the whole run; every test file gets its own bucket/table. */
export default async function setup(project: TestProject) {
  const standIns = await startStandIns();
  project.provide("s3Endpoint", standIns.s3Endpoint);
  project.provide("dynamodbEndpoint", standIns.dynamodbEndpoint);
  return async () => {
    await standIns.stop();
  };
}
