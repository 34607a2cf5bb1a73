import { describe, expect, it } from "vitest";
import { notificationTarget, ruleFor } from "../../../functions/bits/notification.ts";

describe("ruleFor: which paths notify (IIS BITSServerNotificationType per virtual directory)", () => {
  const rules = [
    { path: "/", type: "value" as const, url: "http://app/all" },
    { path: "/dumps/", type: "reference" as const, url: "lambda:crash" },
    { path: "/dumps/raw", type: "none" as const },
  ];

  it("the longest prefix covering the path, as whole segments, wins", () => {
    expect(ruleFor(rules, "/a.bin")?.url).toBe("http://app/all");
    expect(ruleFor(rules, "/dumps/x.dmp")?.url).toBe("lambda:crash");
    expect(ruleFor(rules, "/dumpster/x")?.url).toBe("http://app/all");
  });

  it("a `none` rule turns notification off below it", () => {
    expect(ruleFor(rules, "/dumps/raw/x.dmp")).toBeUndefined();
  });

  it("no rule: no notification (a plain upload job)", () => {
    expect(ruleFor([], "/a.bin")).toBeUndefined();
  });
});

describe("notificationTarget ([MC-BUP] 3.3.5.2; IIS BITSServerNotificationURL)", () => {
  it("appends the remote name's query string to the notification URL", () => {
    expect(
      notificationTarget("http://other/bag.asp", "https://up.example/v/file.asp?ACCOUNT=86433"),
    ).toBe("http://other/bag.asp?ACCOUNT=86433");
  });

  it("joins both query strings when the notification URL has one", () => {
    expect(notificationTarget("http://other/bag?site=1", "https://up.example/f?job=7")).toBe(
      "http://other/bag?site=1&job=7",
    );
  });

  it("resolves a relative URL against the remote name's directory", () => {
    expect(notificationTarget("myasp.asp", "http://myserver/myvdir/file.txt")).toBe(
      "http://myserver/myvdir/myasp.asp",
    );
  });

  it("names a Lambda function as it is", () => {
    expect(notificationTarget("lambda:inventory", "https://up.example/f?job=7")).toBe(
      "lambda:inventory",
    );
  });
});
