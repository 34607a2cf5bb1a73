import { createHash } from "node:crypto";

export function md5(bytes: Uint8Array): Buffer {
  return createHash("md5").update(bytes).digest();
}

const MD5_ETAG = /^"?([0-9a-f]{32})"?$/i;

/**
 * The ETag S3 gives a completed multipart object: the MD5 of the parts' binary MD5s, then "-"
 * and the part count. Only computable when the part ETags are MD5s (not under SSE-KMS).
 */
export function multipartEtag(partEtags: readonly string[]): string | undefined {
  const digests: Buffer[] = [];
  for (const etag of partEtags) {
    const match = MD5_ETAG.exec(etag);
    if (!match?.[1]) return undefined;
    digests.push(Buffer.from(match[1], "hex"));
  }
  return `"${md5(Buffer.concat(digests)).toString("hex")}-${partEtags.length}"`;
}

export function sameEtag(a: string | undefined, b: string | undefined): boolean {
  return a !== undefined && b !== undefined && a.replaceAll('"', "") === b.replaceAll('"', "");
}
