import { ack, errorAck, methodNotAllowed } from "../bits/ack.ts";
import { BitsError } from "../bits/errors.ts";
import { isBitsPost, type Packet, type PacketType, parsePacket } from "../bits/packet.ts";
import type { BitsRequest, BitsResponse } from "../bits/request.ts";
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
        packet = parsePacket(request, rules);
        const handler = HANDLERS[packet.type] as Handler<PacketType>;
        return await handler(context, packet);
      } catch (error) {
        const sessionId = packet !== undefined && "sessionId" in packet ? packet.sessionId : "";
        if (error instanceof BitsError) {
          // Echo the session ID only when it names a session (Project decisions).
          const known = sessionId !== "" && error.kind !== "sessionNotFound";
          if (error.kind === "internal") logFailure(context, error, sessionId);
          return errorAck(error, known ? { sessionId } : {});
        }
        logFailure(context, error, sessionId);
        return errorAck(new BitsError("internal", "unexpected failure"));
      }
    },
  };
}

function logFailure(context: ServiceContext, error: unknown, sessionId: string) {
  context.runtime.log("error", "request failed", {
    sessionId,
    error: error instanceof Error ? `${error.name}: ${error.message}` : String(error),
  });
}
