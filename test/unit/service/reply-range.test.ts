import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  type ByteRange,
  downloadHeaders,
  ifRangeHolds,
  parseRange,
} from "../../../functions/service/reply-range.ts";

const object = {
  size: 1000,
  etag: '"0123456789abcdef0123456789abcdef"',
  lastModified: new Date("2026-03-04T05:06:07Z"),
};
const full: ByteRange = { kind: "full" };
const unsatisfiable: ByteRange = { kind: "unsatisfiable" };
const partial = (start: number, end: number): ByteRange => ({ kind: "partial", start, end });

describe("parseRange", () => {
  it.each([
    [undefined, full],
    ["bytes=0-0", partial(0, 0)],
    ["bytes=0-999", partial(0, 999)],
    ["bytes=10-99", partial(10, 99)],
    ["bytes=500-", partial(500, 999)],
    ["bytes=999-", partial(999, 999)],
    ["bytes=500-5000", partial(500, 999)], // end clamped
    ["bytes=0-99999999999999999999", partial(0, 999)],
    ["bytes=-1", partial(999, 999)],
    ["bytes=-100", partial(900, 999)],
    ["bytes=-1000", partial(0, 999)],
    ["bytes=-5000", partial(0, 999)], // a suffix longer than the object is all of it
    ["BYTES=1-2", partial(1, 2)], // the unit is case-insensitive
    ["bytes= 1-2 ", partial(1, 2)],
    ["bytes=1-2,", partial(1, 2)], // empty list elements are allowed
    ["bytes=, 1-2", partial(1, 2)],
  ])("%j → %j", (header, expected) => {
    expect(parseRange(header, 1000)).toEqual(expected);
  });

  it.each([
    "bytes=1000-",
    "bytes=1000-1000",
    "bytes=5000-6000",
    "bytes=5-4", // last before first: invalid, RFC 9110 14.1.1
    "bytes=-0",
  ])("%j is unsatisfiable", (header) => {
    expect(parseRange(header, 1000)).toEqual(unsatisfiable);
  });

  it.each([
    "",
    "bytes",
    "bytes=",
    "bytes=,",
    "bytes=-",
    "bytes=a-b",
    "bytes=1-2-3",
    "bytes=1 -2",
    "bytes=+1-2",
    "bytes=0x1-2",
    "bytes=1.5-2",
    "bytes=-1-2",
    "items=0-1", // another unit
    "bytes 0-1",
    "bytes=0-1,5-6", // several ranges: ignored, not served as multipart/byteranges
    "bytes=0-1, 2000-3000",
  ])("%j is ignored: the whole object", (header) => {
    expect(parseRange(header, 1000)).toEqual(full);
  });

  it("a zero-byte object: byte positions are unsatisfiable, a suffix is the whole", () => {
    expect(parseRange("bytes=0-0", 0)).toEqual(unsatisfiable);
    expect(parseRange("bytes=0-", 0)).toEqual(unsatisfiable);
    expect(parseRange("bytes=-0", 0)).toEqual(unsatisfiable);
    expect(parseRange("bytes=-5", 0)).toEqual(full);
    expect(parseRange(undefined, 0)).toEqual(full);
  });

  it("property: a partial range always lies inside the object", () => {
    fc.assert(
      fc.property(
        fc.nat(10_000),
        fc.oneof(
          fc
            .tuple(fc.nat(20_000), fc.option(fc.nat(20_000)))
            .map(([a, b]) => `bytes=${a}-${b ?? ""}`),
          fc.nat(20_000).map((n) => `bytes=-${n}`),
          fc.string(),
        ),
        (size, header) => {
          const range = parseRange(header, size);
          if (range.kind === "partial") {
            expect(range.start).toBeGreaterThanOrEqual(0);
            expect(range.start).toBeLessThanOrEqual(range.end);
            expect(range.end).toBeLessThan(size);
          }
        },
      ),
    );
  });

  it("property: bytes=a-b within the object is exactly [a, b]", () => {
    fc.assert(
      fc.property(
        fc
          .tuple(fc.integer({ min: 1, max: 1e12 }), fc.nat(), fc.nat())
          .map(([size, x, y]) => [size, x % size, y % size] as const),
        ([size, x, y]) => {
          const [a, b] = x <= y ? [x, y] : [y, x];
          expect(parseRange(`bytes=${a}-${b}`, size)).toEqual(partial(a, b));
          expect(parseRange(`bytes=${a}-`, size)).toEqual(partial(a, size - 1));
          expect(parseRange(`bytes=-${size - a}`, size)).toEqual(partial(a, size - 1));
        },
      ),
    );
  });
});

describe("ifRangeHolds", () => {
  it.each([
    [object.etag, true],
    [` ${object.etag} `, true],
    ['"something else"', false],
    [`W/${object.etag}`, false], // weak tags never match for If-Range
    ["Wed, 04 Mar 2026 05:06:07 GMT", true],
    ["Wed, 04 Mar 2026 05:06:08 GMT", false],
    ["Wednesday, 04-Mar-26 05:06:07 GMT", true], // RFC 850
    ["Wed Mar  4 05:06:07 2026", true], // asctime
    ["2026-03-04T05:06:07Z", false], // not an HTTP-date
    ["1", false],
    ["", false],
  ])("%j → %s", (header, expected) => {
    expect(ifRangeHolds(header, object)).toBe(expected);
  });
});

describe("downloadHeaders", () => {
  const validators = {
    "Accept-Ranges": "bytes",
    ETag: object.etag,
    "Last-Modified": "Wed, 04 Mar 2026 05:06:07 GMT",
  };

  it("the whole object: 200 with its length, type and validators", () => {
    expect(downloadHeaders(object, full)).toEqual({
      status: 200,
      headers: {
        ...validators,
        "Content-Type": "application/octet-stream",
        "Content-Length": "1000",
      },
      start: 0,
      end: 999,
    });
  });

  it("a range: 206 with Content-Range and the range's length", () => {
    expect(downloadHeaders(object, partial(10, 99))).toEqual({
      status: 206,
      headers: {
        ...validators,
        "Content-Type": "application/octet-stream",
        "Content-Length": "90",
        "Content-Range": "bytes 10-99/1000",
      },
      start: 10,
      end: 99,
    });
  });

  it("an unsatisfiable range: 416 with bytes */size and no body", () => {
    const answer = downloadHeaders(object, unsatisfiable);
    expect(answer.status).toBe(416);
    expect(answer.headers).toEqual({
      ...validators,
      "Content-Length": "0",
      "Content-Range": "bytes */1000",
    });
    expect(answer.end).toBeLessThan(answer.start);
  });

  it("a zero-byte object: 200 with Content-Length 0 and nothing to send", () => {
    const empty = { ...object, size: 0 };
    const answer = downloadHeaders(empty, parseRange("bytes=-10", 0));
    expect(answer).toMatchObject({ status: 200, start: 0, end: -1 });
    expect(answer.headers["Content-Length"]).toBe("0");
    const ranged = downloadHeaders(empty, parseRange("bytes=0-", 0));
    expect(ranged.status).toBe(416);
    expect(ranged.headers["Content-Range"]).toBe("bytes */0");
  });

  it("If-Range that still holds keeps the range; one that does not serves the whole", () => {
    const range = partial(10, 19);
    expect(downloadHeaders(object, range, object.etag).status).toBe(206);
    expect(downloadHeaders(object, range, validators["Last-Modified"]).status).toBe(206);
    expect(downloadHeaders(object, range, '"old"')).toMatchObject({ status: 200, end: 999 });
    expect(downloadHeaders(object, range, "Thu, 01 Jan 2026 00:00:00 GMT").status).toBe(200);
    // A stale If-Range also turns an unsatisfiable range into the whole object.
    expect(downloadHeaders(object, unsatisfiable, '"old"').status).toBe(200);
    expect(downloadHeaders(object, unsatisfiable, object.etag).status).toBe(416);
  });

  it("property: Content-Length always equals the bytes sent", () => {
    fc.assert(
      fc.property(fc.nat(100_000), fc.string(), (size, header) => {
        const answer = downloadHeaders({ ...object, size }, parseRange(`bytes=${header}`, size));
        expect(Number(answer.headers["Content-Length"])).toBe(
          Math.max(0, answer.end - answer.start + 1),
        );
        if (answer.status === 206) {
          expect(answer.headers["Content-Range"]).toBe(
            `bytes ${answer.start}-${answer.end}/${size}`,
          );
        }
      }),
    );
  });
});
