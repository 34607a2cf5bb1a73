import cliProgress from "cli-progress";
import type { UploadEvent } from "./engine.ts";

/** What a run shows while it uploads; each kind of output implements it. */
export interface Reporter {
  event(event: UploadEvent): void;
  /** Ends the display (the bar) before the final lines are printed. */
  stop(): void;
}

/** 1536 → "1.5 KiB". */
export function formatBytes(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${Math.round(bytes)} B` : `${value.toFixed(1)} ${units[unit]}`;
}

/** 75 → "1m15s". */
export function formatSeconds(seconds: number): string {
  if (!Number.isFinite(seconds)) return "?";
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}

/**
 * The sending rate over the last few seconds and the time left at that rate. The first
 * progress of a run (a resumed offset) is a starting point, not speed.
 */
export class RateMeter {
  private readonly samples: { at: number; bytes: number }[] = [];

  constructor(
    private readonly windowMs = 5000,
    private readonly now = () => Date.now(),
  ) {}

  /** Records that `bytes` are acknowledged now; answers the rate in bytes per second. */
  add(bytes: number): number {
    const at = this.now();
    this.samples.push({ at, bytes });
    while (this.samples.length > 2 && at - (this.samples[0]?.at ?? at) > this.windowMs) {
      this.samples.shift();
    }
    const first = this.samples[0] ?? { at, bytes };
    const seconds = (at - first.at) / 1000;
    return seconds > 0 ? Math.max(0, bytes - first.bytes) / seconds : 0;
  }

  /** Seconds until `total` at the current rate; NaN while no rate is known. */
  static eta(bytes: number, total: number, rate: number): number {
    return rate > 0 ? (total - bytes) / rate : bytes >= total ? 0 : Number.NaN;
  }
}

/** The human line for an event other than progress. */
export function describeEvent(event: UploadEvent): string | undefined {
  switch (event.event) {
    case "session":
      return event.resumed
        ? `resuming session ${event.sessionId} at byte ${event.offset}`
        : `session ${event.sessionId} created`;
    case "retry":
      return `${event.packet}: ${event.reason}; retry ${event.attempt} in ${(event.delayMs / 1000).toFixed(1)}s`;
    case "shrink":
      return `the server refused a fragment as too large (413); fragments are now at most ${formatBytes(event.fragmentSize)}`;
    case "restart":
      return event.reason;
    case "reply":
      return `reply of ${formatBytes(event.bytes)} written to ${event.file ?? "standard output"}`;
    case "warning":
      return `warning: ${event.message}`;
    case "progress":
      return undefined;
  }
}

const progressLine = (bytes: number, total: number, rate: number) => {
  const percent = total === 0 ? 100 : Math.floor((bytes / total) * 100);
  const line = `${formatBytes(bytes)} of ${formatBytes(total)} (${percent}%)`;
  if (rate === 0) return line; // no rate yet
  const eta = RateMeter.eta(bytes, total, rate);
  return `${line}, ${formatBytes(rate)}/s, ETA ${formatSeconds(eta)}`;
};

/** A progress bar on a terminal (standard error), with the other events printed above it. */
export class BarReporter implements Reporter {
  private readonly bars: cliProgress.MultiBar;
  private bar: cliProgress.SingleBar | undefined;
  private readonly meter = new RateMeter();

  constructor(
    private readonly total: number,
    stream: NodeJS.WriteStream = process.stderr,
  ) {
    this.bars = new cliProgress.MultiBar({
      stream,
      format: "{bar} {percentage}% | {sent} of {size} | {speed} | ETA {left}",
      barCompleteChar: "\u2588",
      barIncompleteChar: "\u2591",
      hideCursor: true,
      clearOnComplete: false,
      fps: 5,
    });
  }

  event(event: UploadEvent) {
    if (event.event !== "progress") {
      const line = describeEvent(event);
      if (line !== undefined) this.bars.log(`${line}\n`);
      if (event.event === "session") this.show(event.offset);
      return;
    }
    this.show(event.bytes);
  }

  stop() {
    this.bars.stop();
  }

  private show(bytes: number) {
    const rate = this.meter.add(bytes);
    const payload = {
      sent: formatBytes(bytes),
      size: formatBytes(this.total),
      speed: `${formatBytes(rate)}/s`,
      left: formatSeconds(RateMeter.eta(bytes, this.total, rate)),
    };
    // A zero-byte file is one empty step: shown as 1 of 1.
    const total = Math.max(1, this.total);
    const value = this.total === 0 ? 1 : bytes;
    if (this.bar === undefined) this.bar = this.bars.create(total, value, payload);
    else this.bar.update(value, payload);
  }
}

/**
 * Plain lines on standard error when it is not a terminal (a CI log): every event, and progress
 * every 10 % or every 10 seconds, whichever comes first.
 */
export class LineReporter implements Reporter {
  private readonly meter: RateMeter;
  private lastStep = -1;
  private lastAt = 0;

  constructor(
    private readonly write: (line: string) => void,
    private readonly now = () => Date.now(),
  ) {
    this.meter = new RateMeter(5000, now);
  }

  event(event: UploadEvent) {
    if (event.event !== "progress") {
      const line = describeEvent(event);
      if (line !== undefined) this.write(line);
      return;
    }
    const rate = this.meter.add(event.bytes);
    const step = event.total === 0 ? 10 : Math.floor((event.bytes / event.total) * 10);
    const at = this.now();
    if (step === this.lastStep && at - this.lastAt < 10_000) return;
    this.lastStep = step;
    this.lastAt = at;
    this.write(progressLine(event.bytes, event.total, rate));
  }

  stop() {}
}

/**
 * One JSON object per line on standard output: every event, progress at most every 250 ms (and
 * always the last), with `rate` in bytes per second and `eta` in seconds (null while unknown).
 */
export class JsonReporter implements Reporter {
  private readonly meter: RateMeter;
  private lastAt = 0;

  constructor(
    private readonly write: (record: Record<string, unknown>) => void,
    private readonly now = () => Date.now(),
  ) {
    this.meter = new RateMeter(5000, now);
  }

  event(event: UploadEvent) {
    if (event.event !== "progress") {
      this.write({ ...event });
      return;
    }
    const rate = this.meter.add(event.bytes);
    const at = this.now();
    if (event.bytes < event.total && at - this.lastAt < 250) return;
    this.lastAt = at;
    const eta = RateMeter.eta(event.bytes, event.total, rate);
    this.write({
      ...event,
      rate: Math.round(rate),
      eta: Number.isFinite(eta) ? Math.round(eta * 10) / 10 : null,
    });
  }

  stop() {}
}
