import { createCleanupHandler } from "./adapters/lambda/cleanup-handler.ts";
import { loadConfig } from "./config.ts";
import { buildContext } from "./wiring.ts";

// Read once per cold start; a bad value stops here with a message naming it.
const { context } = buildContext(loadConfig(process.env));

/** The deployed cleanup function: the table's stream of TTL deletions, and a scheduled sweep. */
export const handler = createCleanupHandler(context);
