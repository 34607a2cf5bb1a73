import { MAX_KEY_BYTES } from "./constants.ts";
import { type BitsError, invalidArg } from "./errors.ts";

export interface KeyRules {
  /** Normalised by `normalizePrefix`: empty, or segments ending in `/`. */
  readonly keyPrefix: string;
  /** Keys under this prefix belong to the server (staged fragments) and are refused. */
  readonly reservedPrefix: string;
}

// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what it finds
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;
/**
 * Characters that make a key display differently from what it is: the bidirectional embedding,
 * override and isolate controls (the "Trojan Source" characters) and the invisible direction
 * marks. A key is shown to people in consoles and logs, so they are refused (docs/security.md).
 */
const BIDI = /[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/;

/**
 * The destination a request path names, as a normalised path (`/a/b.zip`). Each segment is
 * percent-decoded exactly once and normalised to Unicode NFC, so two spellings of one name are
 * one key. A segment that is empty, `.` or `..`, that decodes to a separator, or that holds a
 * control or bidirectional-control character is refused, as is a path naming a directory
 * ([MC-BUP] 2.2.1.2: "destination URL is a directory" is E_INVALIDARG).
 */
export function destinationPath(path: string): string {
  if (!path.startsWith("/") || path.endsWith("/")) {
    throw invalidArg("destination is a directory");
  }
  const decoded = path
    .slice(1)
    .split("/")
    .map((segment) => {
      let text: string;
      try {
        text = decodeURIComponent(segment);
      } catch {
        throw invalidArg("bad percent-encoding in path");
      }
      return checkSegment(text.normalize("NFC"));
    });
  return `/${decoded.join("/")}`;
}

/**
 * A request path decoded once: the canonical destination (`destinationPath`), or why the path
 * names none. Every decision about a request (upload paths, notification rules, prefixes,
 * signed-URL scope, the key, the audit line) is made on `path` (docs/security.md, "One path").
 */
export type Destination =
  | { readonly ok: true; readonly path: string }
  | { readonly ok: false; readonly error: BitsError };

export function parseDestination(path: string): Destination {
  try {
    return { ok: true, path: destinationPath(path) };
  } catch (error) {
    return { ok: false, error: error as BitsError };
  }
}

/**
 * The canonical destination as a URL path: each segment percent-encoded the one way
 * `encodeURIComponent` does, so two spellings of one name give one URL.
 */
export function destinationUrlPath(destination: string): string {
  return destination.split("/").map(encodeURIComponent).join("/");
}

/** True when `text` can be one segment of a destination path (see `destinationPath`). */
export function isSegment(text: string): boolean {
  try {
    checkSegment(text);
    return true;
  } catch {
    return false;
  }
}

function checkSegment(text: string): string {
  if (text === "" || text === "." || text === "..") throw invalidArg("bad path segment");
  if (text.includes("/") || text.includes("\\")) throw invalidArg("separator inside segment");
  if (CONTROL.test(text)) throw invalidArg("control character in path");
  if (BIDI.test(text)) throw invalidArg("bidirectional control character in path");
  return text;
}

/** Maps the request path to the S3 object key under `prefix` (see `destinationPath`). */
export function objectKeyFor(path: string, prefix: string, reserved: string): string {
  return keyOf(parseDestination(path), prefix, reserved);
}

/** The S3 object key of a decoded destination under `prefix`; throws when there is none. */
export function keyOf(destination: Destination, prefix: string, reserved: string): string {
  if (!destination.ok) throw destination.error;
  const key = prefix + destination.path.slice(1);
  if (reserved !== "" && key.startsWith(reserved)) throw invalidArg("reserved key prefix");
  if (new TextEncoder().encode(key).length > MAX_KEY_BYTES) throw invalidArg("key too long");
  return key;
}

/**
 * A configured key prefix as whole path segments: `uploads`, `/uploads/` and `uploads/` all
 * become `uploads/`, so a prefix can never run into a neighbour (`uploads` must not allow
 * `uploads-private/x`). Empty stays empty. Undefined when a segment is not a valid one.
 */
export function normalizePrefix(text: string): string | undefined {
  const trimmed = text.trim().replace(/^\/+|\/+$/g, "");
  if (trimmed === "") return "";
  try {
    return `${trimmed
      .split("/")
      .map((segment) => checkSegment(segment.normalize("NFC")))
      .join("/")}/`;
  } catch {
    return undefined;
  }
}

/**
 * The key prefix a principal is confined to: `template` (`{principal}`, `tenants/{principal}`)
 * with the principal's name put in, as whole segments under `keyPrefix`. Undefined when the
 * name cannot be one path segment (it holds `/`, a control character, or is `.`/`..`): such a
 * principal may write nothing.
 */
export function confinedPrefix(
  keyPrefix: string,
  template: string,
  principal: string,
): string | undefined {
  try {
    checkSegment(principal);
  } catch {
    return undefined;
  }
  if (principal.normalize("NFC") !== principal) return undefined;
  const joined = normalizePrefix(template.replaceAll("{principal}", principal));
  return joined === undefined ? undefined : keyPrefix + joined;
}
