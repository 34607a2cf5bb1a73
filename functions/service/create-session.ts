import { mayOverwrite } from "../auth/authorization.ts";
import { createSessionAck } from "../bits/ack.ts";
import { BitsError } from "../bits/errors.ts";
import type { Packet } from "../bits/packet.ts";
import type { BitsResponse } from "../bits/request.ts";
import type { SessionRecord } from "../bits/session.ts";
import { type Call, sessionTag } from "./call.ts";
import { nowSeconds, type ServiceContext } from "./context.ts";
import { emfFields } from "./metrics.ts";
import { notifyFor, requestKeyOf } from "./reply.ts";

type CreateSession = Extract<Packet, { type: "create-session" }>;

/**
 * Create-Session ([MC-BUP] 3.2.5.2.4): refuse an existing destination when overwrite is off
 * (403 + E_ACCESSDENIED, 2.2.1.2), open the multipart upload and store a new session, bound to
 * its principal and URL and counted against the caps on open sessions in the same write.
 */
export async function createSession(
  context: ServiceContext,
  packet: CreateSession,
  call: Call,
): Promise<BitsResponse> {
  const { objects, sessions, runtime, settings } = context;
  const overwrite = mayOverwrite(settings, call.identity);
  if (!overwrite && (await objects.head(packet.key)) !== undefined) {
    throw new BitsError("accessDenied", "destination exists and overwrite is off");
  }
  const maxBytes = Math.min(
    settings.limits.maxUploadBytes,
    call.principal.grant?.maxBytes ?? Number.POSITIVE_INFINITY,
  );
  const notify = notifyFor(context, call, call.path);
  for (let attempt = 0; attempt < 3; attempt++) {
    const id = runtime.newSessionId();
    // Upload-reply: the file goes to the session's request object; the destination key only
    // receives it if the application asks ([MC-BUP] 3.3.5.2.4).
    const requestKey = notify ? requestKeyOf(context, id) : undefined;
    const uploadId = await objects.createUpload(requestKey ?? packet.key, id);
    const record: SessionRecord = {
      id,
      status: "open",
      key: packet.key,
      requestKey,
      notify,
      auth: call.principal.mode,
      principal: call.principal.name,
      slot: call.slot,
      overwrite,
      maxBytes,
      fragments: 0,
      uploadId,
      offset: 0,
      bytesInParts: 0,
      // Nothing received and nothing in parts yet: the CRC32C of no bytes (docs/checksums.md).
      receivedCrc32c: 0,
      partsCrc32c: 0,
      etags: [],
      chunks: 0,
      version: 1,
      expiresAt: nowSeconds(context) + settings.sessionTimeoutSeconds,
      createdAt: runtime.now(),
      client: call.client,
      bytesReceived: 0,
    };
    let created: Awaited<ReturnType<typeof sessions.create>>;
    try {
      created = await sessions.create(record, settings.caps);
    } catch (error) {
      // The record may or may not exist; either way the client retries with a new session, so
      // this upload would be orphaned. An orphan record pointing at an aborted upload is harmless.
      await objects.abortUpload(requestKey ?? packet.key, uploadId).catch(() => {});
      throw error;
    }
    if (created === "created") {
      runtime.log("info", "session created", {
        session: sessionTag(id),
        key: record.key,
        ...emfFields(
          settings.metrics,
          [{ name: "SessionsCreated", value: 1, unit: "Count" }],
          runtime.now(),
        ),
      });
      return createSessionAck(id);
    }
    await objects.abortUpload(requestKey ?? packet.key, uploadId);
    if (created === "slot-full") {
      throw new BitsError("sessionLimit", `${settings.caps.perSlot} sessions open for this client`);
    }
    if (created === "server-full") {
      throw new BitsError("sessionLimit", `${settings.caps.total} sessions open on the server`);
    }
  }
  throw new BitsError("internal", "could not allocate a session ID");
}
