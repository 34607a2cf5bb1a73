import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";

/**
 * Where an interrupted upload stands, so that the next run resumes its session instead of
 * starting over. The server is the authority on the offset: the first fragment a resumed run
 * sends is answered with where the server really stands ([MC-BUP] 3.1.5.2.4).
 */
export interface UploadState {
  readonly version: 1;
  /** The upload URL as given (signed-URL parameters included, user and password removed). */
  readonly url: string;
  /** The local file, as an absolute path, its size and modification time at the start. */
  readonly file: string;
  readonly size: number;
  readonly mtimeMs: number;
  readonly sessionId: string;
  /** The protocol the server chose at Create-Session ([MC-BUP] 2.2.3.2). */
  readonly protocol: string;
  /** The offset the server last acknowledged. */
  readonly offset: number;
  /**
   * `sending` fragments; `reply`: every byte arrived and the reply (upload-reply jobs) is being
   * fetched; `closing`: Close-Session was sent, so a rerun sends it again (a closed session
   * answers a repeated Close with 200, docs/protocol.md "Repeated Close/Cancel and tombstones").
   */
  readonly phase: "sending" | "reply" | "closing";
  readonly replyUrl?: string | undefined;
  /** The largest fragment the server accepted after a 413, so a rerun does not ask again. */
  readonly fragmentCeiling?: number | undefined;
  readonly updatedAt: string;
}

/**
 * The state file of an upload: `FILE.bits-upload.json` beside the file, or, with a state
 * directory, `DIR/<name>.<hash of file and URL>.bits-upload.json` (one per file and URL, so a
 * directory can hold many).
 */
export function statePathFor(file: string, url: string, stateDir?: string): string {
  const absolute = resolve(file);
  if (stateDir === undefined) return `${absolute}.bits-upload.json`;
  const hash = createHash("sha256").update(`${absolute}\n${url}`).digest("hex").slice(0, 16);
  return join(resolve(stateDir), `${basename(absolute)}.${hash}.bits-upload.json`);
}

export class StateFile {
  private failed = false;

  constructor(
    readonly path: string,
    private readonly warn: (message: string) => void,
  ) {}

  /** The saved state, or undefined when there is none or it cannot be read. */
  load(): UploadState | undefined {
    let text: string;
    try {
      text = readFileSync(this.path, "utf8");
    } catch {
      return undefined;
    }
    try {
      const state = JSON.parse(text) as Partial<UploadState>;
      if (
        state.version === 1 &&
        typeof state.url === "string" &&
        typeof state.file === "string" &&
        Number.isSafeInteger(state.size) &&
        typeof state.mtimeMs === "number" &&
        typeof state.sessionId === "string" &&
        state.sessionId !== "" &&
        typeof state.protocol === "string" &&
        Number.isSafeInteger(state.offset) &&
        (state.phase === "sending" || state.phase === "reply" || state.phase === "closing")
      ) {
        return state as UploadState;
      }
    } catch {
      // fall through: an unreadable state is no state
    }
    this.warn(`ignoring ${this.path}: not a state file this client wrote`);
    return undefined;
  }

  /**
   * Writes the state atomically: a temporary file beside it, then a rename, so a kill at any
   * moment leaves the old state or the new one, never half of one. Readable by the owner only
   * (a signed URL is a credential). A failure is reported once and the upload goes on: the
   * state only saves work after an interruption.
   */
  save(state: Omit<UploadState, "version" | "updatedAt">) {
    const full: UploadState = { version: 1, ...state, updatedAt: new Date().toISOString() };
    const temporary = join(dirname(this.path), `.${basename(this.path)}.${process.pid}.tmp`);
    try {
      mkdirSync(dirname(this.path), { recursive: true });
      writeFileSync(temporary, `${JSON.stringify(full, null, 2)}\n`, { mode: 0o600 });
      renameSync(temporary, this.path);
    } catch (error) {
      rmSync(temporary, { force: true });
      if (!this.failed) this.warn(`cannot write ${this.path}: ${(error as Error).message}`);
      this.failed = true;
    }
  }

  remove() {
    rmSync(this.path, { force: true });
  }
}

/** The upload of one file to one URL, held by this process (`lockState`). */
export type StateLock = { readonly release: () => void } | { readonly heldBy: number };

/**
 * Holds the state file for this process: a second run for the same file and URL at the same
 * time would share its session and overwrite its state. The lock is `STATE.lock`, holding the
 * process ID; one left by a process that no longer runs (killed, the machine rebooted) is
 * taken over. Answers who holds it when another running process does.
 */
export function lockState(statePath: string): StateLock {
  const lock = `${statePath}.lock`;
  mkdirSync(dirname(lock), { recursive: true });
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      writeFileSync(lock, `${process.pid}\n`, { flag: "wx", mode: 0o600 });
      return { release: () => rmSync(lock, { force: true }) };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
    }
    let holder = Number.NaN;
    try {
      holder = Number(readFileSync(lock, "utf8").trim());
    } catch {
      continue; // released meanwhile: try again
    }
    if (Number.isSafeInteger(holder) && holder > 0 && holder !== process.pid && running(holder)) {
      return { heldBy: holder };
    }
    rmSync(lock, { force: true });
  }
  throw new Error(`cannot take ${lock}`);
}

/**
 * Whether a process with this ID runs (on Linux, macOS and Windows alike). A killed process
 * that its parent has not reaped yet (a zombie) still answers signal 0, but runs no more: on
 * Linux its state in /proc says so.
 */
export function running(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (error) {
    // EPERM: it runs, as another user.
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
  return !isZombie(pid);
}

/** Linux only: the state letter after the command's closing parenthesis in /proc/PID/stat. */
function isZombie(pid: number): boolean {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    // Gone since signal 0, on Linux; elsewhere there is no /proc and signal 0 has the last word.
    return process.platform === "linux";
  }
  const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
  return state === "Z" || state === "X";
}
