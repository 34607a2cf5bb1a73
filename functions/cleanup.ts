import { createCleanupHandler } from "./adapters/lambda/cleanup-handler.ts";
import { loadConfig } from "./config.ts";
import { buildContext, eventSinkFor } from "./wiring.ts";

// Read once per cold start; a bad value stops here with a message naming it.
const config = loadConfig(process.env);
const { context } = buildContext(config);

/**
 * The deployed stream function: every change of the session table (announcing endings,
 * releasing what TTL removed) and a scheduled sweep.
 */
export const handler = createCleanupHandler(context, eventSinkFor(config));
