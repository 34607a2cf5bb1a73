import type { SessionRecord } from "../../functions/bits/session.ts";
import type { ServiceContext } from "../../functions/service/context.ts";
import {
  cancelAsOperator,
  findSession,
  storedSessions,
  withTail,
} from "../../functions/service/operator.ts";
import { formatBytes, renderDetail, renderTable } from "./format.ts";
import { byAge, isOpenState, type SessionView, sessionView } from "./view.ts";

/** What a command prints and how the process ends: 0 done, 1 not done (the message says why). */
export interface Outcome {
  readonly stdout?: string;
  readonly stderr?: string;
  readonly code: 0 | 1;
}

export interface CommandContext {
  readonly service: ServiceContext;
  /** Where, for messages. */
  readonly where: string;
  readonly json: boolean;
  /** Columns the table may take. */
  readonly width: number;
  readonly nowMs: number;
}

const json = (value: unknown) => JSON.stringify(value, null, 2);

function view(command: CommandContext, record: SessionRecord): SessionView {
  return sessionView(record, command.nowMs, command.service.settings.sessionTimeoutSeconds);
}

/** `list [--all]`: open sessions, oldest first; with `all`, ended and expired ones too. */
export async function list(command: CommandContext, { all }: { all: boolean }): Promise<Outcome> {
  const views: SessionView[] = [];
  for await (const record of storedSessions(command.service)) {
    const seen = view(command, await withTail(command.service, record));
    if (all || isOpenState(seen.state)) views.push(seen);
  }
  views.sort(byAge);
  if (command.json) {
    const at = new Date(command.nowMs).toISOString();
    return { stdout: json({ at, sessions: views }), code: 0 };
  }
  return { stdout: renderTable(views, command.width, { all }), code: 0 };
}

/** The one session `text` names (a full ID, or the start of one), or why there is none. */
async function lookUp(
  command: CommandContext,
  text: string,
): Promise<{ record: SessionRecord } | { failed: Outcome }> {
  const found = await findSession(command.service, text);
  if (found.kind === "found") return { record: await withTail(command.service, found.record) };
  const stderr =
    found.kind === "unknown"
      ? `no session ${text} in ${command.where}`
      : `${text} is the start of ${found.ids.length} sessions; give more of the ID: ${found.ids.join(", ")}`;
  return { failed: { stderr, code: 1 } };
}

/** `show ID`: one session, whatever its state. */
export async function show(command: CommandContext, text: string): Promise<Outcome> {
  const found = await lookUp(command, text);
  if ("failed" in found) return found.failed;
  const seen = view(command, found.record);
  return { stdout: command.json ? json(seen) : renderDetail(seen, command.nowMs), code: 0 };
}

/**
 * `cancel ID`: cancels an open session through Cancel-Session (functions/service/operator.ts).
 * Done (0) when the session ends up cancelled, by this command or before it; not done (1) for
 * a session that completed, expired or does not exist. With `--json`, `result` is `cancelled`,
 * `already-cancelled`, `closed` or `expired`.
 */
export async function cancel(command: CommandContext, text: string): Promise<Outcome> {
  const found = await lookUp(command, text);
  if ("failed" in found) return found.failed;
  const done = await cancelAsOperator(command.service, found.record.id);
  if (done.kind === "unknown") return { stderr: `no session ${text} in ${command.where}`, code: 1 };
  const seen = view(command, done.record);
  const { result, message, code } = cancelReport(done.kind, seen);
  if (command.json) {
    return {
      stdout: json({ result, session: seen }),
      ...(code === 1 ? { stderr: message } : {}),
      code,
    };
  }
  return code === 0 ? { stdout: message, code } : { stderr: message, code };
}

function cancelReport(kind: "cancelled" | "ended" | "expired", seen: SessionView) {
  const label = `${seen.id} (${seen.key}, ${seen.principal})`;
  if (kind === "cancelled") {
    const received =
      seen.total === null
        ? formatBytes(seen.received)
        : `${formatBytes(seen.received)} of ${formatBytes(seen.total)}`;
    return {
      result: "cancelled",
      message: `Cancelled ${label}: its upload was aborted and the ${received} received deleted.`,
      code: 0,
    } as const;
  }
  if (kind === "expired") {
    return {
      result: "expired",
      message: `Session ${label} expired at ${seen.expiresAt}: clients cannot reach it, and the cleanup releases it.`,
      code: 1,
    } as const;
  }
  if (seen.state === "cancelled") {
    return {
      result: "already-cancelled",
      message: `Session ${label} was already cancelled.`,
      code: 0,
    } as const;
  }
  const how = seen.outcome === null ? "" : ` (${seen.outcome.kind})`;
  return {
    result: seen.state,
    message: `Session ${label} is ${seen.state}${how}: nothing to cancel.`,
    code: 1,
  } as const;
}
