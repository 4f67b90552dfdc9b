import { useEffect, useState } from "react";
import { Link, useSearchParams } from "react-router-dom";
import { agents, errorMessage, newRequestId } from "../api";
import { useCaller } from "../auth";
import { formatRelative, formatTime, tsMs } from "../format";
import { AgentState, type Agent, type AgentLease } from "@legato/client/gen/legato/v1/agent_pb";
import { ErrorNote, Pill } from "../components/run/Notice";
import { VirtualTable } from "../components/run/VirtualTable";
import { useNow, usePageVisible } from "./run/useNow";
import { usePaged } from "./run/usePaged";
import "../components/run/run.css";

const REFRESH_MS = 5000;
const LEASES_SHOWN = 3;

function Leases({ leases }: { leases: AgentLease[] }) {
  if (leases.length === 0) return <span className="muted">—</span>;
  const all = leases
    .map((l) => `${l.step}#${l.attempt} of run ${l.runId} (${l.startTime ? "running" : "starting"})`)
    .join("\n");
  return (
    <span title={all}>
      {leases.slice(0, LEASES_SHOWN).map((l) => (
        <Link
          key={`${l.runId}-${l.step}-${l.attempt}`}
          to={`/runs/${l.runId}?step=${encodeURIComponent(l.step)}`}
          className="rn-chip"
          data-testid="agent-lease"
          data-run-id={l.runId}
          data-step={l.step}
        >
          {l.step}#{l.attempt}
        </Link>
      ))}
      {leases.length > LEASES_SHOWN ? <span className="muted"> +{leases.length - LEASES_SHOWN} more</span> : null}
    </span>
  );
}

function stateName(s: AgentState): string {
  switch (s) {
    case AgentState.CONNECTED:
      return "connected";
    case AgentState.DRAINING:
      return "draining";
    case AgentState.DISCONNECTED:
      return "disconnected";
    default:
      return "unknown";
  }
}

const STATE_TONE: Record<string, string> = {
  connected: "good",
  draining: "warn",
  disconnected: "off",
  unknown: "off",
};

function SlotsMeter({ used, total }: { used: number; total: number }) {
  const frac = total > 0 ? Math.min(1, used / total) : 0;
  return (
    <span className="rn-slots" title={`${used} of ${total} slots in use (one lease per running task)`}>
      <span className="rn-slots-bar">
        <span style={{ width: `${frac * 100}%` }} />
      </span>
      <span className="rn-num">
        {used} / {total}
      </span>
    </span>
  );
}

export default function AgentsPage() {
  const caller = useCaller();
  const [params, setParams] = useSearchParams();
  const showDisconnected = params.get("disconnected") === "1";
  const key = showDisconnected ? "all" : "connected";
  const list = usePaged<Agent>(
    key,
    async (pageToken, signal) => {
      const res = await agents.listAgents({ pageSize: 200, pageToken, showDisconnected }, { signal });
      return { items: res.agents, nextToken: res.nextPageToken };
    },
  );
  const [draining, setDraining] = useState("");
  const [drainError, setDrainError] = useState("");
  const visible = usePageVisible();
  const now = useNow(true, 5000);
  const { reload } = list;

  useEffect(() => {
    if (!visible) return;
    const t = setInterval(() => void reload(), REFRESH_MS);
    return () => clearInterval(t);
  }, [visible, reload]);

  const drain = async (name: string) => {
    setDraining(name);
    setDrainError("");
    try {
      const res = await agents.drainAgent({ name, requestId: newRequestId() });
      if (res.agent) {
        const next = res.agent;
        list.replace((a) => a.name === name, next);
      }
    } catch (e) {
      setDrainError(errorMessage(e));
    } finally {
      setDraining("");
    }
  };

  const admin = caller.can("admin");
  const items = list.items;
  const totalSlots = items.reduce((n, a) => n + (a.state === AgentState.DISCONNECTED ? 0 : a.slots), 0);
  const usedSlots = items.reduce((n, a) => n + (a.state === AgentState.DISCONNECTED ? 0 : a.slotsUsed), 0);

  const renderRow = (i: number) => {
    const a = items[i];
    const state = stateName(a.state);
    const labels = Object.entries(a.labels).sort(([x], [y]) => x.localeCompare(y));
    const labelText = labels.map(([k, v]) => `${k}=${v}`).join(", ");
    const seen = tsMs(a.lastSeenTime);
    return (
      <tr key={a.name} className="vt-row" data-testid="agent-row" data-name={a.name} data-state={state}>
        <td className="rn-ellipsis" title={[a.name, a.hostname && `host ${a.hostname}`, a.version && `version ${a.version}`, a.credential].filter(Boolean).join("\n")}>
          <strong>{a.name}</strong>
          <span className="muted">
            {a.hostname ? ` · ${a.hostname}` : ""}
            {a.version ? ` · v${a.version}` : ""}
          </span>
        </td>
        <td>
          <Pill tone={STATE_TONE[state]} testId="agent-state">
            {state}
          </Pill>
        </td>
        <td>
          <SlotsMeter used={a.slotsUsed} total={a.slots} />
        </td>
        <td className="rn-ellipsis">
          <Leases leases={a.leases} />
        </td>
        <td className="rn-ellipsis" title={[labelText && `labels: ${labelText}`, a.connections.length > 0 && `connections: ${a.connections.join(", ")}`].filter(Boolean).join("\n") || "no labels, no connections"}>
          {labels.length === 0 && a.connections.length === 0 ? <span className="muted">—</span> : null}
          {labels.map(([k, v]) => (
            <span key={`l-${k}`} className="rn-chip" data-testid="agent-label">
              {k}={v}
            </span>
          ))}
          {a.connections.map((c) => (
            <span key={`c-${c}`} className="rn-chip rn-chip-conn" data-testid="agent-connection" title={`connection ${c}`}>
              ⛁ {c}
            </span>
          ))}
        </td>
        <td className="rn-time" title={formatTime(a.lastSeenTime)}>
          {formatTime(a.lastSeenTime)}
          {seen !== undefined ? <span className="muted"> · {formatRelative(Math.min(seen, now), now)}</span> : null}
        </td>
        <td className="rn-time">{formatTime(a.connectTime)}</td>
        {admin ? (
          <td>
            {a.state === AgentState.CONNECTED ? (
              <button
                type="button"
                className="btn btn-small"
                data-testid="drain-button"
                disabled={draining !== ""}
                onClick={() => void drain(a.name)}
                title="Let it finish its tasks and give it no new ones"
              >
                {draining === a.name ? "Draining…" : "Drain"}
              </button>
            ) : null}
          </td>
        ) : null}
      </tr>
    );
  };

  const columns = [
    { header: "Agent", width: "18%" },
    { header: "State", width: "112px" },
    { header: "Slots in use", width: "124px" },
    { header: "Leases", width: "20%" },
    { header: "Labels · connections" },
    { header: "Last heartbeat", width: "236px" },
    { header: "Connected since", width: "180px" },
    ...(admin ? [{ header: "", width: "84px" }] : []),
  ];

  return (
    <div className="page rn-page">
      <div className="rn-page-head">
        <h1>Agents</h1>
        <div className="rn-head-tools">
          <span className="muted">
            {usedSlots} / {totalSlots} slots in use
          </span>
          <label className="check">
            <input
              type="checkbox"
              data-testid="agents-show-disconnected"
              checked={showDisconnected}
              onChange={(e) => {
                const next = new URLSearchParams(params);
                if (e.target.checked) next.set("disconnected", "1");
                else next.delete("disconnected");
                setParams(next);
              }}
            />
            Show disconnected
          </label>
        </div>
      </div>
      <ErrorNote message={list.error} title="Could not list the agents" />
      <ErrorNote message={drainError} title="Could not drain the agent" />
      <VirtualTable
        testId="agents-table"
        columns={columns}
        count={items.length}
        rowHeight={40}
        renderRow={renderRow}
        empty={
          <span className="muted">
            {list.loading
              ? "Loading agents…"
              : showDisconnected
                ? "No agent has connected yet."
                : "No agent is connected. Start one with `legato agent --server HOST:PORT`."}
          </span>
        }
      />
      <div className="rn-pager">
        <span className="muted">
          {items.length} agent{items.length === 1 ? "" : "s"}
        </span>
        {list.nextToken ? (
          <button type="button" className="btn" data-testid="next-page" disabled={list.loadingMore} onClick={() => void list.loadMore()}>
            {list.loadingMore ? "Loading…" : "Load more"}
          </button>
        ) : null}
        <ErrorNote message={list.moreError} title="Could not load more agents" />
      </div>
    </div>
  );
}
