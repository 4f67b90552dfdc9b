import type { StepSample, StepStats } from "@legato/client/gen/legato/v1/pipeline_service_pb";
import { StepStatus } from "@legato/client/gen/legato/v1/run_pb";
import { durationMs } from "../../format";

/** One point of a step's trend line: a counted run, oldest first. */
export interface TrendPoint {
  x: number;
  y: number;
  failed: boolean;
  runId: string;
  ms: number;
}

function failed(sample: StepSample): boolean {
  return sample.status === StepStatus.FAILED || sample.status === StepStatus.TIMED_OUT;
}

/**
 * The points of a step's duration trend in a `width` × `height` box: one per sample with a
 * duration, oldest on the left, the shortest duration at the bottom and the longest at the
 * top (a flat line in the middle when all are equal).
 */
export function trendPoints(samples: StepSample[], width: number, height: number, pad = 2): TrendPoint[] {
  const timed = samples
    .map((s) => ({ s, ms: durationMs(s.duration) }))
    .filter((t): t is { s: StepSample; ms: number } => t.ms !== undefined);
  if (timed.length === 0) return [];
  const values = timed.map((t) => t.ms);
  const low = Math.min(...values);
  const high = Math.max(...values);
  const span = width - 2 * pad;
  return timed.map((t, i) => ({
    x: pad + (timed.length === 1 ? span / 2 : (i * span) / (timed.length - 1)),
    y: high === low ? height / 2 : pad + ((high - t.ms) * (height - 2 * pad)) / (high - low),
    failed: failed(t.s),
    runId: t.s.runId,
    ms: t.ms,
  }));
}

/** The `points` attribute of an SVG polyline through `points`. */
export function polyline(points: TrendPoint[]): string {
  return points.map((p) => `${p.x.toFixed(1)},${p.y.toFixed(1)}`).join(" ");
}

/** How much of its memory limit a step's largest peak used (0..1+), undefined without both. */
export function limitShare(step: StepStats): number | undefined {
  if (step.peakMemoryBytesMax === undefined || !step.memoryLimitBytes) return undefined;
  return Number(step.peakMemoryBytesMax) / Number(step.memoryLimitBytes);
}

/** A step whose largest peak reached this share of its limit is flagged (as the run log warns). */
export const NEAR_LIMIT = 0.8;
