import { describe, expect, it } from "vitest";
import { isRelativeTarget, notificationTarget } from "../../functions/bits/notification.ts";
import { loadConfig } from "../../functions/config.ts";

const BASE = { BITS_BUCKET: "b", BITS_TABLE: "t" };
const relative = { BITS_NOTIFICATION_TYPE: "value", BITS_NOTIFICATION_URL: "notify.asp" };

describe("BITS_PUBLIC_ORIGIN: relative notification URLs need an origin the operator sets", () => {
  it("a relative notification URL without it stops the start", () => {
    expect(() => loadConfig({ ...BASE, ...relative })).toThrow(/BITS_PUBLIC_ORIGIN/);
    const paths = JSON.stringify([{ path: "/x/", type: "reference", url: "../app" }]);
    expect(() => loadConfig({ ...BASE, BITS_NOTIFICATION_PATHS: paths })).toThrow(
      /"\.\.\/app" needs BITS_PUBLIC_ORIGIN/,
    );
  });

  it("with it, the origin is kept as scheme://host[:port]", () => {
    const config = loadConfig({
      ...BASE,
      ...relative,
      BITS_PUBLIC_ORIGIN: "https://Uploads.Example.com:8443/",
    });
    expect(config.publicOrigin).toBe("https://uploads.example.com:8443");
  });

  it("absolute and Lambda targets need none", () => {
    const absolute = { BITS_NOTIFICATION_TYPE: "value", BITS_NOTIFICATION_URL: "https://a/n" };
    expect(loadConfig({ ...BASE, ...absolute }).publicOrigin).toBeUndefined();
    const lambda = { BITS_NOTIFICATION_TYPE: "value", BITS_NOTIFICATION_URL: "lambda:app" };
    expect(loadConfig({ ...BASE, ...lambda }).publicOrigin).toBeUndefined();
  });

  it.each([
    "uploads.example.com",
    "ftp://uploads.example.com",
    "https://uploads.example.com/bits",
    "https://uploads.example.com/?x=1",
    "https://user:pw@uploads.example.com",
  ])("refuses %s", (origin) => {
    expect(() => loadConfig({ ...BASE, BITS_PUBLIC_ORIGIN: origin })).toThrow(
      /BITS_PUBLIC_ORIGIN=.* must be https:\/\/host\[:port\]/,
    );
  });
});

describe("notificationTarget: the client's query adds, never repeats or replaces", () => {
  it("drops a client parameter the notification URL already names, whatever its case", () => {
    expect(
      notificationTarget("https://app/n?account=42", "https://up/f?ACCOUNT=6&account=7&job=9"),
    ).toBe("https://app/n?account=42&job=9");
    expect(notificationTarget("https://app/n?a+b=1", "https://up/f?a%20b=2&c=3")).toBe(
      "https://app/n?a+b=1&c=3",
    );
  });

  it("knows which URLs are relative", () => {
    expect(["notify.asp", "/n", "../n"].every(isRelativeTarget)).toBe(true);
    expect(["http://a/n", "HTTPS://a/n", "lambda:f"].some(isRelativeTarget)).toBe(false);
  });
});
