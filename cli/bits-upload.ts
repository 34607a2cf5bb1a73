/**
 * `bits-upload FILE URL`: uploads one file over the BITS upload protocol ([MC-BUP]) from any
 * machine with Node.js 20, as a Windows BITS client does (docs/protocol.md). `--help` lists the
 * options; docs/client.md shows a run.
 */
import { existsSync, statSync } from "node:fs";
import { formatHresult } from "../functions/bits/ack.ts";
import { type UploadResult, upload } from "./upload/engine.ts";
import {
  EXIT,
  type ExitCode,
  exitCodeOf,
  LocalFileError,
  RefusedError,
  UsageError,
} from "./upload/errors.ts";
import { HttpClient } from "./upload/http.ts";
import { type Options, parseOptions, USAGE } from "./upload/options.ts";
import {
  BarReporter,
  formatBytes,
  formatSeconds,
  JsonReporter,
  LineReporter,
  type Reporter,
} from "./upload/progress.ts";
import { replyToFile, replyToStdout } from "./upload/reply.ts";
import { lockState, StateFile, statePathFor } from "./upload/state.ts";

const say = (line: string) => process.stderr.write(`bits-upload: ${line}\n`);
const emit = (record: Record<string, unknown>) =>
  process.stdout.write(`${JSON.stringify(record)}\n`);

/** The URL as it may be shown: a signed URL's signature is a credential, so it is elided. */
function shown(url: URL): string {
  const copy = new URL(url);
  if (copy.searchParams.has("bits-sig")) copy.searchParams.set("bits-sig", "...");
  return copy.href;
}

async function main(argv: readonly string[]): Promise<ExitCode> {
  let options: Options;
  try {
    options = parseOptions(argv, process.env);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    say(`${error.message} (see --help)`);
    return EXIT.usage;
  }
  if (options.help) {
    process.stdout.write(USAGE);
    return EXIT.ok;
  }
  const statePath = statePathFor(options.file, options.url.href, options.stateDir);
  let size: number;
  try {
    size = statSync(options.file).size;
  } catch (error) {
    return failed(options, new Error(`cannot read ${options.file}: ${(error as Error).message}`), {
      code: EXIT.localFile,
    });
  }
  const lock = lockState(statePath);
  if ("heldBy" in lock) {
    const message = `another bits-upload (process ${lock.heldBy}) is uploading ${options.file} to this URL (lock ${statePath}.lock)`;
    return failed(options, new LocalFileError(message), { code: EXIT.localFile });
  }
  process.once("exit", lock.release);
  const reporter: Reporter = options.json
    ? new JsonReporter(emit)
    : process.stderr.isTTY
      ? new BarReporter(size)
      : new LineReporter(say);
  const http = new HttpClient({ idleTimeoutMs: options.timeoutMs, ...options.tls });
  const interrupted = () => {
    reporter.stop();
    if (options.json) emit({ event: "interrupted", stateFile: statePath });
    else say(`interrupted; run the same command again to resume (state in ${statePath})`);
    process.exit(EXIT.interrupted);
  };
  process.once("SIGINT", interrupted);
  process.once("SIGTERM", interrupted);

  const started = Date.now();
  if (!options.json)
    say(`uploading ${options.file} (${formatBytes(size)}) to ${shown(options.url)}`);
  let result: UploadResult;
  try {
    result = await upload({
      file: options.file,
      url: options.url,
      credentials: options.credentials,
      methodOverride: options.methodOverride,
      maxFragment: options.maxFragment,
      retries: options.retries,
      backoffMs: options.backoffMs,
      rateLimit: options.rateLimit,
      http,
      state: new StateFile(statePath, (message) => reporter.event({ event: "warning", message })),
      reply:
        options.reply === undefined
          ? undefined
          : options.reply === "-"
            ? replyToStdout()
            : replyToFile(options.reply),
      verify: options.verify,
      onEvent: (event) => reporter.event(event),
    });
  } catch (error) {
    reporter.stop();
    return failed(options, error, { statePath });
  } finally {
    http.close();
  }
  reporter.stop();
  const seconds = (Date.now() - started) / 1000;
  report(options, result, seconds);
  return result.verified === false ? EXIT.mismatch : EXIT.ok;
}

function report(options: Options, result: UploadResult, seconds: number) {
  if (options.json) {
    emit({
      event: "result",
      ok: result.verified !== false,
      file: options.file,
      url: shown(options.url),
      ...result,
      replyFile: options.reply === undefined || options.reply === "-" ? undefined : options.reply,
      seconds: Math.round(seconds * 1000) / 1000,
    });
    return;
  }
  const rate = seconds > 0 ? `, ${formatBytes(result.bytesSent / seconds)}/s` : "";
  const resumed = result.resumedFrom === undefined ? "" : `, resumed at byte ${result.resumedFrom}`;
  say(
    `stored ${formatBytes(result.bytes)} in ${formatSeconds(seconds)} (${result.fragments} ${result.fragments === 1 ? "fragment" : "fragments"}${rate}${resumed})`,
  );
  say(`session  ${result.sessionId}`);
  say(`sha256   ${result.sha256}`);
  const verdict =
    result.verified === true ? "yes" : result.verified === false ? "NO, it differs" : "not checked";
  say(`verified ${verdict}${result.verifyNote ? `: ${result.verifyNote}` : ""}`);
  if (result.reply) {
    say(
      `reply    ${formatBytes(result.reply.bytes)} to ${options.reply === "-" ? "stdout" : options.reply}`,
    );
  }
}

function failed(
  options: Options,
  error: unknown,
  { statePath, code = exitCodeOf(error) }: { statePath?: string; code?: ExitCode },
): ExitCode {
  const message = error instanceof Error ? error.message : String(error);
  const resumable = code === EXIT.gaveUp && statePath !== undefined && existsSync(statePath);
  if (options.json) {
    emit({
      event: "error",
      ok: false,
      exitCode: code,
      message,
      ...(error instanceof RefusedError
        ? { status: error.status, code: formatHresult(error.code) }
        : {}),
      ...(resumable ? { stateFile: statePath } : {}),
    });
  } else {
    say(message);
    if (resumable) say(`run the same command again to resume (state in ${statePath})`);
  }
  return code;
}

// `npm run upload -- FILE URL` runs in the package's directory; paths are the caller's.
if (
  process.env.npm_lifecycle_event === "upload" &&
  process.env.npm_package_name === "bits-upload-server" &&
  process.env.INIT_CWD
) {
  process.chdir(process.env.INIT_CWD);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    say(`unexpected error: ${error instanceof Error ? (error.stack ?? error.message) : error}`);
    process.exitCode = EXIT.refused;
  },
);
