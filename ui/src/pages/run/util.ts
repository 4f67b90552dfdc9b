// Pure helpers of the run-side pages (no React, no network): tested in util.test.ts.
import { RunStatus, StepStatus } from "@legato/client/gen/legato/v1/run_pb";

export function isRunActive(s: RunStatus): boolean {
  return s === RunStatus.QUEUED || s === RunStatus.RUNNING;
}

export function isStepActive(s: StepStatus): boolean {
  return (
    s === StepStatus.PENDING ||
    s === StepStatus.READY ||
    s === StepStatus.LEASED ||
    s === StepStatus.RUNNING
  );
}

/** Run ids are lower-case ULIDs: their first characters are a timestamp shared by runs
 * created close together, so the short form is the random tail. */
export function shortRunId(id: string): string {
  return id.length > 10 ? id.slice(-8) : id;
}

/** Elapsed milliseconds between two instants; an open end counts up to `now`. */
export function elapsedMs(
  start: number | undefined,
  end: number | undefined,
  now: number,
): number | undefined {
  if (start === undefined) return undefined;
  return Math.max(0, (end ?? now) - start);
}

/** A byte size in B / KiB / MiB / GiB. */
export function formatBytes(n: bigint | number): string {
  let v = Number(n);
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${v} B` : `${v.toFixed(v >= 100 ? 0 : 1)} ${units[i]}`;
}

/** A cell of an output-table preview as text. */
export function cellText(v: unknown): string {
  if (v === null || v === undefined) return "null";
  if (typeof v === "string") return v;
  if (typeof v === "number" || typeof v === "boolean") return String(v);
  return JSON.stringify(v);
}

// ---------------------------------------------------------------------------------------
// Time filter of the runs list: the URL keeps either a relative window ("24h") or an
// absolute instant (ISO 8601), so a shared link means the same thing to whoever opens it
// (relative windows are relative to the moment the page loads).

export const SINCE_PRESETS: { value: string; label: string; ms: number }[] = [
  { value: "1h", label: "Last hour", ms: 3600_000 },
  { value: "24h", label: "Last 24 hours", ms: 86_400_000 },
  { value: "7d", label: "Last 7 days", ms: 7 * 86_400_000 },
  { value: "30d", label: "Last 30 days", ms: 30 * 86_400_000 },
];

/** The instant a `since` query value stands for; undefined for "" or an unreadable value. */
export function parseSince(value: string, now: number): number | undefined {
  if (!value) return undefined;
  const rel = /^(\d+)([mhd])$/.exec(value);
  if (rel) {
    const n = Number(rel[1]);
    const unit = rel[2] === "m" ? 60_000 : rel[2] === "h" ? 3600_000 : 86_400_000;
    return now - n * unit;
  }
  const t = Date.parse(value);
  return Number.isNaN(t) ? undefined : t;
}

/** "2026-12-07T14:03" (UTC) for a datetime-local input, from epoch ms. */
export function toUtcInputValue(ms: number): string {
  return new Date(ms).toISOString().slice(0, 16);
}

/** Epoch ms of a datetime-local input value read as UTC. */
export function fromUtcInputValue(value: string): number | undefined {
  if (!value) return undefined;
  const t = Date.parse(value.length === 16 ? `${value}:00Z` : `${value}Z`);
  return Number.isNaN(t) ? undefined : t;
}

/** The comma-separated list of a query value ("failed,cancelled"), without empties. */
export function splitList(value: string | null): string[] {
  if (!value) return [];
  return value
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "");
}

// ---------------------------------------------------------------------------------------
// Gantt layout.

export interface GanttBar {
  step: string;
  attempt: number;
  status: string;
  /** Epoch ms. */
  start: number;
  end: number;
  /** The bar is still growing (no end time yet). */
  open: boolean;
  agent: string;
  error: string;
}

export interface GanttTick {
  at: number;
  /** Fraction of the axis, 0..1. */
  x: number;
}

/** The window an axis covers: from the earliest start to the latest end (or now while
 * something is open), at least one second wide. */
export function ganttWindow(
  bars: GanttBar[],
  runStart: number | undefined,
  runEnd: number | undefined,
  now: number,
  active: boolean,
): { start: number; end: number } | undefined {
  let start = runStart;
  let end = runEnd;
  for (const b of bars) {
    if (start === undefined || b.start < start) start = b.start;
    if (end === undefined || b.end > end) end = b.end;
  }
  if (start === undefined) return undefined;
  if (active || end === undefined) end = Math.max(end ?? now, now);
  if (end - start < 1000) end = start + 1000;
  return { start, end };
}

const TICK_STEPS = [
  50, 100, 200, 250, 500, 1000, 2000, 5000, 10_000, 15_000, 30_000, 60_000, 120_000, 300_000, 600_000, 900_000,
  1_800_000, 3_600_000, 7_200_000, 10_800_000, 21_600_000, 43_200_000, 86_400_000,
];

/** The distance between ticks of an axis over [start, end]. */
export function ganttTickStep(start: number, end: number, want = 6): number {
  const span = end - start;
  return TICK_STEPS.find((s) => span / s <= want) ?? Math.ceil(span / want / 86_400_000) * 86_400_000;
}

/** Round-numbered ticks over [start, end], about `want` of them. */
export function ganttTicks(start: number, end: number, want = 6): GanttTick[] {
  const span = end - start;
  const step = ganttTickStep(start, end, want);
  const ticks: GanttTick[] = [];
  for (let at = Math.ceil(start / step) * step; at <= end; at += step) {
    ticks.push({ at, x: (at - start) / span });
  }
  return ticks;
}

/** "14:03", "14:03:05" or "14:03:05.250" of an epoch ms in UTC, for ticks `stepMs`
 * apart (the axis says the zone once). */
export function clockUtc(ms: number, stepMs: number): string {
  const iso = new Date(ms).toISOString();
  if (stepMs < 1000) return iso.slice(11, 23);
  return stepMs < 60_000 ? iso.slice(11, 19) : iso.slice(11, 16);
}
