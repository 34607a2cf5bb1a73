import { randomBytes } from "node:crypto";
import { request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";
import { parseArgs } from "node:util";
import { BITS_PROTOCOL_GUID, HRESULT } from "../functions/bits/constants.ts";
import { crc32c, crc32cBase64 } from "../functions/bits/crc32c.ts";
import {
  alarmsExist,
  type EventWatch,
  type StackClients,
  stackClients,
  stackResources,
  watchEvents,
} from "./smoke-stack.ts";

/**
 * The first-deploy check (docs/smoke.md): `npm run smoke -- <URL> [user:password]` talks BITS to
 * a deployed server (or `npm start`) through its real front door and prints one row per check
 * with what it saw; it exits 1 when a check fails. `--json` prints the same as JSON.
 * `--override` sends POST with X-Http-Method-Override (the HTTP API's clients) instead of the
 * verb BITS_POST. The URL is a directory uploads may go to; its query (a signed URL's) is kept.
 * With `--stack NAME [--region R]` it also checks, with the operator's AWS credentials, that the
 * upload's completion event arrives and that the stack's alarms exist (scripts/smoke-stack.ts).
 */

export interface Check {
  readonly name: string;
  readonly ok: boolean | "skipped";
  readonly saw: string;
}

interface Answer {
  readonly status: number;
  readonly headers: Record<string, string>;
}

interface Target {
  readonly base: URL;
  readonly authorization?: string;
  readonly override: boolean;
  /** The largest body the front door takes: 1 MB at the ALB (docs/platform.md). */
  readonly overBytes: number;
}

function send(
  target: Target,
  path: string,
  headers: Record<string, string>,
  body: Uint8Array = new Uint8Array(0),
  credentials = true,
): Promise<Answer> {
  const url = new URL(path, target.base);
  url.search = credentials ? target.base.search : "";
  const request = url.protocol === "https:" ? httpsRequest : httpRequest;
  const all: Record<string, string> = {
    ...headers,
    "Content-Length": String(body.length),
    ...(credentials && target.authorization ? { Authorization: target.authorization } : {}),
    ...(target.override ? { "X-Http-Method-Override": "BITS_POST" } : {}),
  };
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      { method: target.override ? "POST" : "BITS_POST", headers: all, timeout: 30_000 },
      (res) => {
        res.resume();
        res.on("end", () => {
          const out: Record<string, string> = {};
          for (const [key, value] of Object.entries(res.headers)) {
            if (typeof value === "string") out[key.toLowerCase()] = value;
          }
          resolve({ status: res.statusCode ?? 0, headers: out });
        });
      },
    );
    req.on("timeout", () => req.destroy(new Error("no answer within 30 s")));
    req.on("error", (error) => {
      // A front door may answer 413 and close before the body is sent.
      const code = (error as { code?: string }).code;
      if (code === "EPIPE" || code === "ECONNRESET") resolve({ status: 0, headers: {} });
      else reject(error);
    });
    req.end(body);
  });
}

const packet = (type: string, extra: Record<string, string> = {}) => ({
  "BITS-Packet-Type": type,
  ...extra,
});
const seen = (a: Answer) =>
  `${a.status} ${a.headers["bits-packet-type"] ?? "-"}${a.headers["bits-error-code"] ? ` error ${a.headers["bits-error-code"]}` : ""}`;
const isAck = (a: Answer) => a.headers["bits-packet-type"]?.toLowerCase() === "ack";

async function createSession(target: Target, path: string) {
  const answer = await send(
    target,
    path,
    packet("Create-Session", { "BITS-Supported-Protocols": BITS_PROTOCOL_GUID }),
  );
  return { answer, id: answer.headers["bits-session-id"] };
}

/** The stack behind the URL, for the checks that need AWS's APIs. */
interface StackTarget {
  readonly name: string;
  readonly clients: StackClients;
  /** How long to wait for the completion event. */
  readonly eventSeconds: number;
}

/** Runs every check; never throws for a failed one. */
export async function smoke(target: Target, stack?: StackTarget): Promise<Check[]> {
  const checks: Check[] = [];
  const run = async (name: string, body: () => Promise<Omit<Check, "name">>) => {
    try {
      checks.push({ name, ...(await body()) });
    } catch (error) {
      checks.push({ name, ok: false, saw: (error as Error).message });
    }
  };
  const tag = randomBytes(6).toString("hex");
  const file = `smoke-${tag}.bin`;
  // The stack's resources, and the watch of its bus, before the upload whose event it awaits.
  let resources: Awaited<ReturnType<typeof stackResources>> | Error = [];
  let watch: EventWatch | Error | undefined;
  if (stack) {
    resources = await stackResources(stack.clients, stack.name).catch((e: Error) => e);
    watch =
      resources instanceof Error
        ? resources
        : await watchEvents(stack.clients, resources, tag).catch((e: Error) => e);
  }
  let uploaded: string | undefined;

  // Answers docs/platform.md's open question: does the front door pass the verb BITS_POST (or
  // POST + X-Http-Method-Override) to the function? A Ping is answered by the function only.
  await run(
    target.override ? "post_override_reaches_function" : "bits_post_reaches_function",
    async () => {
      const answer = await send(target, file, packet("Ping"));
      return { ok: answer.status === 200 && isAck(answer), saw: seen(answer) };
    },
  );

  await run("upload_byte_exact_crc32c", async () => {
    const data = randomBytes(64 * 1024 + 17);
    const created = await createSession(target, file);
    if (created.id === undefined)
      return { ok: false, saw: `Create-Session: ${seen(created.answer)}` };
    const range = `bytes 0-${data.length - 1}/${data.length}`;
    const fragment = await send(
      target,
      file,
      packet("Fragment", { "BITS-Session-Id": created.id, "Content-Range": range }),
      data,
    );
    if (fragment.status !== 200) return { ok: false, saw: `Fragment: ${seen(fragment)}` };
    const close = await send(
      target,
      file,
      packet("Close-Session", { "BITS-Session-Id": created.id }),
    );
    const expected = crc32cBase64(crc32c(data));
    const stored = close.headers["x-object-crc32c"];
    if (close.status === 200) uploaded = created.id;
    return {
      ok: close.status === 200 && stored === expected,
      saw: `Close ${seen(close)}, CRC32C ${stored ?? "none"} (sent ${expected})`,
    };
  });

  await run("oversized_body_413_without_bits_error", async () => {
    const answer = await send(
      target,
      file,
      packet("Fragment", {
        "BITS-Session-Id": `{${"0".repeat(8)}-0000-0000-0000-${"0".repeat(12)}}`,
      }),
      new Uint8Array(target.overBytes + 1),
    );
    return {
      ok: answer.status === 413 && answer.headers["bits-error-code"] === undefined,
      saw: `${seen(answer)} for ${target.overBytes + 1} bytes`,
    };
  });

  await run("unauthenticated_401", async () => {
    if (!target.authorization && target.base.search === "") {
      return { ok: "skipped", saw: "no credentials given" };
    }
    const answer = await send(target, file, packet("Ping"), new Uint8Array(0), false);
    return { ok: answer.status === 401, saw: seen(answer) };
  });

  let other: string | undefined;
  await run("session_not_found_on_other_url", async () => {
    const created = await createSession(target, `a-${file}`);
    other = created.id;
    if (created.id === undefined)
      return { ok: false, saw: `Create-Session: ${seen(created.answer)}` };
    const answer = await send(
      target,
      `b-${file}`,
      packet("Fragment", { "BITS-Session-Id": created.id, "Content-Range": "bytes 0-0/1" }),
      new Uint8Array(1),
    );
    const code = Number.parseInt(answer.headers["bits-error-code"] ?? "", 16);
    return { ok: code === HRESULT.BG_E_SESSION_NOT_FOUND, saw: seen(answer) };
  });

  await run("cancel_leaves_nothing", async () => {
    if (other === undefined) return { ok: false, saw: "no session to cancel" };
    const cancel = await send(
      target,
      `a-${file}`,
      packet("Cancel-Session", { "BITS-Session-Id": other }),
    );
    const after = await send(
      target,
      `a-${file}`,
      packet("Fragment", { "BITS-Session-Id": other, "Content-Range": "bytes 0-0/1" }),
      new Uint8Array(1),
    );
    const code = Number.parseInt(after.headers["bits-error-code"] ?? "", 16);
    return {
      ok: cancel.status === 200 && code === HRESULT.BG_E_SESSION_NOT_FOUND,
      saw: `Cancel ${seen(cancel)}; then Fragment ${seen(after)}`,
    };
  });

  if (stack) {
    await run("completion_event_arrived", async () => {
      if (watch instanceof Error || watch === undefined) {
        return { ok: false, saw: `cannot watch the bus: ${watch?.message}` };
      }
      const result =
        uploaded === undefined
          ? { ok: false, saw: "no upload completed" }
          : await watch.completion(uploaded, stack.eventSeconds).catch((e: Error) => ({
              ok: false,
              saw: e.message,
            }));
      // The temporary rule and queue go, whatever was seen.
      const left = await watch.remove();
      return {
        ok: result.ok === true && left.length === 0,
        saw: [`${result.saw} (${watch.where})`, ...left.map((l) => `could not delete: ${l}`)].join(
          "; ",
        ),
      };
    });
    await run("alarms_exist", async () =>
      resources instanceof Error
        ? { ok: false, saw: resources.message }
        : alarmsExist(stack.clients.cloudwatch, resources),
    );
  }
  return checks;
}

export function table(checks: readonly Check[]): string {
  const width = Math.max(...checks.map((c) => c.name.length));
  return checks
    .map(
      (c) =>
        `${c.ok === "skipped" ? "SKIP" : c.ok ? "PASS" : "FAIL"}  ${c.name.padEnd(width)}  ${c.saw}`,
    )
    .join("\n");
}

async function main() {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      json: { type: "boolean", default: false },
      override: { type: "boolean", default: false },
      "max-body": { type: "string", default: "1048576" },
      stack: { type: "string" },
      region: { type: "string" },
      "event-timeout": { type: "string", default: "60" },
    },
  });
  const [url, credentials] = positionals;
  if (url === undefined) {
    console.error(
      "usage: npm run smoke -- <URL> [user:password] [--json] [--override] [--max-body BYTES] [--stack NAME [--region R] [--event-timeout SECONDS]]",
    );
    process.exit(2);
  }
  const base = new URL(url.endsWith("/") || url.includes("?") ? url : `${url}/`);
  const target: Target = {
    base,
    override: values.override,
    overBytes: Number(values["max-body"]),
    ...(credentials
      ? { authorization: `Basic ${Buffer.from(credentials).toString("base64")}` }
      : {}),
  };
  const stack = values.stack
    ? {
        name: values.stack,
        clients: stackClients(values.region),
        eventSeconds: Number(values["event-timeout"]),
      }
    : undefined;
  const checks = await smoke(target, stack);
  console.log(values.json ? JSON.stringify({ url, checks }, null, 2) : table(checks));
  process.exit(checks.some((c) => c.ok === false) ? 1 : 0);
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
