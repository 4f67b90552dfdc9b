import { memo, useCallback, useEffect, useMemo, useRef, useState } from "react";
import { Link, useSearchParams } from "react-router-dom";
import { useVirtualizer } from "@tanstack/react-virtual";
import { errorMessage, pipelines } from "../api";
import { useCaller } from "../auth";
import { formatRelative, formatTime, tsMs } from "../format";
import type { Pipeline } from "@legato/client/gen/legato/v1/pipeline_pb";
import { RunMarks } from "./pipeline/RunMarks";
import { useRunMarks, type MarksEntry } from "./pipeline/runMarks";
import { filterPipelines } from "./pipeline/pipelineList";

const PAGE_SIZE = 200;
const ROW_HEIGHT = 48;
const MARKS = 8;

interface ListState {
  items: Pipeline[];
  nextToken: string;
  loading: boolean;
  error: string;
  /** Whether the first page has been answered. */
  loaded: boolean;
}

const EMPTY: ListState = { items: [], nextToken: "", loading: false, error: "", loaded: false };

function useDebounced<T>(value: T, ms: number): T {
  const [v, setV] = useState(value);
  useEffect(() => {
    const t = window.setTimeout(() => setV(value), ms);
    return () => window.clearTimeout(t);
  }, [value, ms]);
  return v;
}

/** Pages through ListPipelines for one (prefix, showArchived) query; `more()` loads the next page. */
function usePipelineList(prefix: string, showArchived: boolean) {
  const [state, setState] = useState<ListState>(EMPTY);
  const [reloadKey, setReloadKey] = useState(0);
  const generation = useRef(0);
  const loadingRef = useRef(false);

  const load = useCallback(
    async (token: string, gen: number) => {
      loadingRef.current = true;
      setState((s) => ({ ...s, loading: true, error: "" }));
      try {
        const res = await pipelines.listPipelines({
          pageSize: PAGE_SIZE,
          pageToken: token,
          showArchived,
          namePrefix: prefix,
        });
        if (gen !== generation.current) return;
        setState((s) => ({
          items: token ? [...s.items, ...res.pipelines] : res.pipelines,
          nextToken: res.nextPageToken,
          loading: false,
          error: "",
          loaded: true,
        }));
      } catch (e) {
        if (gen !== generation.current) return;
        setState((s) => ({ ...s, loading: false, error: errorMessage(e), loaded: true }));
      } finally {
        if (gen === generation.current) loadingRef.current = false;
      }
    },
    [prefix, showArchived],
  );

  const lastQuery = useRef(load);
  useEffect(() => {
    const gen = ++generation.current;
    // A new query starts empty; a reload of the same one keeps its rows until the answer.
    const sameQuery = lastQuery.current === load;
    lastQuery.current = load;
    setState((s) => (sameQuery && s.loaded ? { ...s, loading: true } : EMPTY));
    void load("", gen);
  }, [load, reloadKey]);

  const stateRef = useRef(state);
  stateRef.current = state;

  const more = useCallback(() => {
    const s = stateRef.current;
    if (loadingRef.current || !s.nextToken || s.error) return;
    void load(s.nextToken, generation.current);
  }, [load]);

  const retry = useCallback(() => {
    if (loadingRef.current) return;
    void load(stateRef.current.nextToken, generation.current);
  }, [load]);

  /** Reads the first page again (the rows stay until it answers). */
  const reload = useCallback(() => setReloadKey((k) => k + 1), []);

  return { ...state, more, retry, reload };
}

function ScheduleCell({ p }: { p: Pipeline }) {
  const schedule = p.spec?.schedule;
  if (!schedule?.cron) {
    return <span className="muted">—</span>;
  }
  const zone = schedule.timezone || "UTC";
  const next = p.schedule?.nextFireTime;
  const paused = p.schedule?.paused ?? false;
  return (
    <div className="ellipsis sched-cell" title={`${schedule.cron} (${zone})`}>
      <code>{schedule.cron}</code> <span className="muted small">{zone}</span>
      <div className="small muted ellipsis">
        {p.archived ? "archived" : paused ? "paused" : next ? `next ${formatTime(next, zone)}` : "no next fire time"}
      </div>
    </div>
  );
}

function StateCell({ p }: { p: Pipeline }) {
  if (p.archived) {
    return <span className="tag tag-archived">archived</span>;
  }
  if (p.schedule?.paused) {
    return (
      <span className="tag tag-warn" title={p.schedule.pauseReason || "paused"}>
        paused
      </span>
    );
  }
  if (p.spec?.schedule?.cron) {
    return <span className="tag">scheduled</span>;
  }
  return <span className="muted small">manual</span>;
}

const PipelineRow = memo(function PipelineRow({
  p,
  start,
  marks,
  now,
}: {
  p: Pipeline;
  start: number;
  marks: MarksEntry | undefined;
  now: number;
}) {
  return (
    <div
      className="vtable-row pipelines-grid"
      style={{ transform: `translateY(${start}px)`, height: ROW_HEIGHT }}
      data-testid="pipeline-row"
      data-name={p.name}
      data-archived={p.archived ? "true" : "false"}
      data-paused={p.schedule?.paused ? "true" : "false"}
    >
      <div className="ellipsis">
        <Link className="row-link" to={`/pipelines/${encodeURIComponent(p.name)}`} title={p.name}>
          {p.name}
        </Link>{" "}
        <span className="muted small">v{p.latestVersion}</span>
      </div>
      <div className="ellipsis muted" title={p.description}>
        {p.description || "—"}
      </div>
      <ScheduleCell p={p} />
      <div>
        <RunMarks entry={marks} count={MARKS} />
      </div>
      <div className="small muted" title={formatTime(p.updateTime)}>
        {formatRelative(tsMs(p.updateTime), now)}
      </div>
      <div>
        <StateCell p={p} />
      </div>
    </div>
  );
});

export function PipelinesPage() {
  const caller = useCaller();
  const [params, setParams] = useSearchParams();
  // The controls answer at once from local state; the URL follows (so the view can be shared).
  const [text, setText] = useState(() => params.get("q") ?? "");
  const [showArchived, setShowArchived] = useState(() => params.get("archived") === "1");
  const [pausedOnly, setPausedOnly] = useState(() => params.get("paused") === "1");
  const search = useDebounced(text, 250);

  // A URL this page did not write (a link, back/forward) sets the controls.
  const written = useRef(params.toString());
  useEffect(() => {
    const current = params.toString();
    if (current === written.current) return;
    written.current = current;
    setText(params.get("q") ?? "");
    setShowArchived(params.get("archived") === "1");
    setPausedOnly(params.get("paused") === "1");
  }, [params]);

  useEffect(() => {
    const want = new URLSearchParams();
    if (search) want.set("q", search);
    if (showArchived) want.set("archived", "1");
    if (pausedOnly) want.set("paused", "1");
    const next = want.toString();
    if (next !== written.current) {
      written.current = next;
      setParams(want, { replace: true });
    }
  }, [search, showArchived, pausedOnly, setParams]);

  const prefix = search.trim().toLowerCase();
  const list = usePipelineList(prefix, showArchived);
  const rows = useMemo(
    () => filterPipelines(list.items, { text: prefix, pausedOnly, showArchived }),
    [list.items, prefix, pausedOnly, showArchived],
  );

  const scrollRef = useRef<HTMLDivElement>(null);
  const virtualizer = useVirtualizer({
    count: rows.length,
    getScrollElement: () => scrollRef.current,
    estimateSize: () => ROW_HEIGHT,
    overscan: 10,
    initialRect: { width: 1200, height: 800 },
  });
  const items = virtualizer.getVirtualItems();
  const lastIndex = items.length > 0 ? items[items.length - 1].index : -1;
  const { more, nextToken, loading, error } = list;
  useEffect(() => {
    if (nextToken && !loading && !error && lastIndex >= rows.length - 30) {
      more();
    }
  }, [lastIndex, rows.length, nextToken, loading, error, more]);

  const visibleNames = useMemo(() => items.map((it) => rows[it.index]?.name).filter((n): n is string => !!n), [items, rows]);
  const marks = useRunMarks(visibleNames);
  // Rounded to the minute: rows re-render for "5 min ago" only when the text can change.
  const now = Math.floor(Date.now() / 60_000) * 60_000;

  return (
    <div className="page-full">
      <div className="page-header">
        <h1>Pipelines</h1>
        <span className="spacer" />
        {caller.can("editor") && (
          <Link to="/pipelines/new" className="btn btn-primary" data-testid="new-pipeline">
            + New pipeline
          </Link>
        )}
      </div>
      <div className="toolbar">
        <input
          className="input input-search"
          type="search"
          placeholder="Search by name prefix…"
          value={text}
          onChange={(ev) => setText(ev.target.value)}
          data-testid="pipeline-search"
          aria-label="Search pipelines by name prefix"
        />
        <label className="check">
          <input
            type="checkbox"
            checked={showArchived}
            onChange={(ev) => setShowArchived(ev.target.checked)}
            data-testid="filter-archived"
          />
          Show archived
        </label>
        <label className="check">
          <input
            type="checkbox"
            checked={pausedOnly}
            onChange={(ev) => setPausedOnly(ev.target.checked)}
            data-testid="filter-paused"
          />
          Paused only
        </label>
        <span className="spacer" />
        <button
          type="button"
          className="btn btn-small"
          onClick={() => {
            marks.clear();
            list.reload();
          }}
          disabled={list.loading}
          data-testid="refresh"
        >
          Refresh
        </button>
        <span className="muted small" data-testid="pipeline-count">
          {rows.length.toLocaleString("en-US")} pipeline{rows.length === 1 ? "" : "s"}
          {list.nextToken ? " loaded, more to load" : ""}
        </span>
      </div>
      {list.error && (
        <div className="error-box" role="alert" data-testid="error">
          {list.error}{" "}
          <button type="button" className="btn btn-small" onClick={list.retry}>
            Retry
          </button>
        </div>
      )}
      <div className="vtable" style={{ flex: 1 }} data-testid="pipelines-table">
        <div className="vtable-head pipelines-grid">
          <div>Name</div>
          <div>Description</div>
          <div>Schedule</div>
          <div>Last runs</div>
          <div>Updated</div>
          <div>State</div>
        </div>
        <div className="vtable-body" ref={scrollRef}>
          {list.loaded && rows.length === 0 && !list.loading && !list.error && (
            <div className="empty">
              {prefix || pausedOnly ? "No pipeline matches." : "No pipelines yet."}
              {!prefix && !pausedOnly && caller.can("editor") && (
                <>
                  {" "}
                  <Link to="/pipelines/new">Create one.</Link>
                </>
              )}
            </div>
          )}
          {!list.loaded && <div className="empty">Loading…</div>}
          <div style={{ height: virtualizer.getTotalSize(), position: "relative" }}>
            {items.map((it) => {
              const p = rows[it.index];
              if (!p) return null;
              return <PipelineRow key={p.name} p={p} start={it.start} marks={marks.get(p.name)} now={now} />;
            })}
          </div>
        </div>
        <div className="vtable-foot">
          {list.loading ? "Loading…" : list.nextToken ? "Scroll for more" : list.loaded ? "All pipelines loaded" : ""}
          {list.nextToken && !list.loading && (
            <button type="button" className="btn btn-small" onClick={list.more} data-testid="load-more">
              Load more
            </button>
          )}
        </div>
      </div>
    </div>
  );
}
