import { useMemo } from "react";
import { formatDuration, formatMs, stepStatusName, tsMs } from "../../format";
import { StepStatus, type Run, type StepRun } from "@legato/client/gen/legato/v1/run_pb";
import { RunIdText } from "./RunIdText";
import { clockUtc, ganttTickStep, ganttTicks, ganttWindow, isRunActive, type GanttBar } from "../../pages/run/util";

/** The bars of a step: one per attempt that started (retries are separate bars). */
export function stepBars(step: StepRun, openEnd: number): GanttBar[] {
  const bars: GanttBar[] = [];
  for (const a of step.attempts) {
    const start = tsMs(a.startTime);
    if (start === undefined) continue;
    const end = tsMs(a.endTime);
    bars.push({
      step: step.name,
      attempt: a.number,
      status: stepStatusName(a.status),
      start,
      end: end ?? Math.max(start, openEnd),
      open: end === undefined,
      agent: a.agent,
      error: a.error,
    });
  }
  if (bars.length === 0 && step.kind === "trigger") {
    // A trigger step runs on the control plane: it has no attempt rows, its own times
    // are its bar. (A step reused by a rerun has no attempts either, and times from the
    // run it was reused from: it gets no bar.)
    const start = tsMs(step.startTime);
    if (start !== undefined) {
      const end = tsMs(step.endTime);
      bars.push({
        step: step.name,
        attempt: step.attempt || 1,
        status: stepStatusName(step.status),
        start,
        end: end ?? Math.max(start, openEnd),
        open: end === undefined,
        agent: step.agent,
        error: step.error,
      });
    }
  }
  return bars;
}

function pct(x: number): string {
  return `${(Math.min(1, Math.max(0, x)) * 100).toFixed(3)}%`;
}

export interface GanttProps {
  run: Run;
  now: number;
  selected?: string;
  onSelect?: (step: string) => void;
}

/** A timeline of the run's steps: a row per step, a bar per attempt, a UTC time axis. */
export function Gantt({ run, now, selected, onSelect }: GanttProps) {
  const active = isRunActive(run.status);
  const runEnd = tsMs(run.endTime);
  const openEnd = active ? now : (runEnd ?? now);
  const rows = useMemo(
    () => run.steps.map((step) => ({ step, bars: stepBars(step, openEnd) })),
    [run.steps, openEnd],
  );
  const all = rows.flatMap((r) => r.bars);
  const base = ganttWindow(all, tsMs(run.startTime), runEnd, now, active);
  // While the run is active, the axis reaches the next retry (a marker in the future).
  const nextRetry = active
    ? Math.max(0, ...run.steps.map((s) => tsMs(s.nextAttemptTime) ?? 0))
    : 0;
  const win = base && nextRetry > base.end ? { start: base.start, end: nextRetry + (nextRetry - base.start) * 0.03 } : base;

  if (run.steps.length === 0) {
    return (
      <div className="gantt gantt-empty muted" data-testid="gantt">
        This run has no steps.
      </div>
    );
  }
  if (!win || all.length === 0) {
    return (
      <div className="gantt gantt-empty muted" data-testid="gantt">
        No step has started yet.
      </div>
    );
  }
  const span = win.end - win.start;
  const ticks = ganttTicks(win.start, win.end);
  const tickStep = ganttTickStep(win.start, win.end);
  const x = (t: number) => (t - win.start) / span;

  return (
    <div className="gantt" data-testid="gantt">
      <div className="gantt-row gantt-axis-row">
        <div className="gantt-label gantt-axis-title">
          Step <span className="muted">· times UTC</span>
        </div>
        <div className="gantt-track gantt-axis" aria-label={`From ${formatMs(win.start)} to ${formatMs(win.end)}`}>
          {ticks.map((t) => (
            <div key={t.at} className={`gantt-tick${t.x > 0.9 ? " end" : ""}`} style={{ left: pct(t.x) }}>
              <span>{clockUtc(t.at, tickStep)}</span>
            </div>
          ))}
        </div>
      </div>
      {rows.map(({ step, bars }) => {
        const status = stepStatusName(step.status);
        const next = tsMs(step.nextAttemptTime);
        return (
          <div
            key={step.name}
            className={`gantt-row${selected === step.name ? " selected" : ""}${onSelect ? " rn-clickable" : ""}`}
            onClick={onSelect ? () => onSelect(step.name) : undefined}
          >
            <div className="gantt-label" title={`${step.name}: ${status}`}>
              <span className={`gantt-dot dot-${status}`} aria-hidden="true" />
              <span className="gantt-name">{step.name}</span>
            </div>
            <div className="gantt-track">
              {ticks.map((t) => (
                <div key={t.at} className="gantt-grid" style={{ left: pct(t.x) }} />
              ))}
              {bars.map((b) => {
                const left = x(b.start);
                const width = Math.max(0, x(b.end) - left);
                const tip = [
                  `${b.step} · attempt ${b.attempt} · ${b.status.replace(/_/g, " ")}`,
                  `${formatMs(b.start)} → ${b.open ? (active ? "now" : "—") : formatMs(b.end)}`,
                  `duration ${formatDuration(b.end - b.start)}`,
                  b.agent ? `agent ${b.agent}` : "",
                  b.error ? `error: ${b.error}` : "",
                ]
                  .filter(Boolean)
                  .join("\n");
                return (
                  <div
                    key={b.attempt}
                    className={`gantt-bar bar-${b.status}${b.open ? " open" : ""}`}
                    data-testid="gantt-bar"
                    data-step={b.step}
                    data-attempt={b.attempt}
                    data-status={b.status}
                    style={{ left: pct(left), width: pct(width) }}
                    title={tip}
                  >
                    {bars.length > 1 && width > 0.03 ? <span className="gantt-bar-label">#{b.attempt}</span> : null}
                  </div>
                );
              })}
              {bars.length === 0 && step.waitingReason && step.status === StepStatus.SUCCEEDED ? (
                <div className="gantt-note muted">
                  <RunIdText text={step.waitingReason} />
                </div>
              ) : null}
              {next !== undefined && active ? (
                <div
                  className="gantt-retry"
                  style={{ left: pct(x(next)) }}
                  title={`next attempt at ${formatMs(next)}`}
                />
              ) : null}
              {active ? <div className="gantt-now" style={{ left: pct(x(now)) }} title={`now: ${formatMs(now)}`} /> : null}
            </div>
          </div>
        );
      })}
    </div>
  );
}
