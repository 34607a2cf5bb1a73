import { createLambdaHandler } from "./adapters/lambda/lambda-handler.ts";
import { ConfigError, loadConfig } from "./config.ts";
import { buildAuthenticator, buildContext, jsonRuntime } from "./wiring.ts";

// Read once per cold start; a bad value stops here with a message naming it.
const config = loadConfig(process.env);
if (config.auth === undefined) {
  // A deployed server is never anonymous by default: the operator names the mode, even
  // `anonymous` (docs/security.md).
  throw new ConfigError(
    "BITS_AUTH is required: basic, signed-url, client-cert (comma-separated), or anonymous",
  );
}
const runtime = jsonRuntime(config.logLevel);
const authenticator = await buildAuthenticator(config, config.auth, runtime);
// An ALB takes at most 1 MB from a Lambda function, base64 body included: larger reply
// downloads are redirected to a presigned S3 URL (docs/upload-reply.md).
const { service } = buildContext(config, runtime, undefined, authenticator, {
  maxResponseBody: 700_000,
});

/** The deployed upload function. */
export const handler = createLambdaHandler(service, {
  trustClientCertificates: config.auth.includes("client-cert"),
});
