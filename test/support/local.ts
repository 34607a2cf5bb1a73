import { startLocalServer } from "../../functions/adapters/node/local-server.ts";
import { ANONYMOUS } from "../../functions/auth/authenticator.ts";
import type { ServiceSettings } from "../../functions/service/context.ts";
import { authorizeRead } from "../../functions/service/upload-service.ts";
import { realService } from "./storage.ts";

/** The local HTTP server over the real stand-ins, with its own bucket and table. */
export async function localServer(
  settings: Partial<ServiceSettings> = {},
  options: Parameters<typeof realService>[1] = {},
) {
  const env = await realService(settings, options);
  const server = await startLocalServer(
    {
      service: env.service,
      objects: env.objects,
      authorizeRead: (request) =>
        authorizeRead(env.context, options.authenticator ?? ANONYMOUS, request),
      maxBodyBytes: env.context.settings.limits.maxFragmentBytes,
      replyPath: env.context.settings.replyPath,
    },
    0,
  );
  return { ...env, server };
}
