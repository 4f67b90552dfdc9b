import { useCallback, useEffect, useState } from "react";
import { Link, useLocation, useNavigate, useParams } from "react-router-dom";
import { errorMessage, newRequestId, pipelines, runs } from "../api";
import { useCaller } from "../auth";
import { Dag } from "../components/Dag";
import { Dialog } from "../components/Dialog";
import { StatusBadge } from "../components/StatusBadge";
import { durationMs, formatDuration, formatLocalTime, formatTime, runStatusName, triggerName } from "../format";
import type { Pipeline, PipelineVersion } from "@legato/client/gen/legato/v1/pipeline_pb";
import type { PreviewScheduleResponse } from "@legato/client/gen/legato/v1/pipeline_service_pb";
import type { Run } from "@legato/client/gen/legato/v1/run_pb";
import { RunDialog } from "./pipeline/RunDialog";
import { StatsPanel } from "./pipeline/StatsPanel";
import { paramFields } from "./pipeline/params";

const VERSIONS_PAGE = 20;

function ErrorBox({ message, testId }: { message: string; testId?: string }) {
  if (!message) return null;
  return (
    <div className="error-box" role="alert" data-testid={testId ?? "error"}>
      {message}
    </div>
  );
}

function useVersions(name: string, reloadKey: number) {
  const [tokens, setTokens] = useState<string[]>([""]);
  const [page, setPage] = useState(0);
  const [items, setItems] = useState<PipelineVersion[]>([]);
  const [next, setNext] = useState("");
  const [error, setError] = useState("");
  const [loading, setLoading] = useState(true);

  useEffect(() => {
    setTokens([""]);
    setPage(0);
  }, [name, reloadKey]);

  const token = tokens[page] ?? "";
  useEffect(() => {
    let live = true;
    setLoading(true);
    pipelines
      .listPipelineVersions({ pipeline: name, pageSize: VERSIONS_PAGE, pageToken: token })
      .then((res) => {
        if (!live) return;
        setItems(res.versions);
        setNext(res.nextPageToken);
        setError("");
      })
      .catch((e: unknown) => {
        if (live) setError(errorMessage(e));
      })
      .finally(() => {
        if (live) setLoading(false);
      });
    return () => {
      live = false;
    };
  }, [name, token, reloadKey]);

  const older = () => {
    if (!next) return;
    setTokens((t) => [...t.slice(0, page + 1), next]);
    setPage((p) => p + 1);
  };
  const newer = () => setPage((p) => Math.max(0, p - 1));
  return { items, error, loading, page, hasOlder: next !== "", older, newer };
}

function SchedulePreview({ preview, error }: { preview: PreviewScheduleResponse | undefined; error: string }) {
  if (error) return <ErrorBox message={error} testId="schedule-error" />;
  if (!preview) return <div className="muted small">Loading…</div>;
  return (
    <div data-testid="schedule-preview">
      <dl className="kv" style={{ marginBottom: 10 }}>
        <dt>Cron</dt>
        <dd>
          <code>{preview.cron}</code>
        </dd>
        <dt>Time zone</dt>
        <dd>{preview.timezone || "UTC"}</dd>
        <dt>State</dt>
        <dd>
          {preview.state?.paused ? (
            <span className="tag tag-warn">paused</span>
          ) : (
            <span className="tag">active</span>
          )}
          {preview.state?.pauseReason ? <span className="muted small"> {preview.state.pauseReason}</span> : null}
        </dd>
        {(preview.state?.consecutiveFailures ?? 0) > 0 && (
          <>
            <dt>Failures in a row</dt>
            <dd>{preview.state?.consecutiveFailures}</dd>
          </>
        )}
      </dl>
      {preview.waitingReason && <div className="warn-box">{preview.waitingReason}</div>}
      {preview.fireTimes.length === 0 ? (
        <div className="muted small">No upcoming fire times.</div>
      ) : (
        <>
          <h3>
            Next fire times <span className="muted small">({preview.timezone || "UTC"})</span>
          </h3>
          <ul className="fire-list">
            {preview.fireTimes.map((f, i) => (
              <li key={i} data-testid="fire-time">
                <span className="fire-local" title={f.localTime}>
                  {f.localTime ? formatLocalTime(f.localTime) : formatTime(f.time, preview.timezone || "UTC")}
                </span>
                <span className="muted small">{formatTime(f.time, "UTC")}</span>
                {f.dstNote && (
                  <span className="dst-note" data-testid="dst-note">
                    {f.dstNote}
                  </span>
                )}
              </li>
            ))}
          </ul>
        </>
      )}
    </div>
  );
}

function RecentRuns({ name, reloadKey }: { name: string; reloadKey: number }) {
  const [items, setItems] = useState<Run[] | undefined>(undefined);
  const [error, setError] = useState("");
  useEffect(() => {
    let live = true;
    runs
      .listRuns({ pipeline: name, pageSize: 10 })
      .then((res) => {
        if (!live) return;
        setItems(res.runs);
        setError("");
      })
      .catch((e: unknown) => {
        if (live) setError(errorMessage(e));
      });
    return () => {
      live = false;
    };
  }, [name, reloadKey]);
  if (error) return <ErrorBox message={error} />;
  if (!items) return <div className="muted small">Loading…</div>;
  if (items.length === 0) return <div className="muted small">No runs yet.</div>;
  return (
    <table className="table">
      <thead>
        <tr>
          <th>Run</th>
          <th>Status</th>
          <th>Version</th>
          <th>Trigger</th>
          <th>Created</th>
          <th className="num">Duration</th>
        </tr>
      </thead>
      <tbody>
        {items.map((r) => (
          <tr key={r.id} data-testid="recent-run" data-run-id={r.id}>
            <td>
              <Link to={`/runs/${encodeURIComponent(r.id)}`} className="mono">
                {r.id}
              </Link>
            </td>
            <td>
              <StatusBadge status={runStatusName(r.status)} />
            </td>
            <td>v{r.version}</td>
            <td>{triggerName(r.trigger?.kind ?? 0)}</td>
            <td className="nowrap">{formatTime(r.createTime)}</td>
            <td className="num">{formatDuration(durationMs(r.duration))}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

export function PipelinePage() {
  const { name = "" } = useParams<{ name: string }>();
  const caller = useCaller();
  const navigate = useNavigate();
  const location = useLocation();
  const navNotice = (location.state as { notice?: string } | null)?.notice ?? "";

  const [pipeline, setPipeline] = useState<Pipeline | undefined>(undefined);
  const [loadError, setLoadError] = useState("");
  const [reloadKey, setReloadKey] = useState(0);
  const [preview, setPreview] = useState<PreviewScheduleResponse | undefined>(undefined);
  const [previewError, setPreviewError] = useState("");
  const [actionError, setActionError] = useState("");
  const [notice, setNotice] = useState("");
  const [busy, setBusy] = useState("");
  const [showRun, setShowRun] = useState(false);
  const [rollbackTo, setRollbackTo] = useState<number | undefined>(undefined);
  const [rollbackMessage, setRollbackMessage] = useState("");
  const [rollbackError, setRollbackError] = useState("");
  const [diffFrom, setDiffFrom] = useState(0);
  const [diffTo, setDiffTo] = useState(0);

  useEffect(() => {
    if (!navNotice) return;
    setNotice(navNotice);
    // The notice is for this visit: a reload of the page must not show it again.
    navigate(location.pathname + location.search, { replace: true, state: null });
  }, [navNotice, navigate, location.pathname, location.search]);

  const reload = useCallback(() => setReloadKey((k) => k + 1), []);

  useEffect(() => {
    setPipeline(undefined);
    setLoadError("");
    setActionError("");
  }, [name]);

  useEffect(() => {
    let live = true;
    pipelines
      .getPipeline({ name })
      .then((res) => {
        if (!live) return;
        setPipeline(res.pipeline);
        setLoadError("");
      })
      .catch((e: unknown) => {
        if (live) setLoadError(errorMessage(e));
      });
    return () => {
      live = false;
    };
  }, [name, reloadKey]);

  const latest = pipeline?.latestVersion ?? 0;
  useEffect(() => {
    setDiffTo(latest);
    setDiffFrom(Math.max(1, latest - 1));
  }, [latest]);

  const hasSchedule = !!pipeline?.spec?.schedule?.cron;
  useEffect(() => {
    if (!hasSchedule) {
      setPreview(undefined);
      return;
    }
    let live = true;
    pipelines
      .previewSchedule({ pipeline: name, count: 8 })
      .then((res) => {
        if (!live) return;
        setPreview(res);
        setPreviewError("");
      })
      .catch((e: unknown) => {
        if (live) setPreviewError(errorMessage(e));
      });
    return () => {
      live = false;
    };
  }, [name, hasSchedule, reloadKey]);

  const versions = useVersions(name, reloadKey);

  const act = async (label: string, fn: () => Promise<unknown>, done: string) => {
    setBusy(label);
    setActionError("");
    setNotice("");
    try {
      await fn();
      setNotice(done);
      reload();
    } catch (e) {
      setActionError(errorMessage(e));
    } finally {
      setBusy("");
    }
  };

  const doRollback = async () => {
    if (rollbackTo === undefined) return;
    setBusy("rollback");
    setRollbackError("");
    try {
      const res = await pipelines.rollbackPipeline({
        pipeline: name,
        version: rollbackTo,
        message: rollbackMessage.trim(),
        requestId: newRequestId(),
      });
      setRollbackTo(undefined);
      setRollbackMessage("");
      setActionError("");
      setNotice(
        res.created
          ? `Rolled back: version ${res.version?.number ?? ""} has the content of version ${rollbackTo}.`
          : `The latest version already has the content of version ${rollbackTo}.`,
      );
      reload();
    } catch (e) {
      setRollbackError(errorMessage(e));
    } finally {
      setBusy("");
    }
  };

  if (loadError && !pipeline) {
    return (
      <div className="page">
        <div className="breadcrumb">
          <Link to="/pipelines">Pipelines</Link>
        </div>
        <h1 style={{ marginBottom: 12 }}>{name}</h1>
        <ErrorBox message={loadError} />
      </div>
    );
  }
  if (!pipeline) {
    return <div className="page muted">Loading…</div>;
  }

  const spec = pipeline.spec;
  const archived = pipeline.archived;
  const paused = pipeline.schedule?.paused ?? false;
  const zone = spec?.schedule?.timezone || "UTC";
  const params = spec?.params ?? {};
  const fields = paramFields(params);
  const versionNumbers = Array.from({ length: latest }, (_, i) => latest - i);

  return (
    <div className="page">
      <div className="breadcrumb">
        <Link to="/pipelines">Pipelines</Link>
      </div>
      <div className="page-header">
        <h1 data-testid="pipeline-name">{pipeline.name}</h1>
        <span className="tag" title="Latest version">
          v<span data-testid="pipeline-version">{latest}</span>
        </span>
        {archived && (
          <span className="tag tag-archived" data-testid="archived-tag">
            archived
          </span>
        )}
        {paused && !archived && (
          <span className="tag tag-warn" title={pipeline.schedule?.pauseReason}>
            schedule paused
          </span>
        )}
        <span className="spacer" />
        <Link to={`/runs?pipeline=${encodeURIComponent(pipeline.name)}`} className="btn">
          All runs
        </Link>
        {caller.can("editor") && !archived && (
          <Link to={`/pipelines/${encodeURIComponent(pipeline.name)}/edit`} className="btn" data-testid="edit-button">
            Edit
          </Link>
        )}
        {caller.can("operator") && hasSchedule && !archived && !paused && (
          <button
            type="button"
            className="btn"
            disabled={busy !== ""}
            data-testid="pause-button"
            onClick={() =>
              void act("pause", () => pipelines.pauseSchedule({ pipeline: name, requestId: newRequestId() }), "Schedule paused.")
            }
          >
            Pause schedule
          </button>
        )}
        {caller.can("operator") && hasSchedule && !archived && paused && (
          <button
            type="button"
            className="btn"
            disabled={busy !== ""}
            data-testid="resume-button"
            onClick={() =>
              void act("resume", () => pipelines.resumeSchedule({ pipeline: name, requestId: newRequestId() }), "Schedule resumed.")
            }
          >
            Resume schedule
          </button>
        )}
        {caller.can("editor") && !archived && (
          <button
            type="button"
            className="btn btn-danger"
            disabled={busy !== ""}
            data-testid="archive-button"
            onClick={() =>
              void act(
                "archive",
                () => pipelines.archivePipeline({ name, requestId: newRequestId() }),
                "Archived: the pipeline is hidden from the list, its schedule and triggers are stopped.",
              )
            }
          >
            Archive
          </button>
        )}
        {caller.can("editor") && archived && (
          <button
            type="button"
            className="btn"
            disabled={busy !== ""}
            data-testid="restore-button"
            onClick={() =>
              void act("restore", () => pipelines.restorePipeline({ name, requestId: newRequestId() }), "Restored.")
            }
          >
            Restore
          </button>
        )}
        {caller.can("operator") && !archived && (
          <button type="button" className="btn btn-primary" data-testid="run-button" onClick={() => setShowRun(true)}>
            ▶ Run
          </button>
        )}
      </div>
      {pipeline.description && <p className="page-sub">{pipeline.description}</p>}
      {notice && (
        <div className="info-box" data-testid="notice">
          {notice}
        </div>
      )}
      <ErrorBox message={actionError} testId="action-error" />
      {loadError && <ErrorBox message={loadError} />}

      <div className="grid-main-side">
        <div>
          <div className="card">
            <div className="card-title">
              <h2>Steps</h2>
              <span className="spacer" />
              <span className="muted small">
                {spec?.steps.length ?? 0} step{spec?.steps.length === 1 ? "" : "s"}
              </span>
            </div>
            <div data-testid="dag">{spec ? <Dag spec={spec} /> : <div className="muted">No spec.</div>}</div>
          </div>

          <div className="card" style={{ padding: 0 }} data-testid="stats-card">
            <div className="card-title" style={{ padding: "12px 16px 0" }}>
              <h2>Stats</h2>
              <span className="spacer" />
              <span className="muted small">duration, memory and records per step</span>
            </div>
            <StatsPanel name={name} reloadKey={reloadKey} />
          </div>

          <div className="card" style={{ padding: 0 }}>
            <div className="card-title" style={{ padding: "12px 16px 0" }}>
              <h2>Versions</h2>
              <span className="spacer" />
              <label className="small muted" htmlFor="diff-from">
                Compare
              </label>
              <select
                id="diff-from"
                className="select"
                value={diffFrom}
                onChange={(ev) => setDiffFrom(Number(ev.target.value))}
                data-testid="diff-from"
                aria-label="Old version"
              >
                {versionNumbers.map((n) => (
                  <option key={n} value={n}>
                    v{n}
                  </option>
                ))}
              </select>
              <span className="muted">→</span>
              <select
                className="select"
                value={diffTo}
                onChange={(ev) => setDiffTo(Number(ev.target.value))}
                data-testid="diff-to"
                aria-label="New version"
              >
                {versionNumbers.map((n) => (
                  <option key={n} value={n}>
                    v{n}
                  </option>
                ))}
              </select>
              <button
                type="button"
                className="btn"
                disabled={diffFrom === diffTo || diffFrom === 0 || diffTo === 0}
                data-testid="diff-button"
                onClick={() => navigate(`/pipelines/${encodeURIComponent(name)}/diff?from=${diffFrom}&to=${diffTo}`)}
              >
                Show diff
              </button>
            </div>
            <div style={{ padding: "10px 0 0" }}>
              <ErrorBox message={versions.error} testId="versions-error" />
              <table className="table" data-testid="versions-table">
                <thead>
                  <tr>
                    <th>Version</th>
                    <th>Who</th>
                    <th>When</th>
                    <th>Message</th>
                    <th />
                  </tr>
                </thead>
                <tbody>
                  {versions.items.map((v) => (
                    <tr key={v.number} data-testid="version-row" data-version={v.number}>
                      <td className="nowrap">
                        <strong>v{v.number}</strong>
                        {v.number === latest && <span className="tag" style={{ marginLeft: 6 }}>latest</span>}
                      </td>
                      <td className="ellipsis" style={{ maxWidth: 160 }}>
                        {v.author || "—"}
                      </td>
                      <td className="nowrap">{formatTime(v.createTime)}</td>
                      <td>
                        {v.message || <span className="muted">—</span>}
                        {v.rollbackOf > 0 && <span className="muted small"> (rollback to v{v.rollbackOf})</span>}
                      </td>
                      <td className="nowrap" style={{ textAlign: "right" }}>
                        {v.number > 1 && (
                          <Link
                            className="btn btn-small"
                            to={`/pipelines/${encodeURIComponent(name)}/diff?from=${v.number - 1}&to=${v.number}`}
                            title={`Changes from v${v.number - 1}`}
                          >
                            Changes
                          </Link>
                        )}{" "}
                        {caller.can("editor") && !archived && v.number !== latest && (
                          <button
                            type="button"
                            className="btn btn-small"
                            data-testid="rollback-button"
                            onClick={() => {
                              setRollbackTo(v.number);
                              setRollbackMessage(`Roll back to version ${v.number}`);
                              setRollbackError("");
                            }}
                          >
                            Roll back
                          </button>
                        )}
                      </td>
                    </tr>
                  ))}
                  {!versions.loading && versions.items.length === 0 && !versions.error && (
                    <tr>
                      <td colSpan={5} className="muted">
                        No versions.
                      </td>
                    </tr>
                  )}
                </tbody>
              </table>
              {(versions.page > 0 || versions.hasOlder) && (
                <div className="pager">
                  <span>Page {versions.page + 1}</span>
                  <button type="button" className="btn btn-small" disabled={versions.page === 0} onClick={versions.newer}>
                    ← Newer
                  </button>
                  <button
                    type="button"
                    className="btn btn-small"
                    disabled={!versions.hasOlder}
                    onClick={versions.older}
                    data-testid="versions-next-page"
                  >
                    Older →
                  </button>
                </div>
              )}
            </div>
          </div>

          <div className="card">
            <div className="card-title">
              <h2>Recent runs</h2>
              <span className="spacer" />
              <Link to={`/runs?pipeline=${encodeURIComponent(name)}`} className="small">
                All runs →
              </Link>
            </div>
            <RecentRuns name={name} reloadKey={reloadKey} />
          </div>
        </div>

        <div>
          <div className="card">
            <h2>About</h2>
            <dl className="kv">
              <dt>Latest version</dt>
              <dd>v{latest}</dd>
              <dt>Created</dt>
              <dd>{formatTime(pipeline.createTime)}</dd>
              <dt>Updated</dt>
              <dd>{formatTime(pipeline.updateTime)}</dd>
              {archived && (
                <>
                  <dt>Archived</dt>
                  <dd>{formatTime(pipeline.archiveTime)}</dd>
                </>
              )}
              {spec && Object.keys(spec.labels).length > 0 && (
                <>
                  <dt>Labels</dt>
                  <dd>
                    {Object.entries(spec.labels)
                      .sort(([a], [b]) => a.localeCompare(b))
                      .map(([k, v]) => (
                        <span key={k} className="tag" style={{ marginRight: 4 }}>
                          {k}={v}
                        </span>
                      ))}
                  </dd>
                </>
              )}
              <dt>Triggers</dt>
              <dd>
                {spec && spec.triggers.length > 0
                  ? spec.triggers.map((t) => t.kind.case ?? "unknown").join(", ")
                  : "manual" + (hasSchedule ? ", schedule" : "")}
              </dd>
            </dl>
            {fields.length > 0 && (
              <>
                <h3 style={{ marginTop: 14 }}>Parameters</h3>
                <table className="table">
                  <tbody>
                    {fields.map((f) => (
                      <tr key={f.name}>
                        <td>
                          <code>{f.name}</code>
                          {f.required && <span className="req">*</span>}
                        </td>
                        <td className="muted">{f.type}</td>
                        <td className="mono ellipsis" style={{ maxWidth: 150 }} title={f.initial}>
                          {f.hasDefault ? f.initial : ""}
                        </td>
                      </tr>
                    ))}
                  </tbody>
                </table>
              </>
            )}
          </div>
          <div className="card">
            <div className="card-title">
              <h2>Schedule</h2>
            </div>
            {hasSchedule ? (
              <>
                {pipeline.schedule?.nextFireTime && !paused && !archived && (
                  <p className="small">
                    Next: <strong>{formatTime(pipeline.schedule.nextFireTime, zone)}</strong>
                  </p>
                )}
                <SchedulePreview preview={preview} error={previewError} />
              </>
            ) : (
              <div className="muted small">No schedule: runs start by hand, by API or by trigger.</div>
            )}
          </div>
        </div>
      </div>

      {showRun && (
        <RunDialog pipeline={name} version={latest} params={params} onClose={() => setShowRun(false)} />
      )}
      {rollbackTo !== undefined && (
        <Dialog
          title={`Roll back ${name} to version ${rollbackTo}`}
          onClose={() => setRollbackTo(undefined)}
          testId="rollback-dialog"
          footer={
            <>
              <button type="button" className="btn" onClick={() => setRollbackTo(undefined)} data-testid="confirm-cancel">
                Cancel
              </button>
              <button
                type="button"
                className="btn btn-primary"
                disabled={busy === "rollback"}
                onClick={() => void doRollback()}
                data-testid="confirm-ok"
              >
                {busy === "rollback" ? "Rolling back…" : "Roll back"}
              </button>
            </>
          }
        >
          <p>
            A new version {latest + 1} is made with the content of version {rollbackTo}. Runs in progress keep the version
            they started with.
          </p>
          <ErrorBox message={rollbackError} testId="rollback-error" />
          <div className="field">
            <label htmlFor="rollback-message">Message</label>
            <input
              id="rollback-message"
              className="input"
              value={rollbackMessage}
              onChange={(ev) => setRollbackMessage(ev.target.value)}
              onKeyDown={(ev) => {
                if (ev.key === "Enter") void doRollback();
              }}
              data-testid="rollback-message"
            />
          </div>
        </Dialog>
      )}
    </div>
  );
}
