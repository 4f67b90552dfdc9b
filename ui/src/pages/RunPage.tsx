import { useEffect, useMemo, useState, type ReactNode } from "react";
import { Link, useNavigate, useParams, useSearchParams } from "react-router-dom";
import { errorMessage, newRequestId, pipelines, runs } from "../api";
import { useCaller } from "../auth";
import { Dag } from "../components/Dag";
import { formatDuration, formatTime, runStatusName, stepStatusName, triggerName, tsMs, durationMs } from "../format";
import { RunStatus, StepStatus, type Run, type RunTrigger, type StepRun } from "@legato/client/gen/legato/v1/run_pb";
import type { PipelineSpec } from "@legato/client/gen/legato/v1/spec_pb";
import { Gantt } from "../components/run/Gantt";
import { LogView } from "../components/run/LogView";
import { ErrorNote, Section } from "../components/run/Notice";
import { RunIdText } from "../components/run/RunIdText";
import { StepDetail } from "../components/run/StepDetail";
import { StepTable } from "../components/run/StepTable";
import { useNow } from "./run/useNow";
import { useRunLive, type StreamState } from "./run/useRunLive";
import { elapsedMs, isRunActive, shortRunId } from "./run/util";
import { waitingLines } from "./run/waiting";
import "../components/run/run.css";

/** The step shown in the detail panel until the reader picks one: the first that failed,
 * else one waiting for a retry, else the one running, else the last with an output table, else the first. */
function defaultStep(run: Run): string | undefined {
  const failed = run.steps.find((s) => s.status === StepStatus.FAILED || s.status === StepStatus.TIMED_OUT);
  if (failed) return failed.name;
  const retrying = run.steps.find((s) => s.error !== "" && s.status === StepStatus.PENDING);
  if (retrying) return retrying.name;
  const running = run.steps.find((s) => s.status === StepStatus.RUNNING || s.status === StepStatus.LEASED);
  if (running) return running.name;
  const withTable = [...run.steps]
    .reverse()
    .find((s: StepRun) => s.output && (s.output.rows !== undefined || s.output.artifactId !== ""));
  if (withTable) return withTable.name;
  return run.steps[0]?.name;
}

function TriggerText({ trigger }: { trigger?: RunTrigger }) {
  if (!trigger) return <>—</>;
  const parts: ReactNode[] = [<strong key="k">{triggerName(trigger.kind)}</strong>];
  if (trigger.actor) parts.push(<span key="a"> by {trigger.actor}</span>);
  if (trigger.rerunOf)
    parts.push(
      <span key="r">
        {" "}
        · rerun of{" "}
        <Link to={`/runs/${trigger.rerunOf}`} className="mono" title={trigger.rerunOf}>
          {shortRunId(trigger.rerunOf)}
        </Link>
      </span>,
    );
  if (trigger.parentRunId)
    parts.push(
      <span key="p">
        {" "}
        · from run{" "}
        <Link to={`/runs/${trigger.parentRunId}`} className="mono" title={trigger.parentRunId}>
          {shortRunId(trigger.parentRunId)}
        </Link>
        {trigger.parentStep ? ` step ${trigger.parentStep}` : ""}
      </span>,
    );
  if (trigger.logicalTime) parts.push(<span key="l"> · for {formatTime(trigger.logicalTime)}</span>);
  if (trigger.eventId) parts.push(<span key="e"> · event <span className="mono">{trigger.eventId}</span></span>);
  if (trigger.backfillId) parts.push(<span key="b"> · backfill <span className="mono">{trigger.backfillId}</span></span>);
  return <>{parts}</>;
}

function streamText(stream: StreamState, error: string): string {
  switch (stream) {
    case "loading-logs":
      return "reading the log…";
    case "live":
      return "live";
    case "reconnecting":
      return `reconnecting (${error})`;
    default:
      return "";
  }
}

function paramsText(run: Run): string {
  if (!run.params) return "";
  return Object.entries(run.params)
    .map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`)
    .join("  ");
}

/** The steps each step needs, from the pinned pipeline version's spec. */
function usePinnedSpec(run: Run | undefined): { spec?: PipelineSpec; error: string } {
  const [spec, setSpec] = useState<PipelineSpec | undefined>(undefined);
  const [error, setError] = useState("");
  const pipeline = run?.pipeline ?? "";
  const version = run?.version ?? 0;
  useEffect(() => {
    if (!pipeline) return;
    const ac = new AbortController();
    setSpec(undefined);
    setError("");
    pipelines
      .getPipelineVersion({ pipeline, version }, { signal: ac.signal })
      .then((res) => setSpec(res.version?.spec))
      .catch((e: unknown) => {
        if (!ac.signal.aborted) setError(errorMessage(e));
      });
    return () => ac.abort();
  }, [pipeline, version]);
  return { spec, error };
}

export default function RunPage() {
  const { id = "" } = useParams();
  const navigate = useNavigate();
  const caller = useCaller();
  const [params, setParams] = useSearchParams();
  const live = useRunLive(id);
  const { run } = live;
  const active = run ? isRunActive(run.status) : false;
  const now = useNow(active);
  const { spec, error: specError } = usePinnedSpec(run);
  const [view, setView] = useState<"timeline" | "graph">("timeline");
  const [logStep, setLogStep] = useState("");
  const [busy, setBusy] = useState("");
  const [actionError, setActionError] = useState("");
  const [latestVersion, setLatestVersion] = useState(false);

  useEffect(() => {
    setLogStep("");
    setActionError("");
    setBusy("");
  }, [id]);

  const needs = useMemo(() => (spec ? new Map(spec.steps.map((s) => [s.name, s.needs])) : undefined), [spec]);
  const statuses = useMemo(() => {
    const out: Record<string, string> = {};
    for (const s of run?.steps ?? []) out[s.name] = stepStatusName(s.status);
    return out;
  }, [run?.steps]);

  if (live.error) {
    return (
      <div className="page rn-page">
        <div className="breadcrumb rn-crumbs">
          <Link to="/runs">Runs</Link> / <span className="mono">{id}</span>
        </div>
        <ErrorNote message={live.error} title="Could not read the run" />
      </div>
    );
  }
  if (!run) {
    return (
      <div className="page rn-page">
        <div className="breadcrumb rn-crumbs">
          <Link to="/runs">Runs</Link> / <span className="mono">{id}</span>
        </div>
        <p className="muted">Loading run…</p>
      </div>
    );
  }

  const status = runStatusName(run.status);
  const start = tsMs(run.startTime);
  const end = tsMs(run.endTime);
  const duration = active ? elapsedMs(start, end, now) : (durationMs(run.duration) ?? elapsedMs(start, end, now));
  const selectedName = params.get("step") ?? defaultStep(run);
  const selected = run.steps.find((s) => s.name === selectedName);
  const select = (name: string) => {
    const next = new URLSearchParams(params);
    next.set("step", name);
    setParams(next, { replace: true });
  };
  const waiting = active ? waitingLines(run, needs, now) : [];
  const operator = caller.can("operator");
  const ended = !active;
  const canRerunFailed =
    ended && (run.status === RunStatus.FAILED || run.status === RunStatus.CANCELLED || run.status === RunStatus.TIMED_OUT);

  const cancel = async () => {
    setBusy("cancel");
    setActionError("");
    try {
      const res = await runs.cancelRun({ id: run.id, reason: `cancelled by ${caller.name} in the web UI`, requestId: newRequestId() });
      if (res.run) live.applyRun(res.run);
    } catch (e) {
      setActionError(errorMessage(e));
    } finally {
      setBusy("");
    }
  };
  const rerun = async (allSteps: boolean) => {
    setBusy(allSteps ? "rerun-all" : "rerun-failed");
    setActionError("");
    try {
      const res = await runs.rerunRun({ id: run.id, allSteps, latestVersion, requestId: newRequestId() });
      if (res.run) navigate(`/runs/${res.run.id}`);
    } catch (e) {
      setActionError(errorMessage(e));
    } finally {
      setBusy("");
    }
  };

  return (
    <div className="page rn-page rn-run-page" data-run-id={run.id}>
      <div className="breadcrumb rn-crumbs">
        <Link to="/runs">Runs</Link> / <span className="mono">{run.id}</span>
      </div>
      <div className="rn-title-row">
        <h1>
          <Link to={`/pipelines/${encodeURIComponent(run.pipeline)}`} data-testid="run-pipeline">
            {run.pipeline}
          </Link>{" "}
          <span className="muted rn-version">v{run.version}</span>
        </h1>
        <span className={`badge status-${status} rn-run-status`} data-status={status} data-testid="run-status">
          {status}
        </span>
        {live.stream === "live" ? <span className="rn-live">live</span> : null}
        <span className="rn-spacer" />
        {operator ? (
          <div className="rn-actions">
            {active ? (
              <button
                type="button"
                className="btn btn-danger"
                data-testid="cancel-button"
                disabled={busy !== ""}
                onClick={() => void cancel()}
              >
                {busy === "cancel" ? "Cancelling…" : "Cancel run"}
              </button>
            ) : null}
            {ended ? (
              <label className="check" title="Rerun with the pipeline's latest version instead of this run's">
                <input type="checkbox" checked={latestVersion} onChange={(e) => setLatestVersion(e.target.checked)} />
                latest version
              </label>
            ) : null}
            {canRerunFailed ? (
              <button
                type="button"
                className="btn btn-primary"
                data-testid="rerun-failed-button"
                disabled={busy !== ""}
                onClick={() => void rerun(false)}
                title="A new run that reuses the succeeded steps' outputs and runs the failed and cancelled ones again"
              >
                {busy === "rerun-failed" ? "Starting…" : "Rerun failed steps"}
              </button>
            ) : null}
            {ended ? (
              <button
                type="button"
                className="btn"
                data-testid="rerun-all-button"
                disabled={busy !== ""}
                onClick={() => void rerun(true)}
                title="A new run of every step"
              >
                {busy === "rerun-all" ? "Starting…" : "Rerun all"}
              </button>
            ) : null}
          </div>
        ) : null}
      </div>
      <ErrorNote message={actionError} title="The action failed" />

      <dl className="rn-facts rn-run-facts">
        <div>
          <dt>Trigger</dt>
          <dd data-testid="run-trigger">
            <TriggerText trigger={run.trigger} />
          </dd>
        </div>
        <div>
          <dt>Created</dt>
          <dd>{formatTime(run.createTime)}</dd>
        </div>
        <div>
          <dt>Started</dt>
          <dd>{formatTime(run.startTime)}</dd>
        </div>
        <div>
          <dt>Ended</dt>
          <dd>{formatTime(run.endTime)}</dd>
        </div>
        <div>
          <dt>Duration</dt>
          <dd data-testid="run-duration">{formatDuration(duration)}</dd>
        </div>
        {paramsText(run) ? (
          <div className="rn-wide">
            <dt>Params</dt>
            <dd className="mono rn-ellipsis" title={paramsText(run)}>
              {paramsText(run)}
            </dd>
          </div>
        ) : null}
        {run.traceId ? (
          <div>
            <dt>Trace</dt>
            <dd className="mono rn-ellipsis" title={run.traceId}>
              {run.traceId}
            </dd>
          </div>
        ) : null}
      </dl>

      {run.error ? (
        <pre className="rn-error-pre" data-testid="run-error">
          {run.error}
        </pre>
      ) : null}

      {waiting.length > 0 ? (
        <div className="rn-waiting" data-testid="waiting-reason">
          <div className="rn-waiting-title">Why is this waiting?</div>
          <ul>
            {waiting.map((w) => (
              <li key={w.subject} data-subject={w.subject}>
                {w.subject !== "run" ? <strong>{w.subject}: </strong> : null}
                <RunIdText text={w.text} />
              </li>
            ))}
          </ul>
        </div>
      ) : null}

      <ErrorNote message={specError} title="Could not read the pipeline version" />

      <Section
        title={view === "timeline" ? "Timeline" : "Graph"}
        tools={
          spec ? (
            <div className="rn-tabs" role="tablist">
              <button
                type="button"
                role="tab"
                aria-selected={view === "timeline"}
                className={view === "timeline" ? "active" : ""}
                onClick={() => setView("timeline")}
              >
                Timeline
              </button>
              <button
                type="button"
                role="tab"
                aria-selected={view === "graph"}
                className={view === "graph" ? "active" : ""}
                onClick={() => setView("graph")}
              >
                Graph
              </button>
            </div>
          ) : undefined
        }
      >
        {view === "graph" && spec ? (
          <div className="rn-graph">
            <Dag spec={spec} statuses={statuses} onSelect={select} selected={selected?.name} />
          </div>
        ) : (
          <Gantt run={run} now={now} selected={selected?.name} onSelect={select} />
        )}
      </Section>

      <Section title={`Steps (${run.steps.length})`}>
        <StepTable steps={run.steps} now={now} selected={selected?.name} onSelect={select} />
        {selected ? (
          <StepDetail runId={run.id} step={selected} now={now} />
        ) : run.steps.length > 0 ? (
          <p className="muted">Select a step to see its attempts and output.</p>
        ) : null}
      </Section>

      <Section title="Log">
        <ErrorNote message={live.logError} title="Could not read the whole log" />
        <ErrorNote message={live.stream === "reconnecting" ? live.streamError : ""} title="Live updates interrupted" />
        <LogView
          key={run.id}
          runId={run.id}
          buffer={live.logs}
          version={live.logVersion}
          steps={run.steps.map((s) => s.name)}
          step={logStep}
          onStepChange={setLogStep}
          status={streamText(live.stream, live.streamError)}
        />
      </Section>
    </div>
  );
}
