import { describe, expect, it } from "vitest";
import { certificatePrincipal } from "../../../functions/auth/client-cert.ts";

const nameOf = (subject: string) => certificatePrincipal({ subject })?.name;

describe("certificatePrincipal: the subject's CN names the principal", () => {
  it("reads the CN of the RFC 2253 subject the ALB sends", () => {
    expect(nameOf("CN=host-17.corp.example,OU=Fleet,O=Example")).toBe("host-17.corp.example");
    expect(nameOf("O=Example,cn=host-18")).toBe("host-18");
  });

  it("keeps escaped commas and other specials inside the CN", () => {
    expect(nameOf("CN=Doe\\, John\\+1,OU=People,O=Example")).toBe("Doe, John+1");
    expect(nameOf('CN="Doe, Jane",O=Example')).toBe("Doe, Jane");
  });

  it("decodes \\XX hex escapes as UTF-8", () => {
    expect(nameOf("CN=caf\\C3\\A9,O=Example")).toBe("café");
  });

  it("reads OpenSSL's spaced and legacy slash forms", () => {
    expect(nameOf("C = US, O = Example, CN = host-19")).toBe("host-19");
    expect(nameOf("/C=US/O=Example/CN=host-20")).toBe("host-20");
  });

  it("takes the CN of a multi-valued RDN", () => {
    expect(nameOf("CN=host-21+UID=7,O=Example")).toBe("host-21");
  });

  it("falls back to the whole subject when there is no CN", () => {
    expect(nameOf("OU=Fleet,O=Example")).toBe("OU=Fleet,O=Example");
  });

  it("an empty subject names nobody", () => {
    expect(certificatePrincipal({ subject: "  " })).toBeUndefined();
  });

  it("is an identified client-cert principal carrying the certificate for the audit log", () => {
    const cert = { subject: "CN=host-22,O=Example", issuer: "CN=Fleet CA", serial: "0a1b" };
    expect(certificatePrincipal(cert)).toEqual({
      name: "host-22",
      mode: "client-cert",
      identified: true,
      certificate: cert,
    });
  });
});
