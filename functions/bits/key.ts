import { MAX_KEY_BYTES } from "./constants.ts";
import { invalidArg } from "./errors.ts";

export interface KeyRules {
  readonly keyPrefix: string;
  /** Keys under this prefix belong to the server (staged fragments) and are refused. */
  readonly reservedPrefix: string;
}

// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what it finds
const CONTROL = /[\u0000-\u001f\u007f]/;

/**
 * Maps the request path to the S3 object key under `prefix`. Each segment is percent-decoded
 * exactly once; a segment that is empty, `.` or `..`, that decodes to a separator, or that holds
 * a control character is refused, as is a path naming a directory (bits-protocol.md 9.2;
 * [MC-BUP] 2.2.1.2: "destination URL is a directory" is E_INVALIDARG).
 */
export function objectKeyFor(path: string, prefix: string, reserved: string): string {
  if (!path.startsWith("/") || path.endsWith("/")) {
    throw invalidArg("destination is a directory");
  }
  const segments = path.slice(1).split("/");
  const decoded = segments.map((segment) => {
    let text: string;
    try {
      text = decodeURIComponent(segment);
    } catch {
      throw invalidArg("bad percent-encoding in path");
    }
    if (text === "" || text === "." || text === "..") throw invalidArg("bad path segment");
    if (text.includes("/") || text.includes("\\")) throw invalidArg("separator inside segment");
    if (CONTROL.test(text)) throw invalidArg("control character in path");
    return text;
  });
  const key = prefix + decoded.join("/");
  if (reserved !== "" && key.startsWith(reserved)) throw invalidArg("reserved key prefix");
  if (new TextEncoder().encode(key).length > MAX_KEY_BYTES) throw invalidArg("key too long");
  return key;
}
