import { createLambdaHandler } from "./adapters/lambda/lambda-handler.ts";
import { loadConfig } from "./config.ts";
import { buildContext } from "./wiring.ts";

// Read once per cold start; a bad value stops here with a message naming it.
const { service } = buildContext(loadConfig(process.env));

/** The deployed upload function. */
export const handler = createLambdaHandler(service);
