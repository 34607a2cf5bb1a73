import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FileSecret } from "../../functions/adapters/secrets/file-secret.ts";
import { SsmSecret } from "../../functions/adapters/secrets/ssm-secret.ts";
import { type SsmStandIn, standInSsm, startSsmStandIn } from "../support/ssm-stand-in.ts";
import { type SecretFixture, secretTextContract } from "./secret-text.contract.ts";

async function files(): Promise<SecretFixture> {
  const dir = await mkdtemp(join(tmpdir(), "secret-text-"));
  const nameOf = (id: string) => join(dir, id);
  return {
    nameOf,
    set: (id, text) => writeFile(nameOf(id), text, "utf8"),
    secret: (id) => new FileSecret(nameOf(id)),
    close: () => rm(dir, { recursive: true, force: true }),
  };
}

async function ssm(nameOf: (id: string) => string): Promise<SecretFixture> {
  const standIn = await startSsmStandIn();
  const client = standInSsm(standIn.endpoint);
  return {
    nameOf,
    set: async (id, text) => standIn.put(nameOf(id), text),
    secret: (id) => new SsmSecret(client, nameOf(id)),
    close: async () => {
      client.destroy();
      await standIn.close();
    },
  };
}

secretTextContract("FileSecret", files);
secretTextContract("SsmSecret, SecureString parameter", () => ssm((id) => `/bits/${id}`));
secretTextContract("SsmSecret, Secrets Manager reference", () =>
  ssm((id) => `/aws/reference/secretsmanager/${id}`),
);

describe("SsmSecret over the stand-in", () => {
  let standIn: SsmStandIn;
  let client: ReturnType<typeof standInSsm>;
  beforeAll(async () => {
    standIn = await startSsmStandIn();
    client = standInSsm(standIn.endpoint);
  });
  afterAll(async () => {
    client.destroy();
    await standIn.close();
  });

  it("asks over HTTP for the decrypted value", async () => {
    standIn.put("/bits/key", "k1");
    const before = standIn.requests;
    expect(await new SsmSecret(client, "/bits/key").current()).toBe("k1");
    expect(standIn.requests).toBe(before + 1);
    expect(standIn.lastBody).toEqual({ Name: "/bits/key", WithDecryption: true });
  });

  it("says access was denied, naming the parameter and not the SDK's error", async () => {
    standIn.put("/bits/locked", "top-secret");
    standIn.deny("/bits/locked");
    const error = await new SsmSecret(client, "/bits/locked").current().catch((e: unknown) => e);
    expect((error as Error).message).toBe(
      "SSM parameter /bits/locked cannot be read: access denied (AccessDeniedException)",
    );
  });
});
