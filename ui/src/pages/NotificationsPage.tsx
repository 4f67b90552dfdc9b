import { useEffect, useState, type FormEvent } from "react";
import { Link, useSearchParams } from "react-router-dom";
import { runs } from "../api";
import { formatMs, formatRelative, formatTime, tsMs } from "../format";
import { NotificationStatus, type NotificationDelivery } from "@legato/client/gen/legato/v1/run_service_pb";
import { ErrorNote, Pill } from "../components/run/Notice";
import { VirtualTable } from "../components/run/VirtualTable";
import { useNow, usePageVisible } from "./run/useNow";
import { usePaged } from "./run/usePaged";
import { shortRunId } from "./run/util";
import "../components/run/run.css";

const REFRESH_MS = 10_000;

function statusName(s: NotificationStatus): string {
  switch (s) {
    case NotificationStatus.PENDING:
      return "pending";
    case NotificationStatus.SENDING:
      return "sending";
    case NotificationStatus.DELIVERED:
      return "delivered";
    case NotificationStatus.FAILED:
      return "failed";
    case NotificationStatus.SUPPRESSED:
      return "suppressed";
    default:
      return "unknown";
  }
}

const TONE: Record<string, string> = {
  pending: "warn",
  sending: "info",
  delivered: "good",
  failed: "bad",
  suppressed: "off",
  unknown: "off",
};

function deliveryKey(n: NotificationDelivery): string {
  return n.idempotencyKey || `${n.runId}/${n.event}/${n.channel}/${n.target}/${String(n.createTime?.seconds ?? "")}`;
}

/** A re-read first page folded into the shown ones: known deliveries updated, new ones on top. */
function mergeDeliveries(shown: NotificationDelivery[], fresh: NotificationDelivery[]): NotificationDelivery[] {
  const byKey = new Map(fresh.map((n) => [deliveryKey(n), n]));
  const known = new Set(shown.map(deliveryKey));
  return [...fresh.filter((n) => !known.has(deliveryKey(n))), ...shown.map((n) => byKey.get(deliveryKey(n)) ?? n)];
}

export default function NotificationsPage() {
  const [params, setParams] = useSearchParams();
  const runId = params.get("run") ?? "";
  const [form, setForm] = useState(runId);
  useEffect(() => setForm(runId), [runId]);
  const list = usePaged<NotificationDelivery>(
    runId,
    async (pageToken, signal) => {
      const res = await runs.listNotifications({ runId, pageSize: 200, pageToken }, { signal });
      return { items: res.notifications, nextToken: res.nextPageToken };
    },
    mergeDeliveries,
  );
  const visible = usePageVisible();
  const now = useNow(true, 5000);
  const { reload } = list;
  useEffect(() => {
    if (!visible) return;
    const t = setInterval(() => void reload(), REFRESH_MS);
    return () => clearInterval(t);
  }, [visible, reload]);

  const apply = (e: FormEvent) => {
    e.preventDefault();
    const next = new URLSearchParams();
    if (form.trim()) next.set("run", form.trim());
    setParams(next);
  };

  const items = list.items;
  const [selected, setSelected] = useState("");
  const chosen = items.find((n) => deliveryKey(n) === selected);
  const renderRow = (i: number) => {
    const n = items[i];
    const status = statusName(n.status);
    const next = tsMs(n.nextAttemptTime);
    return (
      <tr
        key={deliveryKey(n)}
        className={`vt-row rn-clickable${deliveryKey(n) === selected ? " selected" : ""}`}
        onClick={(e) => {
          if ((e.target as HTMLElement).closest("a")) return;
          setSelected(deliveryKey(n));
        }}
        data-testid="notification-row"
        data-run-id={n.runId}
        data-status={status}
        data-event={n.event}
        data-channel={n.channel}
      >
        <td className="rn-time">{formatTime(n.createTime)}</td>
        <td className="mono">
          <Link to={`/runs/${n.runId}`} title={n.runId}>
            {shortRunId(n.runId)}
          </Link>
        </td>
        <td className="rn-ellipsis" title={n.pipeline}>
          {n.pipeline ? <Link to={`/pipelines/${encodeURIComponent(n.pipeline)}`}>{n.pipeline}</Link> : "—"}
        </td>
        <td>{n.event.replace(/_/g, " ")}</td>
        <td className="rn-ellipsis" title={n.target}>
          {n.target || n.channel}
        </td>
        <td>
          <Pill tone={TONE[status]}>{status}</Pill>
        </td>
        <td className="rn-num">{n.attempts}</td>
        <td className="rn-ellipsis rn-error-cell" title={n.lastError}>
          {n.lastError}
        </td>
        <td className="rn-time" title={next !== undefined ? `next attempt ${formatMs(next)}` : undefined}>
          {n.deliverTime ? (
            formatTime(n.deliverTime)
          ) : next !== undefined && n.status === NotificationStatus.PENDING ? (
            <span title={formatRelative(next, now)}>next {formatMs(next)}</span>
          ) : (
            <span className="muted">—</span>
          )}
        </td>
      </tr>
    );
  };

  return (
    <div className="page rn-page">
      <div className="rn-page-head">
        <h1>Notifications</h1>
        <div className="rn-head-tools">
          <button type="button" className="btn btn-small" onClick={() => void list.reload()}>
            Refresh
          </button>
        </div>
      </div>
      <form className="rn-filters" onSubmit={apply} role="search">
        <label>
          <span>Run</span>
          <input
            data-testid="notifications-filter-run"
            className="input mono"
            size={30}
            value={form}
            onChange={(e) => setForm(e.target.value)}
            placeholder="every run"
          />
        </label>
        <button type="submit" className="btn btn-small btn-primary">
          Apply
        </button>
        {runId ? (
          <>
            <button type="button" className="btn btn-small" onClick={() => setParams(new URLSearchParams())}>
              All runs
            </button>
            <span className="rn-filter-summary muted">
              notifications of run <Link to={`/runs/${runId}`}>{runId}</Link>
            </span>
          </>
        ) : null}
      </form>
      <ErrorNote message={list.error} title="Could not list the notifications" />
      <VirtualTable
        testId="notifications-table"
        columns={[
          { header: "Created", width: "172px" },
          { header: "Run", width: "86px" },
          { header: "Pipeline", width: "9%" },
          { header: "Event", width: "92px" },
          { header: "Channel", width: "18%" },
          { header: "Status", width: "104px" },
          { header: "Attempts", width: "84px", className: "rn-num" },
          { header: "Last error" },
          { header: "Delivered / next attempt", width: "196px" },
        ]}
        count={items.length}
        rowHeight={36}
        renderRow={renderRow}
        maxHeight={chosen ? "calc(100vh - 480px)" : undefined}
        empty={
          <span className="muted">
            {list.loading ? "Loading notifications…" : runId ? "This run sent no notification." : "No notification was sent yet."}
          </span>
        }
      />
      <div className="rn-pager">
        <span className="muted">
          {items.length.toLocaleString("en-US")} notification{items.length === 1 ? "" : "s"} shown
          {list.nextToken ? ", more available" : ""}
        </span>
        {list.nextToken ? (
          <button type="button" className="btn" data-testid="next-page" disabled={list.loadingMore} onClick={() => void list.loadMore()}>
            {list.loadingMore ? "Loading…" : "Load more"}
          </button>
        ) : null}
        <ErrorNote message={list.moreError} title="Could not load more notifications" />
      </div>
      {chosen ? (
        <div className="rn-step-detail" data-testid="notification-detail">
          <div className="rn-detail-head">
            <h3>
              {chosen.event.replace(/_/g, " ")} → {chosen.target || chosen.channel}
            </h3>
            <Pill tone={TONE[statusName(chosen.status)]}>{statusName(chosen.status)}</Pill>
            <span className="rn-spacer" />
            <button type="button" className="btn btn-small" onClick={() => setSelected("")}>
              Close
            </button>
          </div>
          <dl className="rn-facts">
            <div>
              <dt>Run</dt>
              <dd>
                <Link to={`/runs/${chosen.runId}`} className="mono">
                  {chosen.runId}
                </Link>
              </dd>
            </div>
            <div>
              <dt>Channel</dt>
              <dd>{chosen.channel}</dd>
            </div>
            <div>
              <dt>Created</dt>
              <dd>{formatTime(chosen.createTime)}</dd>
            </div>
            <div>
              <dt>Attempts</dt>
              <dd>{chosen.attempts}</dd>
            </div>
            <div>
              <dt>Delivered</dt>
              <dd>{formatTime(chosen.deliverTime)}</dd>
            </div>
            <div>
              <dt>Next attempt</dt>
              <dd>{formatTime(chosen.nextAttemptTime)}</dd>
            </div>
            <div className="rn-wide">
              <dt>Idempotency key</dt>
              <dd className="mono">{chosen.idempotencyKey || "—"}</dd>
            </div>
          </dl>
          {chosen.lastError ? <pre className="rn-error-pre">{chosen.lastError}</pre> : null}
        </div>
      ) : null}
    </div>
  );
}
