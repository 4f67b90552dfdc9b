import { useEffect, useState, type FormEvent } from "react";
import { Link, useSearchParams } from "react-router-dom";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { audit } from "../api";
import { actorKindName } from "../auth";
import { formatMs, formatTime } from "../format";
import { AuditOutcome, type AuditEvent } from "@legato/client/gen/legato/v1/access_pb";
import { ErrorNote, Pill } from "../components/run/Notice";
import { VirtualTable } from "../components/run/VirtualTable";
import { usePaged } from "./run/usePaged";
import { fromUtcInputValue, toUtcInputValue } from "./run/util";
import "../components/run/run.css";

const CODES = [
  "OK",
  "CANCELLED",
  "UNKNOWN",
  "INVALID_ARGUMENT",
  "DEADLINE_EXCEEDED",
  "NOT_FOUND",
  "ALREADY_EXISTS",
  "PERMISSION_DENIED",
  "RESOURCE_EXHAUSTED",
  "FAILED_PRECONDITION",
  "ABORTED",
  "OUT_OF_RANGE",
  "UNIMPLEMENTED",
  "INTERNAL",
  "UNAVAILABLE",
  "DATA_LOSS",
  "UNAUTHENTICATED",
];

/** The actions the activity log records (the mutations of docs/api.md, and the control
 * plane's own), offered as suggestions; any other text filters too. */
const ACTIONS = [
  "ApplyPipeline",
  "RollbackPipeline",
  "ArchivePipeline",
  "RestorePipeline",
  "PauseSchedule",
  "ResumeSchedule",
  "TestNotifications",
  "TriggerRun",
  "CancelRun",
  "RerunRun",
  "CreateBackfill",
  "CancelBackfill",
  "Publish",
  "DrainAgent",
  "CreateToken",
  "RevokeToken",
  "CreateAgentToken",
  "RevokeAgentToken",
  "FireSchedule",
];

function outcomeName(o: AuditOutcome): string {
  switch (o) {
    case AuditOutcome.SUCCEEDED:
      return "succeeded";
    case AuditOutcome.DENIED:
      return "denied";
    case AuditOutcome.FAILED:
      return "failed";
    default:
      return "unknown";
  }
}

const OUTCOME_TONE: Record<string, string> = { succeeded: "good", denied: "warn", failed: "bad", unknown: "off" };

function codeName(code: number): string {
  return CODES[code] ?? String(code);
}

/** A resource ("pipelines/etl", "runs/01h…") as a link to its page, when it has one. */
function ResourceLink({ resource }: { resource: string }) {
  const m = /^(pipelines|runs)\/([^/]+)$/.exec(resource);
  if (m) {
    const to = m[1] === "runs" ? `/runs/${m[2]}` : `/pipelines/${m[2]}`;
    return <Link to={to}>{resource}</Link>;
  }
  return <>{resource || "—"}</>;
}

interface FilterForm {
  pipeline: string;
  actor: string;
  action: string;
  from: string;
  to: string;
}

export default function ActivityPage() {
  const [params, setParams] = useSearchParams();
  const current: FilterForm = {
    pipeline: params.get("pipeline") ?? "",
    actor: params.get("actor") ?? "",
    action: params.get("action") ?? "",
    from: params.get("from") ?? "",
    to: params.get("to") ?? "",
  };
  const [form, setForm] = useState<FilterForm>(current);
  const key = JSON.stringify(current);
  // The form follows the URL (back and forward, shared links).
  useEffect(() => setForm(JSON.parse(key) as FilterForm), [key]);
  const fromMs = current.from ? Date.parse(current.from) : undefined;
  const toMs = current.to ? Date.parse(current.to) : undefined;
  const timeError =
    (fromMs !== undefined && Number.isNaN(fromMs) ? `"${current.from}" is not a time. ` : "") +
    (toMs !== undefined && Number.isNaN(toMs) ? `"${current.to}" is not a time.` : "");

  const list = usePaged<AuditEvent>(key, async (pageToken, signal) => {
    const res = await audit.listAuditEvents(
      {
        pageSize: 200,
        pageToken,
        pipeline: current.pipeline,
        actor: current.actor,
        action: current.action,
        startTime: fromMs !== undefined && !Number.isNaN(fromMs) ? timestampFromMs(fromMs) : undefined,
        endTime: toMs !== undefined && !Number.isNaN(toMs) ? timestampFromMs(toMs) : undefined,
      },
      { signal },
    );
    return { items: res.events, nextToken: res.nextPageToken };
  });
  const [selected, setSelected] = useState<bigint | undefined>(undefined);

  const apply = (e?: FormEvent) => {
    e?.preventDefault();
    const next = new URLSearchParams();
    for (const [k, v] of Object.entries(form)) if (v.trim()) next.set(k, v.trim());
    setParams(next);
  };
  const clear = () => {
    setForm({ pipeline: "", actor: "", action: "", from: "", to: "" });
    setParams(new URLSearchParams());
  };

  const items = list.items;
  const chosen = items.find((e) => e.id === selected);

  const renderRow = (i: number) => {
    const ev = items[i];
    const outcome = outcomeName(ev.outcome);
    return (
      <tr
        key={String(ev.id)}
        className={`vt-row rn-clickable${ev.id === selected ? " selected" : ""}`}
        data-testid="audit-row"
        data-action={ev.action}
        data-outcome={outcome}
        onClick={(e) => {
          if ((e.target as HTMLElement).closest("a")) return;
          setSelected(ev.id);
        }}
      >
        <td className="rn-time">{formatTime(ev.time)}</td>
        <td className="rn-ellipsis" title={`${ev.actor} (${actorKindName(ev.actorKind)})`}>
          {ev.actor || "—"}
          {actorKindName(ev.actorKind) !== ev.actor ? <span className="muted"> · {actorKindName(ev.actorKind)}</span> : null}
        </td>
        <td className="rn-ellipsis" title={ev.action}>
          {ev.action}
        </td>
        <td className="rn-ellipsis" title={ev.resource}>
          <ResourceLink resource={ev.resource} />
        </td>
        <td>
          <Pill tone={OUTCOME_TONE[outcome]}>{outcome}</Pill>
          {ev.code !== 0 ? <span className="muted rn-code"> {codeName(ev.code)}</span> : null}
        </td>
        <td className="rn-ellipsis rn-error-cell" title={ev.error}>
          {ev.error}
        </td>
      </tr>
    );
  };

  const setField = (k: keyof FilterForm, v: string) => setForm((f) => ({ ...f, [k]: v }));
  const fromInput = form.from && !Number.isNaN(Date.parse(form.from)) ? toUtcInputValue(Date.parse(form.from)) : "";
  const toInput = form.to && !Number.isNaN(Date.parse(form.to)) ? toUtcInputValue(Date.parse(form.to)) : "";

  return (
    <div className="page rn-page">
      <div className="rn-page-head">
        <h1>Activity</h1>
        <div className="rn-head-tools">
          <button type="button" className="btn btn-small" onClick={() => void list.reload()}>
            Refresh
          </button>
        </div>
      </div>
      <form className="rn-filters" onSubmit={apply} role="search">
        <label>
          <span>Pipeline</span>
          <input className="input" data-testid="audit-filter-pipeline" value={form.pipeline} onChange={(e) => setField("pipeline", e.target.value)} placeholder="any" />
        </label>
        <label>
          <span>Actor</span>
          <input className="input" data-testid="audit-filter-actor" value={form.actor} onChange={(e) => setField("actor", e.target.value)} placeholder="any" />
        </label>
        <label>
          <span>Action</span>
          <input className="input"
            data-testid="audit-filter-action"
            list="rn-audit-actions"
            value={form.action}
            onChange={(e) => setField("action", e.target.value)}
            placeholder="any"
          />
          <datalist id="rn-audit-actions">
            {ACTIONS.map((a) => (
              <option key={a} value={a} />
            ))}
          </datalist>
        </label>
        <label>
          <span>From (UTC)</span>
          <input
            className="input"
            type="datetime-local"
            data-testid="audit-filter-from"
            value={fromInput}
            onChange={(e) => {
              const ms = fromUtcInputValue(e.target.value);
              setField("from", ms !== undefined ? new Date(ms).toISOString() : "");
            }}
          />
        </label>
        <label>
          <span>Before (UTC)</span>
          <input
            className="input"
            type="datetime-local"
            data-testid="audit-filter-to"
            value={toInput}
            onChange={(e) => {
              const ms = fromUtcInputValue(e.target.value);
              setField("to", ms !== undefined ? new Date(ms).toISOString() : "");
            }}
          />
        </label>
        <button type="submit" className="btn btn-small btn-primary" data-testid="audit-filter-apply">
          Apply
        </button>
        {key !== JSON.stringify({ pipeline: "", actor: "", action: "", from: "", to: "" }) ? (
          <button type="button" className="btn btn-small" onClick={clear}>
            Clear
          </button>
        ) : null}
        <div className="rn-filter-summary muted">
          {fromMs !== undefined && !Number.isNaN(fromMs) ? `from ${formatMs(fromMs)} ` : ""}
          {toMs !== undefined && !Number.isNaN(toMs) ? `before ${formatMs(toMs)}` : ""}
        </div>
      </form>
      <ErrorNote message={timeError} title="Filter" />
      <ErrorNote message={list.error} title="Could not read the activity log" />
      <VirtualTable
        testId="audit-table"
        columns={[
          { header: "Time", width: "196px" },
          { header: "Actor", width: "16%" },
          { header: "Action", width: "150px" },
          { header: "Resource", width: "22%" },
          { header: "Outcome", width: "190px" },
          { header: "Error" },
        ]}
        count={items.length}
        rowHeight={36}
        renderRow={renderRow}
        maxHeight={chosen ? "calc(100vh - 520px)" : "calc(100vh - 250px)"}
        empty={<span className="muted">{list.loading ? "Loading the activity log…" : "No entry matches."}</span>}
      />
      <div className="rn-pager">
        <span className="muted">
          {items.length.toLocaleString("en-US")} entr{items.length === 1 ? "y" : "ies"} shown{list.nextToken ? ", more available" : ""}
        </span>
        {list.nextToken ? (
          <button type="button" className="btn" data-testid="next-page" disabled={list.loadingMore} onClick={() => void list.loadMore()}>
            {list.loadingMore ? "Loading…" : "Load more"}
          </button>
        ) : null}
        <ErrorNote message={list.moreError} title="Could not load more entries" />
      </div>
      {chosen ? (
        <div className="rn-step-detail" data-testid="audit-detail">
          <div className="rn-detail-head">
            <h3>
              {chosen.action} <span className="muted">#{String(chosen.id)}</span>
            </h3>
            <span className="rn-spacer" />
            <button type="button" className="btn btn-small" onClick={() => setSelected(undefined)}>
              Close
            </button>
          </div>
          <dl className="rn-facts">
            <div>
              <dt>Time</dt>
              <dd>{formatTime(chosen.time)}</dd>
            </div>
            <div>
              <dt>Actor</dt>
              <dd>
                {chosen.actor} ({actorKindName(chosen.actorKind)})
              </dd>
            </div>
            <div>
              <dt>Resource</dt>
              <dd>
                <ResourceLink resource={chosen.resource} />
              </dd>
            </div>
            <div>
              <dt>Pipeline</dt>
              <dd>{chosen.pipeline ? <Link to={`/pipelines/${chosen.pipeline}`}>{chosen.pipeline}</Link> : "—"}</dd>
            </div>
            <div>
              <dt>Outcome</dt>
              <dd>
                {outcomeName(chosen.outcome)} ({codeName(chosen.code)})
              </dd>
            </div>
            <div>
              <dt>Request id</dt>
              <dd className="mono">{chosen.requestId || "—"}</dd>
            </div>
          </dl>
          {chosen.error ? <pre className="rn-error-pre">{chosen.error}</pre> : null}
          {chosen.details && Object.keys(chosen.details).length > 0 ? (
            <pre className="rn-json">{JSON.stringify(chosen.details, null, 2)}</pre>
          ) : null}
        </div>
      ) : null}
    </div>
  );
}
