import { describe, expect, it } from "vitest";
import { MiB } from "../../functions/bits/constants.ts";
import { createSession, endSession, fragment } from "../support/calls.ts";
import { sha256 } from "../support/checks.ts";
import { bucketKeys, realService, STAGING_PREFIX, uploadIsGone } from "../support/storage.ts";
import { randomBytes } from "../support/windows-client.ts";

const settings = {
  limits: { maxFragmentBytes: 2 * MiB, maxUploadBytes: 1 << 30, partSize: 5 * MiB },
};
const PATH = "/lost/file.bin";

/** Sends [from, to) in fragments of at most 2 MiB; every answer must be 200. */
async function send(
  env: Awaited<ReturnType<typeof realService>>,
  id: string,
  data: Uint8Array,
  from: number,
  to: number,
) {
  for (let first = from; first < to; first += 2 * MiB) {
    const response = await fragment(
      env.service,
      id,
      data,
      first,
      Math.min(to, first + 2 * MiB) - 1,
      PATH,
    );
    expect(response.status).toBe(200);
  }
}

describe("storage removed behind the server's back (lifecycle rules, operators)", () => {
  it("lost staged bytes: an instance that did not stage them rewinds to the recorded parts (416), and the file still ends exact", async () => {
    const env = await realService(settings, { warm: false });
    const data = randomBytes(11 * MiB + 5, 21);
    const id = await createSession(env.service, PATH);
    await send(env, id, data, 0, 6 * MiB); // part 1 recorded, 1 MiB staged
    const staged = (await bucketKeys(env.bucket)).filter((key) => key.startsWith(STAGING_PREFIX));
    expect(staged.length).toBeGreaterThan(0);
    await env.objects.delete(staged);

    // The fragment that completes part 2 needs the staged bytes from 5 MiB on.
    await send(env, id, data, 6 * MiB, 8 * MiB);
    const response = await fragment(env.service, id, data, 8 * MiB, 10 * MiB - 1, PATH);
    expect(response.status).toBe(416);
    expect(response.headers["BITS-Received-Content-Range"]).toBe(String(5 * MiB));
    expect(response.headers["BITS-Error-Code"]).toBeUndefined();

    await send(env, id, data, 5 * MiB, data.length);
    expect((await endSession(env.service, "Close-Session", id, PATH)).status).toBe(200);
    const object = await env.objects.get("lost/file.bin");
    expect(object && sha256(object)).toBe(sha256(data));
  });

  it("an aborted multipart upload: the session is discarded with BG_E_SESSION_NOT_FOUND so the client starts over", async () => {
    const env = await realService(settings);
    const data = randomBytes(11 * MiB, 22);
    const id = await createSession(env.service, PATH);
    await send(env, id, data, 0, 6 * MiB);
    const record = await env.sessions.get(id);
    await env.objects.abortUpload("lost/file.bin", record?.uploadId ?? "");

    await send(env, id, data, 6 * MiB, 8 * MiB);
    const response = await fragment(env.service, id, data, 8 * MiB, 10 * MiB - 1, PATH);
    expect(response.status).toBe(500);
    expect(response.headers["BITS-Error-Code"]).toBe("0x8020001F");
    expect(await bucketKeys(env.bucket)).toEqual([]);

    // Starting over, as Windows does ([MC-BUP] 3.1.5.2.1), stores the file exactly.
    const again = await createSession(env.service, PATH);
    await send(env, again, data, 0, data.length);
    expect((await endSession(env.service, "Close-Session", again, PATH)).status).toBe(200);
    const object = await env.objects.get("lost/file.bin");
    expect(object && sha256(object)).toBe(sha256(data));
    const finished = await env.sessions.get(again);
    expect(await uploadIsGone(env.bucket, "lost/file.bin", finished?.uploadId ?? "")).toBe(true);
  });
});
