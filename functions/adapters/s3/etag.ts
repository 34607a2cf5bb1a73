import { createHash } from "node:crypto";

export function md5(bytes: Uint8Array): Buffer {
  return createHash("md5").update(bytes).digest();
}

export function sameEtag(a: string | undefined, b: string | undefined): boolean {
  return a !== undefined && b !== undefined && a.replaceAll('"', "") === b.replaceAll('"', "");
}
