import type { Duration, Timestamp } from "@bufbuild/protobuf/wkt";
import { RunStatus, StepStatus, TriggerKind } from "@legato/client/gen/legato/v1/run_pb";
import { ParamType } from "@legato/client/gen/legato/v1/spec_pb";

/** Milliseconds since the epoch of a Timestamp, undefined when absent. */
export function tsMs(ts?: Timestamp): number | undefined {
  if (!ts) {
    return undefined;
  }
  return Number(ts.seconds) * 1000 + Math.floor(ts.nanos / 1_000_000);
}

/** Milliseconds of a Duration, undefined when absent. */
export function durationMs(d?: Duration): number | undefined {
  if (!d) {
    return undefined;
  }
  return Number(d.seconds) * 1000 + Math.floor(d.nanos / 1_000_000);
}

const formatters = new Map<string, Intl.DateTimeFormat>();

function formatter(zone: string): Intl.DateTimeFormat {
  let f = formatters.get(zone);
  if (!f) {
    f = new Intl.DateTimeFormat("en-CA", {
      timeZone: zone,
      year: "numeric",
      month: "2-digit",
      day: "2-digit",
      hour: "2-digit",
      minute: "2-digit",
      second: "2-digit",
      hourCycle: "h23",
    });
    formatters.set(zone, f);
  }
  return f;
}

/** "2026-12-07 14:03:01 UTC" for an instant in milliseconds, in a time zone, labelled with it. */
export function formatMs(ms: number | undefined, zone = "UTC"): string {
  if (ms === undefined || !Number.isFinite(ms)) {
    return "—";
  }
  let f: Intl.DateTimeFormat;
  let label = zone;
  try {
    f = formatter(zone);
  } catch {
    f = formatter("UTC");
    label = "UTC";
  }
  const parts: Record<string, string> = {};
  for (const p of f.formatToParts(new Date(ms))) {
    parts[p.type] = p.value;
  }
  return `${parts.year}-${parts.month}-${parts.day} ${parts.hour}:${parts.minute}:${parts.second} ${label}`;
}

/** A Timestamp as "2026-12-07 14:03:01 UTC" (always with its zone), "—" when absent. */
export function formatTime(ts?: Timestamp, zone = "UTC"): string {
  return formatMs(tsMs(ts), zone);
}

/** "850 ms", "12.3 s", "4m 05s", "1h 02m"; "—" when absent. */
export function formatDuration(ms?: number): string {
  if (ms === undefined || !Number.isFinite(ms)) {
    return "—";
  }
  if (ms < 0) {
    ms = 0;
  }
  if (ms < 1000) {
    return `${Math.round(ms)} ms`;
  }
  if (ms < 60_000) {
    const s = Math.floor(ms / 100) / 10;
    return `${s.toFixed(1)} s`;
  }
  const totalSeconds = Math.floor(ms / 1000);
  if (totalSeconds < 3600) {
    const m = Math.floor(totalSeconds / 60);
    const s = totalSeconds % 60;
    return `${m}m ${String(s).padStart(2, "0")}s`;
  }
  const h = Math.floor(totalSeconds / 3600);
  const m = Math.floor((totalSeconds % 3600) / 60);
  return `${h}h ${String(m).padStart(2, "0")}m`;
}

/** "just now", "5 min ago", "3 h ago", "2 d ago" (or "in 5 min") from `now`. */
export function formatRelative(ms: number | undefined, now: number = Date.now()): string {
  if (ms === undefined || !Number.isFinite(ms)) {
    return "—";
  }
  const diff = now - ms;
  const future = diff < 0;
  const abs = Math.abs(diff);
  let text: string;
  if (abs < 45_000) {
    return future ? "in a moment" : "just now";
  } else if (abs < 3_600_000) {
    text = `${Math.max(1, Math.round(abs / 60_000))} min`;
  } else if (abs < 86_400_000) {
    text = `${Math.round(abs / 3_600_000)} h`;
  } else {
    text = `${Math.round(abs / 86_400_000)} d`;
  }
  return future ? `in ${text}` : `${text} ago`;
}

const RUN_STATUS: Record<RunStatus, string> = {
  [RunStatus.UNSPECIFIED]: "unspecified",
  [RunStatus.QUEUED]: "queued",
  [RunStatus.RUNNING]: "running",
  [RunStatus.SUCCEEDED]: "succeeded",
  [RunStatus.FAILED]: "failed",
  [RunStatus.CANCELLED]: "cancelled",
  [RunStatus.TIMED_OUT]: "timed_out",
  [RunStatus.SKIPPED]: "skipped",
};

const STEP_STATUS: Record<StepStatus, string> = {
  [StepStatus.UNSPECIFIED]: "unspecified",
  [StepStatus.PENDING]: "pending",
  [StepStatus.READY]: "ready",
  [StepStatus.LEASED]: "leased",
  [StepStatus.RUNNING]: "running",
  [StepStatus.SUCCEEDED]: "succeeded",
  [StepStatus.FAILED]: "failed",
  [StepStatus.SKIPPED]: "skipped",
  [StepStatus.UPSTREAM_FAILED]: "upstream_failed",
  [StepStatus.CANCELLED]: "cancelled",
  [StepStatus.TIMED_OUT]: "timed_out",
};

const TRIGGER: Record<TriggerKind, string> = {
  [TriggerKind.UNSPECIFIED]: "unspecified",
  [TriggerKind.SCHEDULE]: "schedule",
  [TriggerKind.EVENT]: "event",
  [TriggerKind.WEBHOOK]: "webhook",
  [TriggerKind.MANUAL]: "manual",
  [TriggerKind.API]: "api",
  [TriggerKind.BACKFILL]: "backfill",
  [TriggerKind.RERUN]: "rerun",
  [TriggerKind.PIPELINE]: "pipeline",
  [TriggerKind.TEST]: "test",
};

const PARAM_TYPE: Record<ParamType, string> = {
  [ParamType.UNSPECIFIED]: "any",
  [ParamType.STRING]: "string",
  [ParamType.INTEGER]: "integer",
  [ParamType.NUMBER]: "number",
  [ParamType.BOOLEAN]: "boolean",
  [ParamType.DATE]: "date",
  [ParamType.DATETIME]: "datetime",
  [ParamType.JSON]: "json",
};

/** Lower-case name of a run status: "queued", "running", "succeeded", "timed_out", ... */
export function runStatusName(s: RunStatus): string {
  return RUN_STATUS[s] ?? "unspecified";
}

/** Lower-case name of a step status: "pending", "ready", "leased", "upstream_failed", ... */
export function stepStatusName(s: StepStatus): string {
  return STEP_STATUS[s] ?? "unspecified";
}

/** Lower-case name of a trigger kind: "schedule", "manual", "api", ... */
export function triggerName(k: TriggerKind): string {
  return TRIGGER[k] ?? "unspecified";
}

/** Lower-case name of a parameter type: "string", "integer", ..., "any" when unspecified. */
export function paramTypeName(t: ParamType): string {
  return PARAM_TYPE[t] ?? "any";
}

/** The run status of a lower-case name, undefined for an unknown one. */
export function runStatusFromName(name: string): RunStatus | undefined {
  for (const [k, v] of Object.entries(RUN_STATUS)) {
    if (v === name) return Number(k) as RunStatus;
  }
  return undefined;
}

/** The trigger kind of a lower-case name, undefined for an unknown one. */
export function triggerFromName(name: string): TriggerKind | undefined {
  for (const [k, v] of Object.entries(TRIGGER)) {
    if (v === name) return Number(k) as TriggerKind;
  }
  return undefined;
}

/** All run status names a user can filter by (without "unspecified"). */
export const RUN_STATUS_NAMES: readonly string[] = Object.values(RUN_STATUS).filter((n) => n !== "unspecified");

/** All trigger names a user can filter by (without "unspecified", nor "test": ListRuns leaves test runs out). */
export const TRIGGER_NAMES: readonly string[] = Object.values(TRIGGER).filter((n) => n !== "unspecified" && n !== "test");

/** Whether a run status is final. */
export function isRunFinished(s: RunStatus): boolean {
  return (
    s === RunStatus.SUCCEEDED ||
    s === RunStatus.FAILED ||
    s === RunStatus.CANCELLED ||
    s === RunStatus.TIMED_OUT ||
    s === RunStatus.SKIPPED
  );
}

/** "1,234" */
export function formatCount(n?: number | bigint): string {
  if (n === undefined) {
    return "—";
  }
  return Number(n).toLocaleString("en-US");
}

/** A wall-clock time with its offset, "2026-12-08T02:00:00-05:00" → "2026-12-08 02:00:00 (UTC−05:00)". */
export function formatLocalTime(iso: string): string {
  const m = /^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2}(?::\d{2})?)(?:\.\d+)?(Z|[+-]\d{2}:?\d{2})?$/.exec(iso);
  if (!m) return iso;
  const offset = m[3] === undefined ? "" : m[3] === "Z" ? " (UTC)" : ` (UTC${m[3].replace("-", "−")})`;
  return `${m[1]} ${m[2]}${offset}`;
}
