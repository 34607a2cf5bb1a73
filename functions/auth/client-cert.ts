import type { Principal } from "./types.ts";

/** A client certificate as a front door that verified it reports it (`AuthRequest`). */
export interface ClientCertificate {
  readonly subject: string;
  readonly issuer?: string;
  readonly serial?: string;
}

/**
 * The principal a verified client certificate names (docs/security.md, "Client certificates"):
 * the subject's common name, so a machine keeps its name when its certificate is renewed with
 * another OU; the whole subject when it has no CN. Undefined for an empty subject.
 */
export function certificatePrincipal(cert: ClientCertificate): Principal | undefined {
  const subject = cert.subject.trim();
  if (subject === "") return undefined;
  const name = commonName(subject) || subject;
  return { name, mode: "client-cert", identified: true, certificate: cert };
}

/**
 * The CN of a distinguished name as RFC 2253 writes it (`CN=host,OU=Fleet,O=Example`, what the
 * ALB sends in X-Amzn-Mtls-Clientcert-Subject), OpenSSL's `CN = host, O = Example`, or its
 * legacy `/O=Example/CN=host`. RFC 2253 puts the most specific RDN first, the legacy form last.
 */
function commonName(subject: string): string | undefined {
  const legacy = subject.startsWith("/");
  const rdns = splitUnescaped(legacy ? subject.slice(1) : subject, legacy ? "/" : ",+");
  if (legacy) rdns.reverse();
  for (const rdn of rdns) {
    const equals = rdn.indexOf("=");
    if (equals < 0 || rdn.slice(0, equals).trim().toUpperCase() !== "CN") continue;
    return unescapeValue(rdn.slice(equals + 1).trim());
  }
  return undefined;
}

/** Splits at separators that are neither escaped with `\` nor inside double quotes. */
function splitUnescaped(text: string, separators: string): string[] {
  const parts: string[] = [];
  let current = "";
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const char = text[i] ?? "";
    if (char === "\\" && i + 1 < text.length) {
      current += char + (text[++i] ?? "");
    } else if (char === '"') {
      quoted = !quoted;
      current += char;
    } else if (!quoted && separators.includes(char)) {
      parts.push(current);
      current = "";
    } else {
      current += char;
    }
  }
  parts.push(current);
  return parts;
}

/** Removes quotes and `\` escapes; `\XX` hex pairs are UTF-8 bytes (RFC 2253 section 2.4). */
function unescapeValue(value: string): string {
  const text =
    value.length >= 2 && value.startsWith('"') && value.endsWith('"') ? value.slice(1, -1) : value;
  const bytes: number[] = [];
  const encoder = new TextEncoder();
  for (let i = 0; i < text.length; i++) {
    const char = text[i] ?? "";
    const hex = char === "\\" ? /^[0-9a-f]{2}/i.exec(text.slice(i + 1, i + 3)) : null;
    if (hex) {
      bytes.push(Number.parseInt(hex[0], 16));
      i += 2;
    } else if (char === "\\" && i + 1 < text.length) {
      bytes.push(...encoder.encode(text[++i]));
    } else {
      const point = text.codePointAt(i) ?? 0;
      const whole = String.fromCodePoint(point);
      bytes.push(...encoder.encode(whole));
      i += whole.length - 1;
    }
  }
  return new TextDecoder().decode(new Uint8Array(bytes));
}
