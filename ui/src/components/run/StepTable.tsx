import { Link } from "react-router-dom";
import { durationMs, formatCount, formatDuration, formatTime, stepStatusName, tsMs } from "../../format";
import { StepStatus, type StepRun } from "@legato/client/gen/legato/v1/run_pb";
import { StatusBadge } from "../StatusBadge";
import { RunIdText } from "./RunIdText";
import { elapsedMs, formatBytes, isStepActive, shortRunId } from "../../pages/run/util";

/** Duration of a step: counting up while it runs. */
export function stepDuration(step: StepRun, now: number): number | undefined {
  if (isStepActive(step.status)) return elapsedMs(tsMs(step.startTime), tsMs(step.endTime), now);
  return durationMs(step.duration) ?? elapsedMs(tsMs(step.startTime), tsMs(step.endTime), now);
}

export function recordsText(recordsIn?: bigint, recordsOut?: bigint): string {
  if (recordsIn === undefined && recordsOut === undefined) return "—";
  return `${formatCount(recordsIn)} → ${formatCount(recordsOut)}`;
}

/** Peak memory of the latest attempt, "412 MiB / 512 MiB" against its limit; "—" unmeasured. */
export function memoryText(step: StepRun): string {
  if (step.peakMemoryBytes === undefined) return "—";
  const peak = formatBytes(step.peakMemoryBytes);
  return step.memoryLimitBytes ? `${peak} / ${formatBytes(step.memoryLimitBytes)}` : peak;
}

function outputText(step: StepRun): string {
  const o = step.output;
  if (!o) return "";
  const parts: string[] = [];
  if (o.rows !== undefined) parts.push(`${formatCount(o.rows)} rows × ${o.columns.length} cols`);
  const values = o.values ? Object.keys(o.values).length : 0;
  if (values > 0) parts.push(`${values} value${values === 1 ? "" : "s"}`);
  if (o.artifacts.length > 0) {
    const size = o.artifacts.reduce((n, a) => n + Number(a.sizeBytes), 0);
    parts.push(`${o.artifacts.length} file${o.artifacts.length === 1 ? "" : "s"} (${formatBytes(size)})`);
  }
  return parts.join(", ");
}

export interface StepTableProps {
  steps: StepRun[];
  now: number;
  selected?: string;
  onSelect: (step: string) => void;
}

/** One row per step: status, attempts, records in → out, duration, peak memory, CPU, error, outputs. */
export function StepTable({ steps, now, selected, onSelect }: StepTableProps) {
  return (
    <div className="rn-table-wrap">
      <table className="rn-table rn-steps" data-testid="step-table">
        <thead>
          <tr>
            <th style={{ width: "17%" }}>Step</th>
            <th style={{ width: "124px" }}>Status</th>
            <th style={{ width: "70px" }} className="rn-num">
              Attempts
            </th>
            <th style={{ width: "80px" }}>Agent</th>
            <th style={{ width: "130px" }} className="rn-num">
              Records in → out
            </th>
            <th style={{ width: "84px" }} className="rn-num">
              Duration
            </th>
            <th style={{ width: "130px" }} className="rn-num">
              Peak memory
            </th>
            <th style={{ width: "70px" }} className="rn-num">
              CPU
            </th>
            <th>Error / note</th>
            <th style={{ width: "16%" }}>Output</th>
          </tr>
        </thead>
        <tbody>
          {steps.map((step) => {
            const status = stepStatusName(step.status);
            const note =
              step.status === StepStatus.PENDING || step.status === StepStatus.READY || step.status === StepStatus.SUCCEEDED
                ? step.waitingReason
                : "";
            return (
              <tr
                key={step.name}
                className={`rn-clickable${selected === step.name ? " selected" : ""}`}
                data-testid="step-row"
                data-step={step.name}
                data-status={status}
                tabIndex={0}
                aria-selected={selected === step.name}
                onClick={(e) => {
                  if ((e.target as HTMLElement).closest("a")) return;
                  onSelect(step.name);
                }}
                onKeyDown={(e) => {
                  if (e.key === "Enter" || e.key === " ") {
                    e.preventDefault();
                    onSelect(step.name);
                  }
                }}
              >
                <td>
                  <div className="rn-step-name">{step.name}</div>
                  {step.kind ? <div className="rn-sub muted">{step.kind}</div> : null}
                </td>
                <td>
                  <StatusBadge status={status} />
                </td>
                <td className="rn-num">{step.attempts.length || step.attempt || 0}</td>
                <td className="rn-ellipsis" title={step.agent}>
                  {step.agent || <span className="muted">—</span>}
                </td>
                <td className="rn-num">{recordsText(step.recordsIn, step.recordsOut)}</td>
                <td className="rn-num" title={`started ${formatTime(step.startTime)}, ended ${formatTime(step.endTime)}`}>
                  {formatDuration(stepDuration(step, now))}
                </td>
                <td
                  className="rn-num"
                  data-testid="step-memory"
                  title={step.memoryLimitBytes ? "peak memory / memory limit" : "peak memory"}
                >
                  {memoryText(step)}
                </td>
                <td className="rn-num" data-testid="step-cpu" title="CPU time (user + system)">
                  {formatDuration(durationMs(step.cpuTime))}
                </td>
                <td>
                  {step.error ? (
                    <div className="rn-step-error" data-testid="step-error" title={step.error}>
                      {step.error}
                    </div>
                  ) : note ? (
                    <div className="rn-sub muted">
                      <RunIdText text={note} />
                    </div>
                  ) : null}
                  {step.childRunId ? (
                    <div className="rn-sub">
                      started run <Link to={`/runs/${step.childRunId}`}>{shortRunId(step.childRunId)}</Link>
                    </div>
                  ) : null}
                </td>
                <td className="rn-sub">{outputText(step) || <span className="muted">—</span>}</td>
              </tr>
            );
          })}
        </tbody>
      </table>
    </div>
  );
}
