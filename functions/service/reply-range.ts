/**
 * The reply download's HTTP semantics ([MC-BUP] 3.5.5, the BITS download requirements): `GET`
 * and `HEAD`, one byte range at a time answered with 206 and `Content-Range`, `Content-Length`
 * on every response, `Last-Modified`, `ETag` and `Accept-Ranges: bytes`. Pure: no I/O.
 *
 * Ranges follow RFC 9110 14.1-14.4 and 13.1.5:
 * - `bytes=a-b`, `bytes=a-` and the suffix `bytes=-n`; the unit is case-insensitive, blanks
 *   around list elements and empty elements are allowed.
 * - A header that does not parse, names another unit, or asks for several ranges is ignored:
 *   the whole object is served (RFC 9110 14.2 lets a server ignore Range). BITS asks for one.
 * - A range that parses but cannot be served is 416, its Content-Range `bytes *` slash the size:
 *   a first byte at or past the end, `b < a`, or the suffix `-0`.
 * - An end past the last byte is clamped to it; a suffix longer than the object is the whole
 *   object (as a 206 of all its bytes).
 * - A zero-byte object has no bytes to range over: `bytes=a-…` is 416, but a non-zero suffix is
 *   satisfiable there (RFC 9110 14.1.1: "the only satisfiable form of range"), and with no
 *   byte to name in a Content-Range it is answered as the whole (empty) object, 200.
 */

/** What a Range header asks for. */
export type ByteRange =
  | { readonly kind: "full" }
  | { readonly kind: "partial"; readonly start: number; readonly end: number }
  | { readonly kind: "unsatisfiable" };

/** The object a download serves: its size and validators (an ObjectStat will do). */
export interface Representation {
  readonly size: number;
  /** A strong ETag, quoted, as S3 gives it. */
  readonly etag: string;
  readonly lastModified: Date;
}

export interface DownloadAnswer {
  readonly status: 200 | 206 | 416;
  readonly headers: Record<string, string>;
  /** The bytes to send, inclusive; none when `end < start` (a 416, or a zero-byte object). */
  readonly start: number;
  readonly end: number;
}

const FULL: ByteRange = { kind: "full" };
const UNSATISFIABLE: ByteRange = { kind: "unsatisfiable" };

const INT_RANGE = /^(\d+)-(\d*)$/;
const SUFFIX_RANGE = /^-(\d+)$/;

/** Parses a Range header against an object of `size` bytes. */
export function parseRange(header: string | undefined, size: number): ByteRange {
  if (header === undefined) return FULL;
  const equals = header.indexOf("=");
  if (equals < 0 || header.slice(0, equals).toLowerCase() !== "bytes") return FULL;
  const specs = header
    .slice(equals + 1)
    .split(",")
    .map((spec) => spec.trim())
    .filter((spec) => spec !== "");
  const spec = specs[0];
  if (spec === undefined || specs.length > 1) return FULL;

  const suffix = SUFFIX_RANGE.exec(spec);
  if (suffix) {
    const length = Number(suffix[1]);
    if (length === 0) return UNSATISFIABLE;
    if (size === 0) return FULL;
    return { kind: "partial", start: Math.max(0, size - length), end: size - 1 };
  }
  const range = INT_RANGE.exec(spec);
  if (!range) return FULL;
  const start = Number(range[1]);
  const end = range[2] === "" ? Number.POSITIVE_INFINITY : Number(range[2]);
  if (end < start || start >= size) return UNSATISFIABLE;
  return { kind: "partial", start, end: Math.min(end, size - 1) };
}

// IMF-fixdate, and the two obsolete forms a recipient must still accept (RFC 9110 5.6.7).
const HTTP_DATE = [
  /^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT$/,
  /^(Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday), \d{2}-[A-Z][a-z]{2}-\d{2} \d{2}:\d{2}:\d{2} GMT$/,
  /^(Mon|Tue|Wed|Thu|Fri|Sat|Sun) [A-Z][a-z]{2} [ \d]\d \d{2}:\d{2}:\d{2} \d{4}$/,
];

/**
 * Whether an If-Range validator still names this object (RFC 9110 13.1.5): an entity tag that
 * matches the ETag strongly (a weak `W/` tag never does), or an HTTP-date equal to the
 * Last-Modified date to the second. Anything else is false.
 */
export function ifRangeHolds(header: string, object: Representation): boolean {
  const value = header.trim();
  if (value.startsWith('"') || value.startsWith("W/")) return value === object.etag;
  if (!HTTP_DATE.some((form) => form.test(value))) return false;
  const asctime = !value.endsWith("GMT");
  const when = Date.parse(asctime ? `${value} GMT` : value);
  return (
    Number.isFinite(when) &&
    Math.floor(when / 1000) === Math.floor(object.lastModified.getTime() / 1000)
  );
}

/**
 * The status, headers and byte span of a GET (or HEAD: the same headers, no body) of `object`
 * for `range`. With `ifRange` given (the request's If-Range) a range is served only while it
 * holds; otherwise the whole object is (RFC 9110 13.1.5).
 */
export function downloadHeaders(
  object: Representation,
  range: ByteRange,
  ifRange?: string,
): DownloadAnswer {
  const { size } = object;
  const effective = ifRange !== undefined && !ifRangeHolds(ifRange, object) ? FULL : range;
  const common = {
    "Accept-Ranges": "bytes",
    ETag: object.etag,
    "Last-Modified": object.lastModified.toUTCString(),
  };
  switch (effective.kind) {
    case "unsatisfiable":
      return {
        status: 416,
        headers: { ...common, "Content-Length": "0", "Content-Range": `bytes */${size}` },
        start: 0,
        end: -1,
      };
    case "partial": {
      const { start, end } = effective;
      return {
        status: 206,
        headers: {
          ...common,
          "Content-Type": "application/octet-stream",
          "Content-Length": String(end - start + 1),
          "Content-Range": `bytes ${start}-${end}/${size}`,
        },
        start,
        end,
      };
    }
    case "full":
      return {
        status: 200,
        headers: {
          ...common,
          "Content-Type": "application/octet-stream",
          "Content-Length": String(size),
        },
        start: 0,
        end: size - 1,
      };
  }
}
