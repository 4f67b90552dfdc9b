import { useEffect, useState } from "react";
import { Link } from "react-router-dom";
import type { GetPipelineStatsResponse, StepStats } from "@legato/client/gen/legato/v1/pipeline_service_pb";
import { errorMessage, pipelines } from "../../api";
import { durationMs, formatCount, formatDuration, formatTime } from "../../format";
import { formatBytes } from "../run/util";
import { limitShare, NEAR_LIMIT, polyline, trendPoints } from "./stats";

const RUNS = 30;
const TREND_W = 120;
const TREND_H = 26;

/** A step's durations over the counted runs, oldest on the left; failed runs in red. */
function Trend({ step }: { step: StepStats }) {
  const points = trendPoints(step.samples, TREND_W, TREND_H);
  if (points.length === 0) return <span className="muted">—</span>;
  return (
    <svg
      width={TREND_W}
      height={TREND_H}
      viewBox={`0 0 ${TREND_W} ${TREND_H}`}
      role="img"
      aria-label={`duration trend of ${step.name} over ${points.length} runs`}
      data-testid="stats-trend"
      data-points={points.length}
    >
      <polyline points={polyline(points)} fill="none" stroke="var(--accent)" strokeWidth={1.5} />
      {points.map((p) => (
        <circle
          key={p.runId}
          cx={p.x}
          cy={p.y}
          r={p.failed ? 2.5 : 1.6}
          fill={p.failed ? "var(--danger)" : "var(--accent)"}
        >
          <title>{`${p.runId}: ${formatDuration(p.ms)}${p.failed ? " (failed)" : ""}`}</title>
        </circle>
      ))}
    </svg>
  );
}

function Memory({ step }: { step: StepStats }) {
  if (step.peakMemoryBytesMax === undefined) return <span className="muted">—</span>;
  const share = limitShare(step);
  const near = share !== undefined && share >= NEAR_LIMIT;
  return (
    <span data-testid="stats-memory" className={near ? "stats-near-limit" : undefined}>
      {step.peakMemoryBytesP50 !== undefined ? formatBytes(step.peakMemoryBytesP50) : "—"}
      <span className="muted"> · max </span>
      {formatBytes(step.peakMemoryBytesMax)}
      {share !== undefined ? (
        <span className={near ? undefined : "muted"} title={near ? "near the memory limit" : undefined}>
          {" "}
          of {formatBytes(step.memoryLimitBytes)} ({Math.round(share * 100)}%)
        </span>
      ) : null}
    </span>
  );
}

/**
 * The Pipeline page's Stats panel (GetPipelineStats): per step over the latest finished
 * runs, p50/p95 duration, peak memory against the limit, CPU and records, with a trend
 * line and the slowest step marked.
 */
export function StatsPanel({ name, reloadKey }: { name: string; reloadKey: number }) {
  const [stats, setStats] = useState<GetPipelineStatsResponse | undefined>(undefined);
  const [error, setError] = useState("");
  useEffect(() => {
    let live = true;
    pipelines
      .getPipelineStats({ pipeline: name, runs: RUNS })
      .then((res) => {
        if (!live) return;
        setStats(res);
        setError("");
      })
      .catch((e: unknown) => {
        if (live) setError(errorMessage(e));
      });
    return () => {
      live = false;
    };
  }, [name, reloadKey]);
  if (error) {
    return (
      <div className="error-box" role="alert" data-testid="stats-error">
        {error}
      </div>
    );
  }
  if (!stats) return <div className="muted small">Loading…</div>;
  if (stats.runs.length === 0) {
    return (
      <div className="muted small" data-testid="stats-empty">
        No finished runs yet.
      </div>
    );
  }
  const newest = stats.runs[0];
  const oldest = stats.runs[stats.runs.length - 1];
  return (
    <div data-testid="stats-panel">
      <div className="muted small" style={{ padding: "0 16px 8px" }} data-testid="stats-summary">
        The latest {stats.runs.length} finished run{stats.runs.length === 1 ? "" : "s"}, {formatTime(oldest.startTime)} →{" "}
        {formatTime(newest.startTime)}
        {stats.slowestStep ? (
          <>
            {" "}
            · slowest step <strong data-testid="stats-slowest">{stats.slowestStep}</strong> (highest p50)
          </>
        ) : null}
      </div>
      <table className="table" data-testid="stats-table">
        <thead>
          <tr>
            <th>Step</th>
            <th className="num">Runs</th>
            <th className="num">Failed</th>
            <th className="num">p50</th>
            <th className="num">p95</th>
            <th>Peak memory</th>
            <th className="num">CPU p50</th>
            <th className="num">Records p50</th>
            <th>Trend</th>
          </tr>
        </thead>
        <tbody>
          {stats.steps.map((step) => (
            <tr
              key={step.name}
              data-testid="stats-row"
              data-step={step.name}
              data-slowest={step.name === stats.slowestStep ? "true" : undefined}
            >
              <td>
                <span className="mono">{step.name}</span>
                {step.name === stats.slowestStep ? (
                  <span className="tag stats-slowest" title="the highest p50 duration">
                    slowest
                  </span>
                ) : null}
                {step.kind ? <div className="muted small">{step.kind}</div> : null}
              </td>
              <td className="num">{step.count}</td>
              <td className="num">{step.failures || <span className="muted">0</span>}</td>
              <td className="num nowrap" data-testid="stats-p50">
                {formatDuration(durationMs(step.durationP50))}
              </td>
              <td className="num nowrap">{formatDuration(durationMs(step.durationP95))}</td>
              <td>
                <Memory step={step} />
              </td>
              <td className="num nowrap">{formatDuration(durationMs(step.cpuTimeP50))}</td>
              <td className="num">{step.recordsOutP50 !== undefined ? formatCount(step.recordsOutP50) : "—"}</td>
              <td>
                <Trend step={step} />
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      <div className="muted small" style={{ padding: "6px 16px 10px" }}>
        Trend: oldest → newest; red dots are failed runs. <Link to={`/runs?pipeline=${encodeURIComponent(name)}`}>All runs</Link>
      </div>
    </div>
  );
}
