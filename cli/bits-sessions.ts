/**
 * `bits-sessions` (`npm run sessions -- ...`): the operator's view of upload sessions, on the
 * local server's stand-ins or a deployed table (docs/client.md, bits-sessions).
 */
import { setTimeout as sleep } from "node:timers/promises";
import { parseArgs } from "node:util";
import type { Runtime } from "../functions/ports/runtime.ts";
import { StorageError } from "../functions/ports/storage-error.ts";
import { buildContext, newSessionId } from "../functions/wiring.ts";
import { type CommandContext, cancel, list, type Outcome, show } from "./sessions/commands.ts";
import { resolveTarget, TargetError } from "./sessions/target.ts";

// The AWS SDK's notice that its releases from 2027 need Node 22, on every run: this project
// supports Node 20.19 and later. The SDK's documented switch (aws/aws-sdk-js-v3#7983), unless
// the operator set it otherwise; read when the first client is made, after this line.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true";

const USAGE = `usage: bits-sessions <command> [options]      (in the repository: npm run sessions -- ...)

Commands:
  list [--all]     open sessions, oldest first (--all: ended and expired ones too)
  show <id>        one session in detail; <id> is a session ID or its start, as listed
  cancel <id>      cancel a session as its client's Cancel-Session would: the multipart upload
                   is aborted, staged bytes and part lists deleted, the slot released, and an
                   Upload Cancelled event follows

Where (default: BITS_TABLE and the BITS_* variables when set, else the local server):
  --local          the local server \`npm start\` runs (its .bits-local.json, BITS_LOCAL_FILE)
  --stage <stage>  a deployed stage: table bits-upload-server-<stage>-sessions; bucket and
                   settings from its upload function (lambda:GetFunctionConfiguration)
  --table <name>   a table by name, with the BITS_* variables as the server reads them
  --bucket <name>  the bucket (cancel needs it; --stage reads it from the function)
  --region <name>  the AWS Region (default: AWS_REGION, else us-east-1)
AWS credentials come from the SDK's default chain (environment, profile, SSO, role).

  --json           print JSON for scripts instead of a table
  --help           this text

Exit status: 0 done; 1 not done (unknown session, unreachable table, nothing to cancel); 2 usage.
`;

/** Columns a table may take: the terminal's, or 100 when the output is not one. */
function width(): number {
  return process.stdout.isTTY ? Math.max(60, process.stdout.columns ?? 100) : 100;
}

/** The service logs its warnings and errors on stderr, never among what is printed. */
const quietRuntime: Runtime = {
  now: () => Date.now(),
  newSessionId,
  sleep: async (ms) => sleep(ms),
  log(level, message, fields = {}) {
    if (level !== "info") console.error(JSON.stringify({ level, message, ...fields }));
  },
};

class UsageError extends Error {}

async function run(argv: readonly string[]): Promise<Outcome | "usage"> {
  const { values, positionals } = parseArgs({
    args: [...argv],
    allowPositionals: true,
    options: {
      all: { type: "boolean", default: false },
      json: { type: "boolean", default: false },
      local: { type: "boolean", default: false },
      stage: { type: "string" },
      table: { type: "string" },
      bucket: { type: "string" },
      region: { type: "string" },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help) return "usage";
  const [name, id, ...extra] = positionals;
  const takesId = name === "show" || name === "cancel";
  if (name !== "list" && !takesId) throw new UsageError(`unknown command ${name ?? "(none)"}`);
  if (extra.length > 0 || (takesId ? id === undefined : id !== undefined)) {
    throw new UsageError(takesId ? `${name} takes one session ID` : "list takes no argument");
  }
  if (values.all && name !== "list") throw new UsageError("--all goes with list");
  const target = await resolveTarget(values, process.env);
  for (const warning of target.warnings) console.error(`warning: ${warning}`);
  if (name === "cancel" && !target.hasBucket) {
    throw new TargetError("cancel needs the bucket: give --bucket, or --stage to read it");
  }
  const command: CommandContext = {
    service: buildContext(target.config, quietRuntime, target.clients).context,
    where: target.where,
    json: values.json,
    width: width(),
    nowMs: Date.now(),
  };
  try {
    if (name === "list") return await list(command, { all: values.all });
    if (name === "show") return await show(command, id as string);
    return await cancel(command, id as string);
  } catch (error) {
    if (!(error instanceof StorageError)) throw error;
    return { stderr: `cannot use ${target.where}: ${error.message}`, code: 1 };
  } finally {
    target.clients.s3.destroy();
    target.clients.dynamodb.destroy();
  }
}

try {
  const outcome = await run(process.argv.slice(2));
  if (outcome === "usage") {
    process.stdout.write(USAGE);
  } else {
    if (outcome.stdout !== undefined) process.stdout.write(`${outcome.stdout}\n`);
    if (outcome.stderr !== undefined) process.stderr.write(`bits-sessions: ${outcome.stderr}\n`);
    process.exitCode = outcome.code;
  }
} catch (error) {
  const usage =
    error instanceof UsageError || (error as { code?: string }).code?.startsWith("ERR_PARSE_ARGS");
  const message = error instanceof Error ? error.message : String(error);
  process.stderr.write(`bits-sessions: ${message}\n${usage ? "try bits-sessions --help\n" : ""}`);
  process.exitCode = usage ? 2 : 1;
}
