import { describe, expect, it } from "vitest";
import { MiB } from "../../functions/bits/constants.ts";
import { ConfigError, loadConfig, parseBytes } from "../../functions/config.ts";

const REQUIRED = { BITS_BUCKET: "uploads", BITS_TABLE: "sessions" };

/** The ConfigError that `loadConfig(env)` throws. */
function configError(env: Record<string, string | undefined>): ConfigError {
  try {
    loadConfig(env);
  } catch (error) {
    if (error instanceof ConfigError) return error;
    throw error;
  }
  throw new Error("expected a ConfigError");
}

describe("loadConfig defaults (config is read once, strictly)", () => {
  it("fills every optional setting with its default", () => {
    expect(loadConfig(REQUIRED)).toEqual({
      bucket: "uploads",
      table: "sessions",
      keyPrefix: "",
      uploadPaths: ["/"],
      stagingPrefix: ".bits-staging/",
      maxFragmentBytes: MiB,
      maxUploadBytes: 10 * 1024 * MiB,
      partSize: 8 * MiB,
      allowOverwrite: false,
      sessionTimeoutSeconds: 1_209_600,
      tombstoneSeconds: 86_400,
      region: "us-east-1",
      s3Endpoint: undefined,
      dynamodbEndpoint: undefined,
      logLevel: "info",
      auth: undefined,
      authRealm: "BITS uploads",
      htpasswd: undefined,
      urlKeys: undefined,
      secretsRefreshSeconds: 300,
      principalPrefix: "",
      overwritePrincipals: [],
      maxSessionsPerPrincipal: 50,
      maxSessions: 10_000,
      maxFragmentsPerMiB: 512,
      warmCacheBytes: 64 * MiB,
      notifications: [{ path: "/", type: "none", url: undefined }],
      notificationTimeoutSeconds: 40,
      maxReplyBytes: 64 * MiB,
      replyPath: "/.bits-replies",
      events: { kind: "stdout", source: "bits.upload" },
    });
  });

  it("a variable set to blanks counts as unset for optional settings", () => {
    const config = loadConfig({
      ...REQUIRED,
      BITS_MAX_FRAGMENT_SIZE: " ",
      BITS_SESSION_TIMEOUT: "",
      BITS_ALLOW_OVERWRITE: "  ",
      BITS_S3_ENDPOINT: "",
      AWS_REGION: "",
    });
    expect(config.maxFragmentBytes).toBe(MiB);
    expect(config.sessionTimeoutSeconds).toBe(1_209_600);
    expect(config.allowOverwrite).toBe(false);
    expect(config.s3Endpoint).toBeUndefined();
    expect(config.region).toBe("us-east-1");
  });

  it("reads every setting from the environment, trimmed", () => {
    const config = loadConfig({
      BITS_BUCKET: " b ",
      BITS_TABLE: "t",
      BITS_KEY_PREFIX: "in/",
      BITS_UPLOAD_PATHS: "/upload, /other/ ,",
      BITS_STAGING_PREFIX: "stage/",
      BITS_MAX_FRAGMENT_SIZE: "4 MiB",
      BITS_MAX_UPLOAD_SIZE: "10GB",
      BITS_PART_SIZE: "16MiB",
      BITS_ALLOW_OVERWRITE: "true",
      BITS_SESSION_TIMEOUT: "3600",
      BITS_TOMBSTONE_TTL: "60",
      AWS_REGION: "eu-west-1",
      BITS_S3_ENDPOINT: "http://127.0.0.1:4566",
      BITS_DYNAMODB_ENDPOINT: "https://dynamodb.local",
      BITS_LOG_LEVEL: "WARN",
      BITS_AUTH: "Basic, signed-url",
      BITS_AUTH_REALM: "Acme uploads",
      BITS_HTPASSWD: "/etc/bits/htpasswd",
      BITS_URL_KEYS_PARAMETER: "/bits/url-keys",
      BITS_SECRETS_REFRESH: "60",
      BITS_PRINCIPAL_PREFIX: "users/{principal}",
      BITS_OVERWRITE_PRINCIPALS: "backup, ops",
      BITS_MAX_SESSIONS_PER_PRINCIPAL: "5",
      BITS_MAX_SESSIONS: "500",
      BITS_MAX_FRAGMENTS_PER_MIB: "64",
      BITS_WARM_CACHE_SIZE: "16MiB",
      BITS_EVENTS: " eventbridge ",
      BITS_EVENT_BUS: " uploads ",
      BITS_EVENT_SOURCE: " acme.bits ",
    });
    expect(config).toEqual({
      bucket: "b",
      table: "t",
      keyPrefix: "in/",
      uploadPaths: ["/upload", "/other/"],
      stagingPrefix: "stage/",
      maxFragmentBytes: 4 * MiB,
      maxUploadBytes: 10e9,
      partSize: 16 * MiB,
      allowOverwrite: true,
      sessionTimeoutSeconds: 3600,
      tombstoneSeconds: 60,
      region: "eu-west-1",
      s3Endpoint: "http://127.0.0.1:4566",
      dynamodbEndpoint: "https://dynamodb.local",
      logLevel: "warn",
      auth: ["basic", "signed-url"],
      authRealm: "Acme uploads",
      htpasswd: { kind: "file", path: "/etc/bits/htpasswd" },
      urlKeys: { kind: "ssm", name: "/bits/url-keys" },
      secretsRefreshSeconds: 60,
      principalPrefix: "users/{principal}",
      overwritePrincipals: ["backup", "ops"],
      maxSessionsPerPrincipal: 5,
      maxSessions: 500,
      maxFragmentsPerMiB: 64,
      warmCacheBytes: 16 * MiB,
      notifications: [{ path: "/", type: "none", url: undefined }],
      notificationTimeoutSeconds: 40,
      maxReplyBytes: 64 * MiB,
      replyPath: "/.bits-replies",
      events: { kind: "eventbridge", source: "acme.bits", bus: "uploads" },
    });
  });

  it("takes values from `defaults` when the environment has none, the environment first", () => {
    const config = loadConfig(
      { BITS_TABLE: "from-env" },
      { BITS_BUCKET: "from-defaults", BITS_TABLE: "ignored" },
    );
    expect(config.bucket).toBe("from-defaults");
    expect(config.table).toBe("from-env");
  });

  it("returns a frozen object with a frozen path list", () => {
    const config = loadConfig(REQUIRED);
    expect(Object.isFrozen(config)).toBe(true);
    expect(Object.isFrozen(config.uploadPaths)).toBe(true);
    expect(() => {
      (config as { bucket: string }).bucket = "other";
    }).toThrow(TypeError);
    expect(() => (config.uploadPaths as string[]).push("/x")).toThrow(TypeError);
  });
});

describe("loadConfig byte sizes", () => {
  it.each([
    ["1048576", 1_048_576],
    ["1 MiB", MiB],
    ["4MB", 4_000_000],
    ["5 KiB", 5 * 1024],
    ["6kb", 6000],
    ["2 mib", 2 * MiB],
    ["1.5 MiB", 1.5 * MiB],
    ["1.5 kB", 1500],
    ["1GiB", 1024 * MiB],
    ["1 GB", 1e9],
    ["5TiB", 5 * 1024 ** 4],
    [" 7 B ", 7],
    ["0", 0],
  ])("parseBytes(%j) is %i bytes (decimal and binary units, any case)", (text, bytes) => {
    expect(parseBytes(text)).toBe(bytes);
  });

  it("byte sizes in the environment are read with their units", () => {
    const config = loadConfig({
      ...REQUIRED,
      BITS_MAX_FRAGMENT_SIZE: "1.5 MiB",
      BITS_MAX_UPLOAD_SIZE: "100 kb",
      BITS_PART_SIZE: "5 MiB",
    });
    expect(config.maxFragmentBytes).toBe(1_572_864);
    expect(config.maxUploadBytes).toBe(100_000);
    expect(config.partSize).toBe(5 * MiB);
  });

  it("BITS_MAX_UPLOAD_SIZE accepts up to 5 TiB, and 0", () => {
    expect(loadConfig({ ...REQUIRED, BITS_MAX_UPLOAD_SIZE: "5TiB" }).maxUploadBytes).toBe(
      5 * 1024 ** 4,
    );
    expect(loadConfig({ ...REQUIRED, BITS_MAX_UPLOAD_SIZE: "1 TB" }).maxUploadBytes).toBe(1e12);
    expect(loadConfig({ ...REQUIRED, BITS_MAX_UPLOAD_SIZE: "0" }).maxUploadBytes).toBe(0);
  });

  it.each([
    ["BITS_MAX_FRAGMENT_SIZE", "5119"],
    ["BITS_MAX_FRAGMENT_SIZE", "6 GiB"],
    ["BITS_MAX_UPLOAD_SIZE", "6 TiB"],
    ["BITS_PART_SIZE", "4 MiB"],
    ["BITS_PART_SIZE", "6 GiB"],
  ])("%s=%j outside its range is refused", (name, value) => {
    expect(configError({ ...REQUIRED, [name]: value }).message).toContain(name);
  });

  it.each(["abc", "-1", "1e6", "1.5", "0.1 KiB", "1 PB", "MiB", "1 M i B", "0x100000"])(
    "parseBytes(%j) is not a byte size",
    (text) => {
      expect(parseBytes(text)).toBeUndefined();
    },
  );

  // 4.1 * 1e6 is 4099999.9999999995 in floating point: decimals must be parsed exactly.
  it('parseBytes("4.1 MB") is exactly 4,100,000 bytes', () => {
    expect(parseBytes("4.1 MB")).toBe(4_100_000);
  });

  it('parseBytes("8.3 GB") is exactly 8,300,000,000 bytes', () => {
    expect(parseBytes("8.3 GB")).toBe(8_300_000_000);
  });

  it('BITS_MAX_FRAGMENT_SIZE="8.2 MB" loads as 8,200,000 bytes', () => {
    expect(loadConfig({ ...REQUIRED, BITS_MAX_FRAGMENT_SIZE: "8.2 MB" }).maxFragmentBytes).toBe(
      8_200_000,
    );
  });
});

describe("loadConfig: BITS_ALLOW_OVERWRITE (off by default, docs/protocol.md, Overwrite)", () => {
  it.each([
    ["true", true],
    ["TRUE", true],
    [" Yes ", true],
    ["1", true],
    ["false", false],
    ["False", false],
    ["no", false],
    ["0", false],
    ["", false],
  ])("%j is %s", (value, expected) => {
    expect(loadConfig({ ...REQUIRED, BITS_ALLOW_OVERWRITE: value }).allowOverwrite).toBe(expected);
  });

  it.each(["maybe", "on", "off", "2", "y", "t"])("%j is refused, naming the variable", (value) => {
    const message = configError({ ...REQUIRED, BITS_ALLOW_OVERWRITE: value }).message;
    expect(message).toContain("BITS_ALLOW_OVERWRITE");
    expect(message).toContain(JSON.stringify(value));
  });
});

describe("loadConfig: every problem reported together in one ConfigError", () => {
  it("names each bad variable in one error", () => {
    const error = configError({
      BITS_KEY_PREFIX: "a/../b",
      BITS_UPLOAD_PATHS: "upload",
      BITS_STAGING_PREFIX: "x//y",
      BITS_MAX_FRAGMENT_SIZE: "lots",
      BITS_MAX_UPLOAD_SIZE: "-5",
      BITS_PART_SIZE: "1 MiB",
      BITS_ALLOW_OVERWRITE: "perhaps",
      BITS_SESSION_TIMEOUT: "0",
      BITS_TOMBSTONE_TTL: "1.5",
      BITS_S3_ENDPOINT: "ftp://s3",
      BITS_DYNAMODB_ENDPOINT: "localhost:8000",
      BITS_LOG_LEVEL: "debug",
      BITS_AUTH: "kerberos",
      BITS_MAX_SESSIONS: "0",
      BITS_PRINCIPAL_PREFIX: "users",
    });
    expect(error).toBeInstanceOf(Error);
    expect(error.name).toBe("ConfigError");
    for (const name of [
      "BITS_BUCKET",
      "BITS_TABLE",
      "BITS_KEY_PREFIX",
      "BITS_UPLOAD_PATHS",
      "BITS_STAGING_PREFIX",
      "BITS_MAX_FRAGMENT_SIZE",
      "BITS_MAX_UPLOAD_SIZE",
      "BITS_PART_SIZE",
      "BITS_ALLOW_OVERWRITE",
      "BITS_SESSION_TIMEOUT",
      "BITS_TOMBSTONE_TTL",
      "BITS_S3_ENDPOINT",
      "BITS_DYNAMODB_ENDPOINT",
      "BITS_LOG_LEVEL",
      "BITS_AUTH",
      "BITS_MAX_SESSIONS",
      "BITS_PRINCIPAL_PREFIX",
    ]) {
      expect(error.message).toContain(name);
    }
    // One line per problem.
    expect(error.message.split("\n  - ")).toHaveLength(18);
  });

  it("a missing bucket or table is required", () => {
    expect(configError({ BITS_TABLE: "t" }).message).toContain("BITS_BUCKET is required");
    expect(configError({ BITS_BUCKET: "b", BITS_TABLE: "  " }).message).toContain(
      "BITS_TABLE is required",
    );
  });

  it("a key prefix inside the staging prefix is refused", () => {
    const message = configError({ ...REQUIRED, BITS_KEY_PREFIX: ".bits-staging/in/" }).message;
    expect(message).toContain("BITS_KEY_PREFIX must not lie inside BITS_STAGING_PREFIX");
  });

  it.each([
    ["BITS_SESSION_TIMEOUT", "-1"],
    ["BITS_SESSION_TIMEOUT", "soon"],
    ["BITS_TOMBSTONE_TTL", "0"],
    ["BITS_TOMBSTONE_TTL", "9007199254740992"],
  ])("%s=%j is not a whole number of seconds >= 1", (name, value) => {
    expect(configError({ ...REQUIRED, [name]: value }).message).toContain(name);
  });

  it.each([
    ["info", "info"],
    ["Error", "error"],
    ["SILENT", "silent"],
  ])("BITS_LOG_LEVEL=%j is %s", (value, level) => {
    expect(loadConfig({ ...REQUIRED, BITS_LOG_LEVEL: value }).logLevel).toBe(level);
  });
});

describe("loadConfig: prefixes are whole path segments (docs/security.md)", () => {
  it.each(["uploads", "uploads/", "/uploads/", " uploads "])(
    "BITS_KEY_PREFIX=%j is uploads/",
    (value) => {
      expect(loadConfig({ ...REQUIRED, BITS_KEY_PREFIX: value }).keyPrefix).toBe("uploads/");
    },
  );

  it("nested prefixes keep their segments; the staging prefix gets its slash", () => {
    const config = loadConfig({
      ...REQUIRED,
      BITS_KEY_PREFIX: "a/b",
      BITS_STAGING_PREFIX: "stage",
    });
    expect(config.keyPrefix).toBe("a/b/");
    expect(config.stagingPrefix).toBe("stage/");
  });

  it.each(["a//b", "a/../b", "./a", "a/\u0007"])("BITS_KEY_PREFIX=%j is refused", (value) => {
    expect(configError({ ...REQUIRED, BITS_KEY_PREFIX: value }).message).toContain(
      "BITS_KEY_PREFIX",
    );
  });

  it("a staging prefix inside the key prefix is refused", () => {
    const message = configError({
      ...REQUIRED,
      BITS_KEY_PREFIX: "uploads",
      BITS_STAGING_PREFIX: "uploads/.staging",
    }).message;
    expect(message).toContain("BITS_STAGING_PREFIX must not lie inside BITS_KEY_PREFIX");
  });
});

describe("loadConfig: BITS_AUTH (docs/security.md, Authentication)", () => {
  it("unset means not chosen", () => {
    expect(loadConfig(REQUIRED).auth).toBeUndefined();
  });

  it.each([
    ["anonymous", ["anonymous"]],
    ["CLIENT-CERT", ["client-cert"]],
    ["basic,signed-url,client-cert", ["basic", "signed-url", "client-cert"]],
  ])("%j enables %j", (value, modes) => {
    const env = {
      ...REQUIRED,
      BITS_AUTH: value,
      BITS_HTPASSWD: "/h",
      BITS_URL_KEYS: "/k",
    };
    expect(loadConfig(env).auth).toEqual(modes);
  });

  it("anonymous cannot be combined with another mode", () => {
    expect(configError({ ...REQUIRED, BITS_AUTH: "anonymous,basic" }).message).toContain(
      "cannot be combined",
    );
  });

  it("basic needs an htpasswd file or parameter, signed-url its keys, not both at once", () => {
    expect(configError({ ...REQUIRED, BITS_AUTH: "basic" }).message).toContain("BITS_HTPASSWD");
    expect(configError({ ...REQUIRED, BITS_AUTH: "signed-url" }).message).toContain(
      "BITS_URL_KEYS",
    );
    const both = { ...REQUIRED, BITS_AUTH: "basic", BITS_HTPASSWD: "/h" };
    expect(configError({ ...both, BITS_HTPASSWD_PARAMETER: "/p" }).message).toContain("not both");
  });

  it("a secret of a mode that is off is ignored", () => {
    const config = loadConfig({ ...REQUIRED, BITS_AUTH: "anonymous", BITS_HTPASSWD: "/h" });
    expect(config.htpasswd).toBeUndefined();
  });

  it("a realm with a quote or backslash is refused", () => {
    expect(configError({ ...REQUIRED, BITS_AUTH_REALM: 'say "hi"' }).message).toContain(
      "BITS_AUTH_REALM",
    );
  });
});

describe("loadConfig: upload-reply notification (docs/upload-reply.md)", () => {
  it("none by default", () => {
    const config = loadConfig(REQUIRED);
    expect(config.notifications).toEqual([{ path: "/", type: "none", url: undefined }]);
    expect(config.notificationTimeoutSeconds).toBe(40);
    expect(config.replyPath).toBe("/.bits-replies");
  });

  it("the whole server, and per-path overrides as JSON", () => {
    const config = loadConfig({
      ...REQUIRED,
      BITS_NOTIFICATION_TYPE: "value",
      BITS_NOTIFICATION_URL: "https://app.example/notify",
      BITS_NOTIFICATION_PATHS: JSON.stringify([
        { path: "/dumps/", type: "reference", url: "lambda:crash-handler" },
        { path: "/plain/", type: "none" },
      ]),
    });
    expect(config.notifications).toEqual([
      { path: "/", type: "value", url: "https://app.example/notify" },
      { path: "/dumps/", type: "reference", url: "lambda:crash-handler" },
      { path: "/plain/", type: "none", url: undefined },
    ]);
  });

  it.each([
    [{ BITS_NOTIFICATION_TYPE: "value" }, "BITS_NOTIFICATION_URL"],
    [
      { BITS_NOTIFICATION_TYPE: "push", BITS_NOTIFICATION_URL: "http://a" },
      "BITS_NOTIFICATION_TYPE",
    ],
    [
      { BITS_NOTIFICATION_TYPE: "value", BITS_NOTIFICATION_URL: "ftp://a" },
      "BITS_NOTIFICATION_URL",
    ],
    [{ BITS_NOTIFICATION_PATHS: "{oops" }, "BITS_NOTIFICATION_PATHS"],
    [
      { BITS_NOTIFICATION_PATHS: '[{"path":"x","type":"value","url":"http://a"}]' },
      "BITS_NOTIFICATION_PATHS[0]",
    ],
    [{ BITS_REPLY_PATH: "replies" }, "BITS_REPLY_PATH"],
  ])("%j is refused, naming %s", (env, name) => {
    expect(configError({ ...REQUIRED, ...env }).message).toContain(name);
  });
});

describe("loadConfig: completion events (docs/events.md)", () => {
  it("stdout by default; a file, EventBridge (default bus unless named) or none on request", () => {
    expect(loadConfig({ ...REQUIRED, BITS_EVENTS: "file:/tmp/e.jsonl" }).events).toEqual({
      kind: "file",
      source: "bits.upload",
      path: "/tmp/e.jsonl",
    });
    expect(loadConfig({ ...REQUIRED, BITS_EVENTS: "eventbridge" }).events).toEqual({
      kind: "eventbridge",
      source: "bits.upload",
      bus: "default",
    });
    const named = {
      ...REQUIRED,
      BITS_EVENTS: "eventbridge",
      BITS_EVENT_BUS: "arn:aws:events:eu-west-1:111122223333:event-bus/uploads",
      BITS_EVENT_SOURCE: "acme.uploads",
    };
    expect(loadConfig(named).events).toEqual({
      kind: "eventbridge",
      source: "acme.uploads",
      bus: "arn:aws:events:eu-west-1:111122223333:event-bus/uploads",
    });
    expect(loadConfig({ ...REQUIRED, BITS_EVENTS: "none" }).events).toEqual({ kind: "none" });
  });

  it("refuses an unknown destination, a bad bus and a source EventBridge reserves", () => {
    const message = configError({
      ...REQUIRED,
      BITS_EVENTS: "sqs",
      BITS_EVENT_SOURCE: "aws.s3",
    }).message;
    expect(message).toContain("BITS_EVENTS");
    expect(message).toContain("BITS_EVENT_SOURCE");
    expect(
      configError({ ...REQUIRED, BITS_EVENTS: "eventbridge", BITS_EVENT_BUS: "a bus" }).message,
    ).toContain("BITS_EVENT_BUS");
  });
});

describe("BITS_JOIN_PRINCIPALS", () => {
  it("lists the modes whose principals are the Basic user of the same name", () => {
    const config = loadConfig({ ...REQUIRED, BITS_JOIN_PRINCIPALS: "client-cert, signed-url" });
    expect(config.joinedModes).toEqual(["signed-url", "client-cert"]);
  });

  it("is none by default, and refuses anything but signed-url and client-cert", () => {
    expect(loadConfig(REQUIRED).joinedModes).toBeUndefined();
    expect(() => loadConfig({ ...REQUIRED, BITS_JOIN_PRINCIPALS: "anonymous" })).toThrow(
      /BITS_JOIN_PRINCIPALS/,
    );
  });
});
