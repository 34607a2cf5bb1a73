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
  for (let attempt = 0; attempt < 3; attempt++) {
    const id = runtime.newSessionId();
    const uploadId = await objects.createUpload(packet.key, id);
    const record: SessionRecord = {
      id,
      status: "open",
      key: packet.key,
      uploadId,
      offset: 0,
      partsEnd: 0,
      etags: [],
      chunks: 0,
      version: 1,
      expiresAt: nowSeconds(context) + settings.sessionTimeoutSeconds,
    };
    let created: boolean;
    try {
      created = await sessions.create(record);
    } catch (error) {
      // The record may or may not exist; either way the client retries with a new session, so
      // this upload would be orphaned. An orphan record pointing at an aborted upload is harmless.
      await objects.abortUpload(packet.key, uploadId).catch(() => {});
      throw error;
    }
    if (created) {
      runtime.log("info", "session created", { sessionId: id, key: record.key });
      return createSessionAck(id);
    }
    await objects.abortUpload(packet.key, uploadId);
  }
  throw new BitsError("internal", "could not allocate a session ID");
}
