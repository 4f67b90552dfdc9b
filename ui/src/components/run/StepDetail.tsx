import { useEffect, useState } from "react";
import { Link } from "react-router-dom";
import type { JsonObject } from "@bufbuild/protobuf";
import { errorMessage, runs } from "../../api";
import { durationMs, formatDuration, formatMs, formatTime, stepStatusName, tsMs } from "../../format";
import { StepStatus, type Artifact, type Column, type StepRun } from "@legato/client/gen/legato/v1/run_pb";
import { FailureKind } from "@legato/client/gen/legato/v1/spec_pb";
import { StatusBadge } from "../StatusBadge";
import { ErrorNote } from "./Notice";
import { RunIdText } from "./RunIdText";
import { recordsText, stepDuration } from "./StepTable";
import { downloadArtifact, isImage, saveBlob } from "../../pages/run/artifacts";
import { cellText, elapsedMs, formatBytes, shortRunId } from "../../pages/run/util";

const PREVIEW_ROWS = 50;
/** Images up to this size are shown inline; bigger ones are offered as downloads. */
const MAX_INLINE_IMAGE = 20 * 1024 * 1024;

function failureName(k: FailureKind): string {
  switch (k) {
    case FailureKind.ERROR:
      return "error";
    case FailureKind.TIMEOUT:
      return "timeout";
    case FailureKind.LOST:
      return "lost (the agent stopped renewing its lease)";
    case FailureKind.MEMORY:
      return "memory limit";
    default:
      return "";
  }
}

function ArtifactImage({ artifact }: { artifact: Artifact }) {
  const [url, setUrl] = useState("");
  const [error, setError] = useState("");
  useEffect(() => {
    const ac = new AbortController();
    let made = "";
    setUrl("");
    setError("");
    downloadArtifact(artifact.id, ac.signal)
      .then(({ blob }) => {
        made = URL.createObjectURL(blob);
        setUrl(made);
      })
      .catch((e: unknown) => {
        if (!ac.signal.aborted) setError(errorMessage(e));
      });
    return () => {
      ac.abort();
      if (made) URL.revokeObjectURL(made);
    };
  }, [artifact.id]);
  if (error) return <ErrorNote message={error} title={`Could not read ${artifact.name}`} />;
  if (!url) return <div className="rn-image-loading muted">Loading {artifact.name}…</div>;
  return <img className="rn-artifact-image" src={url} alt={artifact.name} data-testid="artifact-image" />;
}

function ArtifactRow({ artifact }: { artifact: Artifact }) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState("");
  const save = async () => {
    setBusy(true);
    setError("");
    try {
      const { blob } = await downloadArtifact(artifact.id);
      saveBlob(blob, artifact.name || artifact.id);
    } catch (e) {
      setError(errorMessage(e));
    } finally {
      setBusy(false);
    }
  };
  const inline = isImage(artifact.mediaType) && Number(artifact.sizeBytes) <= MAX_INLINE_IMAGE;
  return (
    <div className="rn-artifact" data-testid="artifact" data-media-type={artifact.mediaType}>
      <div className="rn-artifact-head">
        <strong>{artifact.name || artifact.id}</strong>
        <span className="muted">
          {artifact.mediaType || "unknown type"} · {formatBytes(artifact.sizeBytes)}
        </span>
        <button type="button" className="btn btn-small" onClick={() => void save()} disabled={busy}>
          {busy ? "Downloading…" : "Download"}
        </button>
      </div>
      <ErrorNote message={error} title="Download failed" />
      {inline ? <ArtifactImage artifact={artifact} /> : null}
    </div>
  );
}

function OutputPreview({ runId, step, columns }: { runId: string; step: StepRun; columns: Column[] }) {
  const [rows, setRows] = useState<JsonObject[] | undefined>(undefined);
  const [error, setError] = useState("");
  const key = `${runId}/${step.name}/${step.attempt}/${step.output?.artifactId ?? ""}`;
  useEffect(() => {
    const ac = new AbortController();
    setRows(undefined);
    setError("");
    runs
      .getStepOutput({ runId, step: step.name, limit: PREVIEW_ROWS }, { signal: ac.signal })
      .then((res) => setRows(res.rows))
      .catch((e: unknown) => {
        if (!ac.signal.aborted) setError(errorMessage(e));
      });
    return () => ac.abort();
    // `key` names what the preview depends on.
  }, [key]);
  if (error) return <ErrorNote message={error} title="Could not read the output" />;
  if (!rows) return <div className="muted">Loading the first rows…</div>;
  // The columns of the summary, in order, then any a row has beyond them.
  const names = columns.map((c) => c.name);
  for (const r of rows) for (const k of Object.keys(r)) if (!names.includes(k)) names.push(k);
  const types = new Map(columns.map((c) => [c.name, c.type]));
  return (
    <div className="rn-output-scroll">
      <table className="rn-table rn-output" data-testid="output-table" data-step={step.name}>
        <thead>
          <tr>
            {names.map((n) => (
              <th key={n} title={types.get(n)}>
                {n}
                {types.get(n) ? <span className="rn-coltype">{types.get(n)}</span> : null}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>
          {rows.length === 0 ? (
            <tr>
              <td colSpan={Math.max(1, names.length)} className="muted">
                The table has no rows.
              </td>
            </tr>
          ) : (
            rows.map((r, i) => (
              <tr key={i}>
                {names.map((n) => {
                  const v = r[n];
                  return (
                    <td key={n} className={v === null || v === undefined ? "muted" : typeof v === "number" ? "rn-num" : undefined}>
                      {cellText(v)}
                    </td>
                  );
                })}
              </tr>
            ))
          )}
        </tbody>
      </table>
    </div>
  );
}

export interface StepDetailProps {
  runId: string;
  step: StepRun;
  now: number;
}

/** Everything about one step: facts, its attempts, its error, its output. */
export function StepDetail({ runId, step, now }: StepDetailProps) {
  const status = stepStatusName(step.status);
  const output = step.output;
  const hasTable = !!output && (output.rows !== undefined || output.artifactId !== "");
  const values = output?.values && Object.keys(output.values).length > 0 ? output.values : undefined;
  const next = tsMs(step.nextAttemptTime);
  return (
    <div className="rn-step-detail" data-testid="step-detail" data-step={step.name}>
      <div className="rn-detail-head">
        <h3>{step.name}</h3>
        <StatusBadge status={status} />
        {step.kind ? <span className="muted">{step.kind} step</span> : null}
      </div>
      <dl className="rn-facts">
        <div>
          <dt>Agent</dt>
          <dd>{step.agent || "—"}</dd>
        </div>
        <div>
          <dt>Started</dt>
          <dd>{formatTime(step.startTime)}</dd>
        </div>
        <div>
          <dt>Ended</dt>
          <dd>{formatTime(step.endTime)}</dd>
        </div>
        <div>
          <dt>Duration</dt>
          <dd>{formatDuration(stepDuration(step, now))}</dd>
        </div>
        <div>
          <dt>Records in → out</dt>
          <dd>{recordsText(step.recordsIn, step.recordsOut)}</dd>
        </div>
        {failureName(step.failureKind) ? (
          <div>
            <dt>Failure</dt>
            <dd>{failureName(step.failureKind)}</dd>
          </div>
        ) : null}
        {next !== undefined ? (
          <div>
            <dt>Next attempt</dt>
            <dd>
              {formatMs(next)} {next > now ? <span className="muted">(in {formatDuration(next - now)})</span> : null}
            </dd>
          </div>
        ) : null}
        {step.childRunId ? (
          <div>
            <dt>Started run</dt>
            <dd>
              <Link to={`/runs/${step.childRunId}`} className="mono">
                {shortRunId(step.childRunId)}
              </Link>
            </dd>
          </div>
        ) : null}
      </dl>
      {step.waitingReason ? (
        <p className="rn-note">
          <RunIdText text={step.waitingReason} />
        </p>
      ) : null}
      {step.error ? <pre className="rn-error-pre">{step.error}</pre> : null}

      {step.attempts.length > 0 ? (
        <>
          <h4>Attempts</h4>
          <table className="rn-table rn-attempts">
            <thead>
              <tr>
                <th style={{ width: "40px" }}>#</th>
                <th style={{ width: "118px" }}>Status</th>
                <th>Agent</th>
                <th>Started</th>
                <th>Ended</th>
                <th className="rn-num">Duration</th>
                <th className="rn-num">Records in → out</th>
                <th>Error</th>
              </tr>
            </thead>
            <tbody>
              {step.attempts.map((a) => {
                const open = a.endTime === undefined;
                const ms = open ? elapsedMs(tsMs(a.startTime), undefined, now) : durationMs(a.duration);
                return (
                  <tr key={a.number} data-testid="attempt-row" data-attempt={a.number} data-status={stepStatusName(a.status)}>
                    <td>{a.number}</td>
                    <td>
                      <StatusBadge status={stepStatusName(a.status)} />
                    </td>
                    <td>{a.agent || "—"}</td>
                    <td className="rn-time">{formatTime(a.startTime)}</td>
                    <td className="rn-time">{formatTime(a.endTime)}</td>
                    <td className="rn-num">{formatDuration(ms)}</td>
                    <td className="rn-num">{recordsText(a.recordsIn, a.recordsOut)}</td>
                    <td className="rn-attempt-error" data-testid="attempt-error">
                      {a.error}
                      {failureName(a.failureKind) ? <span className="muted"> ({failureName(a.failureKind)})</span> : null}
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </>
      ) : null}

      {values ? (
        <>
          <h4>Values</h4>
          <dl className="rn-values">
            {Object.entries(values).map(([k, v]) => (
              <div key={k}>
                <dt>{k}</dt>
                <dd className="mono">{cellText(v)}</dd>
              </div>
            ))}
          </dl>
        </>
      ) : null}

      {hasTable && output ? (
        <>
          <h4>
            Output table{" "}
            <span className="muted">
              {output.rows !== undefined ? `${Number(output.rows).toLocaleString("en-US")} rows` : ""}
              {output.columns.length > 0 ? ` × ${output.columns.length} columns` : ""} · first {PREVIEW_ROWS} shown
            </span>
          </h4>
          <OutputPreview runId={runId} step={step} columns={output.columns} />
        </>
      ) : null}

      {output && output.artifacts.length > 0 ? (
        <>
          <h4>Files</h4>
          <div className="rn-artifacts">
            {output.artifacts.map((a) => (
              <ArtifactRow key={a.id} artifact={a} />
            ))}
          </div>
        </>
      ) : null}

      {!hasTable && !values && !(output && output.artifacts.length > 0) && step.status === StepStatus.SUCCEEDED ? (
        <p className="muted">This step returned no output.</p>
      ) : null}
    </div>
  );
}
