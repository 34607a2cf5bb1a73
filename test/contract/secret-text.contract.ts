import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { SecretText } from "../../functions/ports/secrets.ts";

/** Where one implementation keeps its secrets, seen from the test's side. */
export interface SecretFixture {
  /** The name the implementation knows the secret `id` by (a path, a parameter name). */
  nameOf(id: string): string;
  /** Creates or replaces the secret `id`. */
  set(id: string, text: string): Promise<void>;
  /** The implementation under test, reading the secret `id`. */
  secret(id: string): SecretText;
  close(): Promise<void>;
}

// Shaped like the real secrets: an htpasswd line and a signing key, non-ASCII included.
const HTPASSWD = "alice:$2y$10$abcdefghijklmnopqrstuv0123456789ABCDEFGHIJKLMNOPQRSTU\nbörje:x\n";
const ROTATED = "alice:$2y$10$ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210zyxwvutsrqponmlk\n";

/** The SecretText port's contract: every implementation passes the same cases. */
export function secretTextContract(name: string, makeFixture: () => Promise<SecretFixture>) {
  describe(`SecretText contract: ${name}`, () => {
    let fixture: SecretFixture;
    beforeAll(async () => {
      fixture = await makeFixture();
    });
    afterAll(() => fixture?.close());

    const newId = () => `secret-${randomUUID().slice(0, 8)}`;

    it("reads the current value, byte for byte", async () => {
      const id = newId();
      await fixture.set(id, HTPASSWD);
      expect(await fixture.secret(id).current()).toBe(HTPASSWD);
    });

    it("sees a changed value on the next call", async () => {
      const id = newId();
      const secret = fixture.secret(id);
      await fixture.set(id, HTPASSWD);
      expect(await secret.current()).toBe(HTPASSWD);
      await fixture.set(id, ROTATED);
      expect(await secret.current()).toBe(ROTATED);
    });

    it("names where it comes from, not what it holds", async () => {
      const id = newId();
      await fixture.set(id, HTPASSWD);
      const secret = fixture.secret(id);
      expect(secret.source).toContain(fixture.nameOf(id));
      expect(secret.source).not.toContain("alice");
    });

    it("rejects for a missing secret, naming it and no secret value", async () => {
      const present = newId();
      await fixture.set(present, HTPASSWD);
      const missing = newId();
      const error = await fixture
        .secret(missing)
        .current()
        .then(
          () => undefined,
          (e: unknown) => e,
        );
      expect(error).toBeInstanceOf(Error);
      const message = (error as Error).message;
      expect(message).toContain(fixture.nameOf(missing));
      for (const line of HTPASSWD.split("\n").filter(Boolean)) {
        expect(message).not.toContain(line);
      }
    });
  });
}
