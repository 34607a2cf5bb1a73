import { createSessionAck } from "../bits/ack.ts";
import { BitsError } from "../bits/errors.ts";
import type { Packet } from "../bits/packet.ts";
import type { BitsResponse } from "../bits/request.ts";
import type { SessionRecord } from "../bits/session.ts";
import { nowSeconds, type ServiceContext } from "./context.ts";

type CreateSession = Extract<Packet, { type: "create-session" }>;

/**
 * Create-Session ([MC-BUP] 3.2.5.2.4): refuse an existing destination when overwrite is off
 * (403 + E_ACCESSDENIED, 2.2.1.2), open the multipart upload and store a new session.
 */
export async function createSession(
  context: ServiceContext,
  packet: CreateSession,
): Promise<BitsResponse> {
  const { objects, sessions, runtime, settings } = context;
  if (!settings.allowOverwrite && (await objects.head(packet.key)) !== undefined) {
    throw new BitsError("accessDenied", "destination exists and overwrite is off");
  }
  const uploadId = await objects.createUpload(packet.key);
  for (let attempt = 0; attempt < 3; attempt++) {
    const record: SessionRecord = {
      id: runtime.newSessionId(),
      status: "open",
      key: packet.key,
      uploadId,
      offset: 0,
      etags: [],
      chunks: 0,
      version: 1,
      expiresAt: nowSeconds(context) + settings.sessionTimeoutSeconds,
    };
    if (await sessions.create(record)) {
      runtime.log("info", "session created", { sessionId: record.id, key: record.key });
      return createSessionAck(record.id);
    }
  }
  await objects.abortUpload(packet.key, uploadId);
  throw new BitsError("internal", "could not allocate a session ID");
}
