import { describe, expect, it } from "vitest";
import {
  type AccessPolicy,
  identityOf,
  mayOverwrite,
  owns,
  scopeRefusal,
  writeRefusal,
} from "../../../functions/auth/authorization.ts";
import type { Principal } from "../../../functions/auth/types.ts";

const POLICY: AccessPolicy = {
  keyPrefix: "in/",
  principalPrefix: "users/{principal}",
  allowOverwrite: false,
  overwritePrincipals: ["alice", "client-cert:host-17"],
};
const basic: Principal = { name: "alice", mode: "basic", identified: true };
const signed: Principal = { name: "alice", mode: "signed-url", identified: true };
const cert: Principal = { name: "alice", mode: "client-cert", identified: true };
const anonymous: Principal = { name: "anonymous", mode: "anonymous", identified: false };
const start = { creating: true, nowSeconds: 100 };

describe("identityOf: a principal is its name and its mode", () => {
  it("Basic names stay bare; other identified principals are qualified with their mode", () => {
    expect(identityOf(basic, POLICY).key).toBe("alice");
    expect(identityOf(signed, POLICY).key).toBe("signed-url:alice");
    expect(identityOf(cert, POLICY).key).toBe("client-cert:alice");
    expect(identityOf(anonymous, POLICY).key).toBe("anonymous");
  });

  it("a session (or reply) of Basic alice is not a signed or certificate alice's", () => {
    const record = { principal: "alice", auth: "basic" };
    expect(owns(identityOf(basic, POLICY), record)).toBe(true);
    expect(owns(identityOf(signed, POLICY), record)).toBe(false);
    expect(owns(identityOf(cert, POLICY), record)).toBe(false);
    expect(owns(identityOf(cert, POLICY), { principal: "alice", auth: "client-cert" })).toBe(true);
  });

  it("joined modes are Basic alice, both ways, and only for names a Basic user could have", () => {
    const joined = { ...POLICY, joinedModes: ["client-cert" as const] };
    expect(identityOf(cert, joined).key).toBe("alice");
    expect(owns(identityOf(cert, joined), { principal: "alice", auth: "basic" })).toBe(true);
    expect(owns(identityOf(basic, joined), { principal: "alice", auth: "client-cert" })).toBe(true);
    expect(owns(identityOf(signed, joined), { principal: "alice", auth: "basic" })).toBe(false);
    const colon = { ...cert, name: "signed-url:bob" };
    expect(identityOf(colon, joined).key).toBe("client-cert:signed-url:bob");
    expect(identityOf({ ...cert, name: "anonymous" }, joined).key).toBe("client-cert:anonymous");
  });

  it("records from before the mode was recorded compare by name", () => {
    expect(owns(identityOf(signed, POLICY), { principal: "alice" })).toBe(true);
    expect(owns(identityOf(signed, POLICY), { principal: "bob" })).toBe(false);
  });
});

describe("writeRefusal, mayOverwrite, scopeRefusal", () => {
  it("confines each principal to the prefix of its own identity", () => {
    const refusal = (p: Principal, key: string) =>
      writeRefusal(POLICY, p, identityOf(p, POLICY), key, start);
    expect(refusal(basic, "in/users/alice/a")).toBeUndefined();
    expect(refusal(signed, "in/users/alice/a")).toMatch(/prefix/);
    expect(refusal(signed, "in/users/signed-url:alice/a")).toBeUndefined();
    expect(refusal(cert, "in/users/client-cert:alice/a")).toBeUndefined();
  });

  it("refuses a new upload on an expired signed URL, not one that started in time", () => {
    const grant = { path: "/a", prefix: false, expiresAt: 100, keyId: "k" };
    const p: Principal = { ...signed, grant };
    const open = { ...POLICY, principalPrefix: "" };
    expect(writeRefusal(open, p, identityOf(p, open), "in/a", start)).toMatch(/expired/);
    const going = { creating: false, nowSeconds: 100 };
    expect(writeRefusal(open, p, identityOf(p, open), "in/a", going)).toBeUndefined();
  });

  it("the overwrite list names identities", () => {
    expect(mayOverwrite(POLICY, identityOf(basic, POLICY))).toBe(true);
    expect(mayOverwrite(POLICY, identityOf(signed, POLICY))).toBe(false);
    const host = { ...cert, name: "host-17" };
    expect(mayOverwrite(POLICY, identityOf(host, POLICY))).toBe(true);
  });

  it("a prefix scope is segment-aware", () => {
    expect(scopeRefusal({ path: "/a/", prefix: true }, "/a/x")).toBeUndefined();
    expect(scopeRefusal({ path: "/a/", prefix: true }, "/ab/x")).toMatch(/outside/);
    expect(scopeRefusal({ path: "/a/x", prefix: false }, "/a/y")).toMatch(/outside/);
  });
});
