import { useCallback, useEffect, useMemo, useRef, useState } from "react";
import { Link, useNavigate, useSearchParams } from "react-router-dom";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { errorMessage, pipelines, runs } from "../api";
import {
  formatDuration,
  formatMs,
  formatTime,
  RUN_STATUS_NAMES,
  runStatusFromName,
  runStatusName,
  TRIGGER_NAMES,
  triggerFromName,
  triggerName,
  tsMs,
} from "../format";
import type { Run, RunStatus, TriggerKind } from "@legato/client/gen/legato/v1/run_pb";
import { StatusBadge } from "../components/StatusBadge";
import { ErrorNote } from "../components/run/Notice";
import { VirtualTable } from "../components/run/VirtualTable";
import { useNow, usePageVisible } from "./run/useNow";
import {
  elapsedMs,
  fromUtcInputValue,
  isRunActive,
  parseSince,
  shortRunId,
  SINCE_PRESETS,
  splitList,
  toUtcInputValue,
} from "./run/util";
import "../components/run/run.css";

const PAGE_SIZE = 100;
const ROW_HEIGHT = 36;
/** Refresh interval while a shown run is active, and otherwise (new runs appear). */
const ACTIVE_REFRESH_MS = 2000;
const IDLE_REFRESH_MS = 15000;
/** At most this many active runs past the first page are re-read per refresh. */
const MAX_EXTRA_REFRESH = 25;

interface Filters {
  pipeline: string;
  statuses: RunStatus[];
  triggers: TriggerKind[];
  /** Epoch ms, fixed when the filters were set: page tokens are tied to the filters. */
  sinceMs?: number;
}

interface Listing {
  key: string;
  runs: Run[];
  nextToken: string;
  loading: boolean;
  error: string;
}

function newestFirst(a: Run, b: Run): number {
  const ta = tsMs(a.createTime) ?? 0;
  const tb = tsMs(b.createTime) ?? 0;
  if (ta !== tb) return tb - ta;
  return a.id < b.id ? 1 : a.id > b.id ? -1 : 0;
}

/** Runs of a refresh merged into the ones shown: new ones join, known ones are replaced. */
function mergeRuns(shown: Run[], fresh: Run[]): Run[] {
  const byId = new Map(fresh.map((r) => [r.id, r]));
  const known = new Set(shown.map((r) => r.id));
  const merged = shown.map((r) => byId.get(r.id) ?? r);
  const added = fresh.filter((r) => !known.has(r.id));
  if (added.length === 0) return merged;
  return [...added, ...merged].sort(newestFirst);
}

function usePipelineNames(): { names: string[]; error: string } {
  const [names, setNames] = useState<string[]>([]);
  const [error, setError] = useState("");
  useEffect(() => {
    const ac = new AbortController();
    (async () => {
      const all: string[] = [];
      let pageToken = "";
      try {
        for (let page = 0; page < 20; page++) {
          const res = await pipelines.listPipelines(
            { pageSize: 1000, pageToken, showArchived: true },
            { signal: ac.signal },
          );
          all.push(...res.pipelines.map((p) => p.name));
          pageToken = res.nextPageToken;
          if (!pageToken) break;
        }
        setNames(all.sort());
      } catch (e) {
        if (!ac.signal.aborted) setError(errorMessage(e));
      }
    })();
    return () => ac.abort();
  }, []);
  return { names, error };
}

export default function RunsPage() {
  const [params, setParams] = useSearchParams();
  const navigate = useNavigate();
  const pipeline = params.get("pipeline") ?? "";
  const status = params.get("status") ?? "";
  const trigger = params.get("trigger") ?? "";
  const since = params.get("since") ?? "";
  const key = JSON.stringify([pipeline, status, trigger, since]);

  // The query string read as a ListRuns filter, or what in it cannot be read.
  const { filters, filterError } = useMemo(() => {
    const problems: string[] = [];
    const statuses: RunStatus[] = [];
    for (const name of splitList(status)) {
      const s = runStatusFromName(name);
      if (s === undefined) problems.push(`unknown status "${name}" (one of ${RUN_STATUS_NAMES.join(", ")})`);
      else statuses.push(s);
    }
    const triggers: TriggerKind[] = [];
    for (const name of splitList(trigger)) {
      const k = triggerFromName(name);
      if (k === undefined) problems.push(`unknown trigger "${name}" (one of ${TRIGGER_NAMES.join(", ")})`);
      else triggers.push(k);
    }
    const sinceMs = parseSince(since, Date.now());
    if (since && sinceMs === undefined) problems.push(`"${since}" is not a time (use 24h, 7d or an ISO 8601 instant)`);
    const f: Filters = { pipeline, statuses, triggers, sinceMs };
    return { filters: f, filterError: problems.join("; ") };
    // The filters are fixed per query string (`key`): relative times are read once.
  }, [key]);

  const request = useCallback(
    (pageToken: string) => ({
      pipeline: filters.pipeline,
      statuses: filters.statuses,
      triggers: filters.triggers,
      since: filters.sinceMs !== undefined ? timestampFromMs(filters.sinceMs) : undefined,
      pageSize: PAGE_SIZE,
      pageToken,
    }),
    [filters],
  );

  const [listing, setListing] = useState<Listing>({ key: "", runs: [], nextToken: "", loading: true, error: "" });
  const [moreError, setMoreError] = useState("");
  const [loadingMore, setLoadingMore] = useState(false);
  const [refreshError, setRefreshError] = useState("");
  const listingRef = useRef(listing);
  listingRef.current = listing;

  useEffect(() => {
    const ac = new AbortController();
    setListing({ key, runs: [], nextToken: "", loading: true, error: "" });
    setMoreError("");
    setRefreshError("");
    runs
      .listRuns(request(""), { signal: ac.signal })
      .then((res) => setListing({ key, runs: res.runs, nextToken: res.nextPageToken, loading: false, error: "" }))
      .catch((e: unknown) => {
        if (!ac.signal.aborted) setListing({ key, runs: [], nextToken: "", loading: false, error: errorMessage(e) });
      });
    return () => ac.abort();
  }, [key, request]);

  const loadMore = async () => {
    const token = listingRef.current.nextToken;
    if (!token || loadingMore) return;
    setLoadingMore(true);
    setMoreError("");
    try {
      const res = await runs.listRuns(request(token));
      setListing((prev) => {
        if (prev.key !== key) return prev;
        const known = new Set(prev.runs.map((r) => r.id));
        return { ...prev, runs: [...prev.runs, ...res.runs.filter((r) => !known.has(r.id))], nextToken: res.nextPageToken };
      });
    } catch (e) {
      setMoreError(errorMessage(e));
    } finally {
      setLoadingMore(false);
    }
  };

  // Auto-refresh: fast while a shown run is queued or running, slowly otherwise.
  const anyActive = listing.runs.some((r) => isRunActive(r.status));
  const visible = usePageVisible();
  const refresh = useCallback(async () => {
    const current = listingRef.current;
    if (current.key !== key || current.loading) return;
    try {
      const res = await runs.listRuns(request(""));
      const freshIds = new Set(res.runs.map((r) => r.id));
      const extra = current.runs
        .filter((r) => isRunActive(r.status) && !freshIds.has(r.id))
        .slice(0, MAX_EXTRA_REFRESH);
      const reread = await Promise.all(extra.map((r) => runs.getRun({ id: r.id }).then((g) => g.run)));
      const fresh = [...res.runs, ...reread.filter((r): r is Run => r !== undefined)];
      setListing((prev) => (prev.key === key ? { ...prev, runs: mergeRuns(prev.runs, fresh) } : prev));
      setRefreshError("");
    } catch (e) {
      setRefreshError(errorMessage(e));
    }
  }, [key, request]);
  useEffect(() => {
    if (!visible || listing.loading || listing.error) return;
    const t = setInterval(() => void refresh(), anyActive ? ACTIVE_REFRESH_MS : IDLE_REFRESH_MS);
    return () => clearInterval(t);
  }, [visible, anyActive, refresh, listing.loading, listing.error]);

  const now = useNow(anyActive);
  const { names, error: namesError } = usePipelineNames();

  const setParam = (name: string, value: string) => {
    const next = new URLSearchParams(params);
    if (value) next.set(name, value);
    else next.delete(name);
    setParams(next);
  };

  const sincePreset = since === "" ? "" : SINCE_PRESETS.some((p) => p.value === since) ? since : "custom";
  const hasFilters = pipeline !== "" || status !== "" || trigger !== "" || since !== "";

  const pipelineOptions = pipeline && !names.includes(pipeline) ? [pipeline, ...names] : names;
  const list = listing.key === key ? listing.runs : [];

  const renderRow = (i: number) => {
    const r = list[i];
    const name = runStatusName(r.status);
    const start = tsMs(r.startTime);
    const end = tsMs(r.endTime);
    return (
      <tr
        key={r.id}
        className="vt-row rn-clickable"
        data-testid="run-row"
        data-run-id={r.id}
        data-status={name}
        onClick={(e) => {
          if ((e.target as HTMLElement).closest("a")) return;
          navigate(`/runs/${r.id}`);
        }}
      >
        <td className="mono">
          <Link to={`/runs/${r.id}`} title={r.id}>
            {shortRunId(r.id)}
          </Link>
        </td>
        <td className="rn-ellipsis" title={r.pipeline}>
          <Link to={`/pipelines/${encodeURIComponent(r.pipeline)}`}>{r.pipeline}</Link>
        </td>
        <td>v{r.version}</td>
        <td className="rn-ellipsis" title={r.trigger?.actor ? `by ${r.trigger.actor}` : undefined}>
          {triggerName(r.trigger?.kind ?? 0)}
          {r.trigger?.actor ? <span className="muted"> · {r.trigger.actor}</span> : null}
        </td>
        <td>
          <StatusBadge status={name} />
        </td>
        <td className="rn-time">{start !== undefined ? formatTime(r.startTime) : <span className="muted">—</span>}</td>
        <td className="rn-time">{end !== undefined ? formatTime(r.endTime) : <span className="muted">—</span>}</td>
        <td className="rn-num">{formatDuration(elapsedMs(start, end, now))}</td>
      </tr>
    );
  };

  return (
    <div className="page rn-page">
      <div className="rn-page-head">
        <h1>Runs</h1>
        <div className="rn-head-tools">
          {anyActive ? <span className="rn-live" title="Refreshing every 2 s while a run is active">live</span> : null}
          <button type="button" className="btn btn-small" onClick={() => void refresh()}>
            Refresh
          </button>
        </div>
      </div>

      <div className="rn-filters" role="search">
        <label>
          <span>Pipeline</span>
          <select className="select"
            data-testid="runs-filter-pipeline"
            value={pipeline}
            onChange={(e) => setParam("pipeline", e.target.value)}
          >
            <option value="">All pipelines</option>
            {pipelineOptions.map((n) => (
              <option key={n} value={n}>
                {n}
              </option>
            ))}
          </select>
        </label>
        <label>
          <span>Status</span>
          <select className="select" data-testid="runs-filter-status" value={status} onChange={(e) => setParam("status", e.target.value)}>
            <option value="">Any status</option>
            {RUN_STATUS_NAMES.map((n) => (
              <option key={n} value={n}>
                {n.replace(/_/g, " ")}
              </option>
            ))}
            {status && !RUN_STATUS_NAMES.includes(status) ? <option value={status}>{status}</option> : null}
          </select>
        </label>
        <label>
          <span>Trigger</span>
          <select className="select" data-testid="runs-filter-trigger" value={trigger} onChange={(e) => setParam("trigger", e.target.value)}>
            <option value="">Any trigger</option>
            {TRIGGER_NAMES.map((n) => (
              <option key={n} value={n}>
                {n}
              </option>
            ))}
            {trigger && !TRIGGER_NAMES.includes(trigger) ? <option value={trigger}>{trigger}</option> : null}
          </select>
        </label>
        <label>
          <span>Created</span>
          <select className="select"
            data-testid="runs-filter-since"
            value={sincePreset}
            onChange={(e) => {
              const v = e.target.value;
              if (v === "custom") setParam("since", new Date(Date.now() - 86_400_000).toISOString().slice(0, 16) + "Z");
              else setParam("since", v);
            }}
          >
            <option value="">Any time</option>
            {SINCE_PRESETS.map((p) => (
              <option key={p.value} value={p.value}>
                {p.label}
              </option>
            ))}
            <option value="custom">Since…</option>
          </select>
        </label>
        {sincePreset === "custom" ? (
          <label>
            <span>Since (UTC)</span>
            <input
              className="input"
              type="datetime-local"
              data-testid="runs-filter-since-time"
              value={filters.sinceMs !== undefined ? toUtcInputValue(filters.sinceMs) : ""}
              onChange={(e) => {
                const ms = fromUtcInputValue(e.target.value);
                if (ms !== undefined) setParam("since", new Date(ms).toISOString().slice(0, 16) + "Z");
              }}
            />
          </label>
        ) : null}
        {hasFilters ? (
          <button type="button" className="btn btn-small rn-clear" onClick={() => setParams(new URLSearchParams())}>
            Clear filters
          </button>
        ) : null}
        <div className="rn-filter-summary muted">
          {filters.sinceMs !== undefined ? `created since ${formatMs(filters.sinceMs)}` : ""}
        </div>
      </div>

      <ErrorNote message={filterError} title="Filter" />
      <ErrorNote message={namesError} title="Could not list the pipelines" />
      <ErrorNote message={listing.error} title="Could not list the runs" />
      <ErrorNote message={refreshError} title="Refresh failed" />

      <VirtualTable
        testId="runs-table"
        columns={[
          { header: "Run", width: "96px" },
          { header: "Pipeline" },
          { header: "Version", width: "72px" },
          { header: "Trigger", width: "150px" },
          { header: "Status", width: "128px" },
          { header: "Start", width: "196px" },
          { header: "End", width: "196px" },
          { header: "Duration", width: "96px", className: "rn-num" },
        ]}
        count={list.length}
        rowHeight={ROW_HEIGHT}
        renderRow={renderRow}
        maxHeight="calc(100vh - 250px)"
        empty={
          listing.loading ? (
            <span className="muted">Loading runs…</span>
          ) : listing.error ? (
            <span className="muted">No runs to show.</span>
          ) : (
            <span className="muted">{hasFilters ? "No run matches these filters." : "No runs yet."}</span>
          )
        }
      />

      <div className="rn-pager">
        <span className="muted">
          {list.length.toLocaleString("en-US")} run{list.length === 1 ? "" : "s"} shown
          {listing.nextToken ? ", more available" : ""}
        </span>
        {listing.nextToken ? (
          <button
            type="button"
            className="btn"
            data-testid="next-page"
            disabled={loadingMore}
            onClick={() => void loadMore()}
          >
            {loadingMore ? "Loading…" : "Load more"}
          </button>
        ) : null}
        <ErrorNote message={moreError} title="Could not load more runs" />
      </div>
    </div>
  );
}
