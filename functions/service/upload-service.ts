import { ack, errorAck, methodNotAllowed } from "../bits/ack.ts";
import { BitsError } from "../bits/errors.ts";
import {
  isBitsPost,
  type Packet,
  type PacketType,
  parsePacket,
  sessionIdOf,
} from "../bits/packet.ts";
import type { BitsRequest, BitsResponse } from "../bits/request.ts";
import { isLive } from "../bits/session.ts";
import type { ServiceContext } from "./context.ts";
import { createSession } from "./create-session.ts";
import { endSession } from "./end-session.ts";
import { fragment } from "./fragment.ts";

type Handler<T extends PacketType> = (
  context: ServiceContext,
  packet: Extract<Packet, { type: T }>,
) => Promise<BitsResponse>;

/** One handler per packet type ([MC-BUP] 3.2.5.2.5-8). Ping needs no session (3.2.5.2.2). */
const HANDLERS: { [T in PacketType]: Handler<T> } = {
  ping: async () => ack(200),
  "create-session": createSession,
  fragment,
  "close-session": endSession,
  "cancel-session": endSession,
};

export interface UploadService {
  handle(request: BitsRequest): Promise<BitsResponse>;
}

/**
 * The BITS upload server, independent of front door and storage: a request value in, an Ack
 * value out. Every failure becomes a well-formed Ack here and nowhere else.
 */
export function createUploadService(context: ServiceContext): UploadService {
  const rules = {
    keyPrefix: context.settings.keyPrefix,
    reservedPrefix: context.settings.stagingPrefix,
  };
  return {
    async handle(request) {
      if (!isBitsPost(request)) return methodNotAllowed();
      let packet: Packet | undefined;
      try {
        if (!uploadsEnabled(context.settings.uploadPaths, request.path)) {
          throw new BitsError("uploadsDisabled", "uploads are not enabled for this path");
        }
        packet = parsePacket(request, rules);
        const handler = HANDLERS[packet.type] as Handler<PacketType>;
        return await handler(context, packet);
      } catch (error) {
        const failure =
          error instanceof BitsError ? error : new BitsError("internal", "unexpected failure");
        if (failure.kind === "internal") logFailure(context, error, sessionIdOf(request));
        const sessionId = await knownSessionId(context, request, packet, failure);
        return errorAck(failure, sessionId === undefined ? {} : { sessionId });
      }
    },
  };
}

/**
 * The session ID to echo on an error Ack: only one that names a live session (Project
 * decisions). A packet refused before its session was looked up costs one read here.
 */
async function knownSessionId(
  context: ServiceContext,
  request: BitsRequest,
  packet: Packet | undefined,
  failure: BitsError,
): Promise<string | undefined> {
  const id = sessionIdOf(request);
  if (id === undefined || failure.kind === "sessionNotFound") return undefined;
  if (packet !== undefined && packet.type !== "ping" && packet.type !== "create-session") return id;
  try {
    const record = await context.sessions.get(id);
    return isLive(record, Math.floor(context.runtime.now() / 1000)) ? id : undefined;
  } catch {
    return undefined;
  }
}

/** A path is enabled when it lies under one of the prefixes (a prefix "/" enables all). */
export function uploadsEnabled(prefixes: readonly string[], path: string): boolean {
  return prefixes.some(
    (prefix) =>
      prefix === "/" || path === prefix || path.startsWith(`${prefix.replace(/\/$/, "")}/`),
  );
}

function logFailure(context: ServiceContext, error: unknown, sessionId: string | undefined) {
  context.runtime.log("error", "request failed", {
    sessionId,
    error: error instanceof Error ? `${error.name}: ${error.message}` : String(error),
  });
}
