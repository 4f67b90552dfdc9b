import { useEffect, useMemo, useState } from "react";
import { Link, useParams, useSearchParams } from "react-router-dom";
import { errorMessage, pipelines } from "../api";
import { formatTime } from "../format";
import type { PipelineDiff, PipelineVersion } from "@legato/client/gen/legato/v1/pipeline_pb";
import { diffStats, diffToRows, type DiffCell } from "./pipeline/diffRows";

interface Side {
  version?: PipelineVersion;
  yaml: string;
}

function Cell({ cell, side }: { cell: DiffCell | null; side: "old" | "new" }) {
  if (!cell) {
    return (
      <div className="diff-cell diff-line" data-kind="empty" aria-hidden="true">
        <span className="diff-no" />
        <span className="diff-sign" />
        <span className="diff-text" />
      </div>
    );
  }
  const sign = cell.kind === "added" ? "+" : cell.kind === "removed" ? "−" : "";
  return (
    <div className="diff-cell diff-line" data-testid="diff-line" data-kind={cell.kind} data-side={side} data-line={cell.no}>
      <span className="diff-no">{cell.no}</span>
      <span className="diff-sign">{sign}</span>
      <span className="diff-text">{cell.text}</span>
    </div>
  );
}

function parseVersion(v: string | null): number {
  const n = Number(v);
  return Number.isInteger(n) && n > 0 ? n : 0;
}

export function PipelineDiffPage() {
  const { name = "" } = useParams<{ name: string }>();
  const [params, setParams] = useSearchParams();
  const from = parseVersion(params.get("from"));
  const to = parseVersion(params.get("to"));
  const [sides, setSides] = useState<{ old: Side; new: Side } | undefined>(undefined);
  const [summary, setSummary] = useState<PipelineDiff | undefined>(undefined);
  const [latest, setLatest] = useState(0);
  const [error, setError] = useState("");
  const [summaryError, setSummaryError] = useState("");

  useEffect(() => {
    let live = true;
    setSides(undefined);
    setError("");
    if (!from || !to) {
      setError("Choose two versions to compare (from and to).");
      return;
    }
    Promise.all([
      pipelines.getPipelineVersion({ pipeline: name, version: from }),
      pipelines.getPipelineVersion({ pipeline: name, version: to }),
    ])
      .then(([a, b]) => {
        if (!live) return;
        setSides({ old: { version: a.version, yaml: a.yaml }, new: { version: b.version, yaml: b.yaml } });
      })
      .catch((e: unknown) => {
        if (live) setError(errorMessage(e));
      });
    return () => {
      live = false;
    };
  }, [name, from, to]);

  useEffect(() => {
    let live = true;
    setSummary(undefined);
    setSummaryError("");
    if (!from || !to) return;
    pipelines
      .diffPipelineVersions({ pipeline: name, fromVersion: from, toVersion: to })
      .then((res) => {
        if (live) setSummary(res.diff);
      })
      .catch((e: unknown) => {
        if (live) setSummaryError(errorMessage(e));
      });
    return () => {
      live = false;
    };
  }, [name, from, to]);

  useEffect(() => {
    let live = true;
    pipelines
      .getPipeline({ name })
      .then((res) => {
        if (live) setLatest(res.pipeline?.latestVersion ?? 0);
      })
      .catch(() => {
        // The versions themselves report a missing pipeline; the pickers just stay as they are.
      });
    return () => {
      live = false;
    };
  }, [name]);

  const rows = useMemo(() => (sides ? diffToRows(sides.old.yaml, sides.new.yaml) : []), [sides]);
  const stats = useMemo(() => diffStats(rows), [rows]);
  const choices = Array.from({ length: Math.max(latest, from, to) }, (_, i) => Math.max(latest, from, to) - i);

  const setVersion = (key: "from" | "to", v: number) => {
    const p = new URLSearchParams(params);
    p.set(key, String(v));
    setParams(p, { replace: true });
  };

  return (
    <div className="page">
      <div className="breadcrumb">
        <Link to="/pipelines">Pipelines</Link> / <Link to={`/pipelines/${encodeURIComponent(name)}`}>{name}</Link>
      </div>
      <div className="page-header">
        <h1>
          Changes v{from || "?"} → v{to || "?"}
        </h1>
        <span className="spacer" />
        <select className="select" value={from} onChange={(ev) => setVersion("from", Number(ev.target.value))} aria-label="Old version">
          {choices.map((n) => (
            <option key={n} value={n}>
              v{n}
            </option>
          ))}
        </select>
        <span className="muted">→</span>
        <select className="select" value={to} onChange={(ev) => setVersion("to", Number(ev.target.value))} aria-label="New version">
          {choices.map((n) => (
            <option key={n} value={n}>
              v{n}
            </option>
          ))}
        </select>
        <button
          type="button"
          className="btn"
          onClick={() => {
            const p = new URLSearchParams(params);
            p.set("from", String(to));
            p.set("to", String(from));
            setParams(p, { replace: true });
          }}
        >
          Swap
        </button>
      </div>
      {error && (
        <div className="error-box" role="alert" data-testid="error">
          {error}
        </div>
      )}
      {summaryError && (
        <div className="error-box" role="alert">
          {summaryError}
        </div>
      )}
      {sides && (
        <>
          <div className="diff-summary">
            <span className="diff-add-count">+{stats.added}</span>
            <span className="diff-del-count">−{stats.removed}</span>
            {summary && summary.identical && <span>The two versions have the same content.</span>}
            {summary && summary.stepsAdded.length > 0 && <span>Steps added: {summary.stepsAdded.join(", ")}</span>}
            {summary && summary.stepsRemoved.length > 0 && <span>Steps removed: {summary.stepsRemoved.join(", ")}</span>}
            {summary && summary.stepsChanged.length > 0 && (
              <span>
                Steps changed: {summary.stepsChanged.map((c) => `${c.step} (${c.fields.join(", ")})`).join("; ")}
              </span>
            )}
            {summary && summary.fieldsChanged.length > 0 && <span>Fields changed: {summary.fieldsChanged.join(", ")}</span>}
          </div>
          <div className="diff-view" data-testid="diff-view">
            <div className="diff-head">
              <div>
                v{sides.old.version?.number ?? from} · {sides.old.version?.author || "—"} ·{" "}
                {formatTime(sides.old.version?.createTime)}
                {sides.old.version?.message ? ` · ${sides.old.version.message}` : ""}
              </div>
              <div>
                v{sides.new.version?.number ?? to} · {sides.new.version?.author || "—"} ·{" "}
                {formatTime(sides.new.version?.createTime)}
                {sides.new.version?.message ? ` · ${sides.new.version.message}` : ""}
              </div>
            </div>
            {rows.map((r, i) => (
              <div className="diff-row" key={i}>
                <Cell cell={r.left} side="old" />
                <Cell cell={r.right} side="new" />
              </div>
            ))}
          </div>
        </>
      )}
      {!sides && !error && <div className="muted">Loading…</div>}
    </div>
  );
}
