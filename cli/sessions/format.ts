import { isOpenState, type SessionView } from "./view.ts";

/**
 * What `bits-sessions` prints for people (docs/client.md, bits-sessions): a table that fits 100
 * columns and a detail view. Pure: the same views and width give the same text.
 *
 * Written here rather than taken from a table or formatting package: the sizes, durations and
 * the one rule for fitting the width (shorten the key from the left, then the principal) are a
 * few lines each, where `cli-table3` takes fixed column widths and cuts cells from the right,
 * and `pretty-ms` spaces its units ("3m 12s").
 */

const UNITS = ["KiB", "MiB", "GiB", "TiB", "PiB"];

/**
 * Bytes in binary units, rounded down (a size never shows more than was received): `512 B`,
 * `12.5 MiB`, `1023 MiB`, `4.0 GiB`; one decimal below 100, none from there.
 */
export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  let value = bytes;
  let unit = "B";
  for (const next of UNITS) {
    if (value < 1024) break;
    value /= 1024;
    unit = next;
  }
  const shown = value < 100 ? (Math.floor(value * 10) / 10).toFixed(1) : String(Math.floor(value));
  return `${shown} ${unit}`;
}

/** A duration in its two largest units: `12s`, `3m12s`, `2h05m`, `3d04h`. */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  const two = (n: number) => String(n).padStart(2, "0");
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${two(s % 60)}s`;
  if (s < 86_400) return `${Math.floor(s / 3600)}h${two(Math.floor(s / 60) % 60)}m`;
  return `${Math.floor(s / 86_400)}d${two(Math.floor(s / 3600) % 24)}h`;
}

/** `19.5%`, or `-` before the first fragment. */
export function formatPercent(percent: number | null): string {
  return percent === null ? "-" : `${percent.toFixed(1)}%`;
}

/** The start of a session ID, as the table shows it and `show`/`cancel` accept it. */
export function shortId(id: string): string {
  return id.replace(/^\{/, "").slice(0, 8);
}

interface Column {
  readonly header: string;
  readonly cells: readonly string[];
  readonly align: "left" | "right";
  /** How a cell too wide is shortened, and the width it may shrink to; none: never. */
  readonly shrink?: { readonly keep: "start" | "end"; readonly min: number };
}

const GAP = "  ";

/** `text` cut to `width` characters with an ellipsis, keeping its start or its end. */
export function shorten(text: string, width: number, keep: "start" | "end"): string {
  const chars = [...text];
  if (chars.length <= width) return text;
  if (width <= 1) return "…".slice(0, width);
  return keep === "start"
    ? `${chars.slice(0, width - 1).join("")}…`
    : `…${chars.slice(chars.length - width + 1).join("")}`;
}

const length = (text: string) => [...text].length;

/**
 * Lays columns out in `width` characters: each as wide as its widest cell, and if that is too
 * wide, the widest of the shrinkable ones shortened a character at a time, down to their
 * minimum (a long key and a long principal give way alike).
 */
export function renderColumns(columns: readonly Column[], width: number): string {
  const widths = columns.map((column) => Math.max(...[column.header, ...column.cells].map(length)));
  let excess = widths.reduce((sum, w) => sum + w, 0) + GAP.length * (columns.length - 1) - width;
  for (; excess > 0; excess--) {
    let widest: number | undefined;
    for (const [i, column] of columns.entries()) {
      const w = widths[i] as number;
      if (column.shrink !== undefined && w > column.shrink.min) {
        if (widest === undefined || w > (widths[widest] as number)) widest = i;
      }
    }
    if (widest === undefined) break;
    widths[widest] = (widths[widest] as number) - 1;
  }
  const rows = [columns.map((column) => column.header)];
  const count = columns[0]?.cells.length ?? 0;
  for (let row = 0; row < count; row++) rows.push(columns.map((column) => column.cells[row] ?? ""));
  return rows
    .map((cells) =>
      cells
        .map((cell, i) => {
          const column = columns[i] as Column;
          const w = widths[i] as number;
          const text = shorten(cell, w, column.shrink?.keep ?? "start");
          const pad = " ".repeat(w - length(text));
          return column.align === "right" ? pad + text : text + pad;
        })
        .join(GAP)
        .trimEnd(),
    )
    .join("\n");
}

/** The session table, and a line that counts what it shows (none: a line that says so). */
export function renderTable(
  views: readonly SessionView[],
  width: number,
  { all }: { all: boolean },
): string {
  if (views.length === 0) return all ? "No sessions." : "No open sessions.";
  const open = views.filter((view) => isOpenState(view.state)).length;
  const plural = (n: number, what: string) => `${n} ${what}${n === 1 ? "" : "s"}`;
  const footer =
    open === views.length
      ? `${plural(open, "open session")}.`
      : `${plural(views.length, "session")}, ${open} open.`;
  const cells = (pick: (view: SessionView) => string) => views.map(pick);
  const orDash = (value: number | null, format: (n: number) => string) =>
    value === null ? "-" : format(value);
  const columns: Column[] = [
    { header: "SESSION", cells: cells((v) => shortId(v.id)), align: "left" },
    { header: "STATE", cells: cells((v) => v.state), align: "left" },
    // What gives way when the table is too wide: the key (its end, the file's name, stays)
    // and the principal.
    {
      header: "PRINCIPAL",
      cells: cells((v) => v.principal),
      align: "left",
      shrink: { keep: "start", min: 9 },
    },
    {
      header: "KEY",
      cells: cells((v) => v.key),
      align: "left",
      shrink: { keep: "end", min: 12 },
    },
    { header: "RECEIVED", cells: cells((v) => formatBytes(v.received)), align: "right" },
    { header: "TOTAL", cells: cells((v) => orDash(v.total, formatBytes)), align: "right" },
    { header: "%", cells: cells((v) => formatPercent(v.percent)), align: "right" },
    { header: "PARTS", cells: cells((v) => String(v.parts)), align: "right" },
    { header: "AGE", cells: cells((v) => orDash(v.ageSeconds, formatDuration)), align: "right" },
    { header: "IDLE", cells: cells((v) => formatDuration(v.idleSeconds)), align: "right" },
  ];
  return `${renderColumns(columns, width)}\n${footer}`;
}

/** One session in full, a field a line. */
export function renderDetail(view: SessionView, nowMs: number): string {
  const when = (at: string | null) => {
    if (at === null) return "-";
    const seconds = Math.round((Date.parse(at) - nowMs) / 1000);
    const relative =
      seconds > 0 ? `in ${formatDuration(seconds)}` : `${formatDuration(-seconds)} ago`;
    return `${at} (${relative})`;
  };
  const received =
    view.total === null
      ? `${formatBytes(view.received)} (no fragment yet)`
      : `${formatBytes(view.received)} of ${formatBytes(view.total)} (${formatPercent(view.percent)}; ${view.received} of ${view.total} bytes)`;
  const lines: [string, string][] = [
    ["Session", view.id],
    ["State", view.state],
    [
      "Principal",
      `${view.principal}${view.auth === null || view.auth === view.principal ? "" : ` (${view.auth})`}`,
    ],
    ["Client", view.client ?? "-"],
    ["Key", view.key],
    ["Received", received],
  ];
  if (isOpenState(view.state) || view.state === "expired") {
    lines.push(
      ["In parts", `${formatBytes(view.bytesInParts)} in ${view.parts} part(s)`],
      ["Staged", formatBytes(view.bytesStaged)],
    );
  }
  lines.push(
    ["Fragments", `${view.fragments} (${formatBytes(view.bytesReceived)} of request bodies)`],
    ["Upload", `${view.uploadId}${view.uploadKey === null ? "" : ` at ${view.uploadKey}`}`],
  );
  if (view.uploadReply) lines.push(["Upload-reply", "yes"]);
  lines.push(
    ["Created", when(view.createdAt)],
    ["Last activity", when(view.lastActivityAt)],
    ["Expires", when(view.expiresAt)],
  );
  if (view.outcome !== null) {
    const reason = view.outcome.reason === null ? "" : `: ${view.outcome.reason}`;
    lines.push(["Outcome", `${view.outcome.kind}${reason}, ${when(view.outcome.at)}`]);
  }
  const labelWidth = Math.max(...lines.map(([label]) => label.length)) + 2;
  return lines.map(([label, value]) => `${label.padEnd(labelWidth)}${value}`).join("\n");
}
