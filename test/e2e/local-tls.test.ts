import { mkdtempSync, rmSync } from "node:fs";
import { Agent, request } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startLocalServer } from "../../functions/adapters/node/local-server.ts";
import { createAuthenticator } from "../../functions/auth/authenticator.ts";
import { authorizeRead } from "../../functions/service/upload-service.ts";
import { makeCertificates } from "../support/certificates.ts";
import { sha256 } from "../support/checks.ts";
import { realService } from "../support/storage.ts";
import type { Transport } from "../support/transports.ts";
import { bitsUpload, randomBytes } from "../support/windows-client.ts";

function httpsTransport(baseUrl: string, agent: Agent): Transport {
  return (req) =>
    new Promise((resolve, reject) => {
      const out = request(
        new URL(req.path, baseUrl),
        {
          method: req.method,
          agent,
          headers: { ...req.headers, "Content-Length": String(req.body.length) },
        },
        (res) => {
          res.resume();
          res.on("end", () => {
            const headers = new Map<string, string>();
            for (const [name, value] of Object.entries(res.headers)) {
              if (value !== undefined) headers.set(name, String(value));
            }
            resolve({ status: res.statusCode ?? 0, headers });
          });
        },
      );
      out.on("error", reject);
      out.end(req.body);
    });
}

describe("the local server over TLS with client certificates (BITS_TLS_*, client-cert)", () => {
  let dir: string;
  let certificates: ReturnType<typeof makeCertificates>;
  let env: Awaited<ReturnType<typeof realService>>;
  let server: Awaited<ReturnType<typeof startLocalServer>>;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "bits-tls-"));
    certificates = makeCertificates(dir);
    const authenticator = createAuthenticator(["client-cert"], { realm: "x" });
    env = await realService({}, { authenticator });
    server = await startLocalServer(
      {
        service: env.service,
        objects: env.objects,
        authorizeRead: (request) => authorizeRead(env.context, authenticator, request),
        maxBodyBytes: 1024 * 1024,
        tls: {
          ...certificates.server,
          ca: certificates.ca,
          requestCert: true,
          rejectUnauthorized: false,
        },
      },
      0,
    );
  });

  afterAll(async () => {
    await server?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("a client presenting a certificate from the trusted CA uploads as its common name", async () => {
    const agent = new Agent({ ca: certificates.ca, ...certificates.client, keepAlive: true });
    const data = randomBytes(2 * 1024 * 1024 + 3, 30);
    const outcome = await bitsUpload(httpsTransport(server.url, agent), "/fleet/a.bin", data, {
      initialFragment: 256 * 1024,
      maxFragment: 1024 * 1024,
    });
    agent.destroy();
    const stored = await env.objects.get("fleet/a.bin");
    expect(stored && sha256(stored)).toBe(sha256(data));
    expect((await env.sessions.get(outcome.sessionIds[0] ?? ""))?.principal).toBe(
      "host-17.corp.example",
    );
  });

  it("a client without a certificate is refused with 403, and a forged header changes nothing", async () => {
    const agent = new Agent({ ca: certificates.ca });
    const response = await httpsTransport(
      server.url,
      agent,
    )({
      method: "BITS_POST",
      path: "/fleet/b.bin",
      headers: {
        "BITS-Packet-Type": "Ping",
        "X-Amzn-Mtls-Clientcert-Subject": "CN=host-17.corp.example",
      },
      body: new Uint8Array(0),
    });
    agent.destroy();
    expect(response.status).toBe(403);
    expect(response.headers.get("bits-error-code")).toBe("0x80070005");
  });
});
