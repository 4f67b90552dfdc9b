import { useEffect, useLayoutEffect, useMemo, useRef, useState } from "react";
import { useVirtualizer } from "@tanstack/react-virtual";
import { formatTime, tsMs } from "../../format";
import { LogStream, type LogLine } from "@legato/client/gen/legato/v1/run_pb";
import { filterLines, type LogBuffer } from "../../pages/run/logBuffer";

const LINE_HEIGHT = 20;

function streamName(s: LogStream): string {
  switch (s) {
    case LogStream.SYSTEM:
      return "system";
    case LogStream.STDOUT:
      return "stdout";
    case LogStream.STDERR:
      return "stderr";
    default:
      return "unspecified";
  }
}

/** "14:03:01.123" in UTC (the header says the zone). */
function clock(line: LogLine): string {
  const ms = tsMs(line.time);
  if (ms === undefined) return "—";
  return new Date(ms).toISOString().slice(11, 23);
}

function lineText(line: LogLine): string {
  const where = line.step ? `[${line.step}#${line.attempt}]` : "[run]";
  return `${formatTime(line.time)} ${streamName(line.stream)} ${where} ${line.text}`;
}

export interface LogViewProps {
  runId: string;
  buffer: LogBuffer;
  /** Changes whenever the buffer does. */
  version: number;
  /** Step names of the run, in DAG order, for the filter. */
  steps: string[];
  step: string;
  onStepChange: (step: string) => void;
  /** What the log's loading is doing, shown in the toolbar. */
  status: string;
}

/** The run's log: virtualised (100,000 lines scroll smoothly), filtered by step and by
 * text, kept scrolled to the newest line unless the reader scrolled up. */
export function LogView({ runId, buffer, version, steps, step, onStepChange, status }: LogViewProps) {
  const [query, setQuery] = useState("");
  const [following, setFollowing] = useState(true);
  const followRef = useRef(true);
  const scrollRef = useRef<HTMLDivElement>(null);

  // Indexes of the lines the filters keep; undefined keeps them all.
  // `version` changes whenever `buffer.lines` grows.
  const shown = useMemo(() => filterLines(buffer.lines, step, query), [buffer, version, step, query]);
  const count = shown ? shown.length : buffer.lines.length;

  const virtualizer = useVirtualizer({
    count,
    getScrollElement: () => scrollRef.current,
    estimateSize: () => LINE_HEIGHT,
    overscan: 20,
    initialRect: { width: 1000, height: 480 },
  });

  // Where the last automatic scroll left the view: a reader who scrolled up since (and
  // whose scroll event has not been handled yet) is not pulled back down.
  const autoTopRef = useRef(0);

  // Keep the newest line in view while following.
  useLayoutEffect(() => {
    const el = scrollRef.current;
    if (!el || !followRef.current) return;
    if (el.scrollTop < autoTopRef.current - LINE_HEIGHT) {
      followRef.current = false;
      setFollowing(false);
      return;
    }
    el.scrollTop = el.scrollHeight;
    autoTopRef.current = el.scrollTop;
  }, [count]);

  // A new filter starts at the bottom again.
  useEffect(() => {
    followRef.current = true;
    setFollowing(true);
    const el = scrollRef.current;
    if (el) {
      el.scrollTop = el.scrollHeight;
      autoTopRef.current = el.scrollTop;
    }
  }, [step, query]);

  const onScroll = () => {
    const el = scrollRef.current;
    if (!el) return;
    const atBottom = el.scrollHeight - el.scrollTop - el.clientHeight < LINE_HEIGHT * 2;
    followRef.current = atBottom;
    autoTopRef.current = el.scrollTop;
    if (atBottom !== following) setFollowing(atBottom);
  };

  const jump = () => {
    followRef.current = true;
    setFollowing(true);
    const el = scrollRef.current;
    if (el) {
      el.scrollTop = el.scrollHeight;
      autoTopRef.current = el.scrollTop;
    }
  };

  const download = () => {
    const lines = shown ? shown.map((i) => buffer.lines[i]) : buffer.lines;
    const blob = new Blob([lines.map(lineText).join("\n") + "\n"], { type: "text/plain" });
    const url = URL.createObjectURL(blob);
    const a = document.createElement("a");
    a.href = url;
    a.download = `run-${runId}${step ? `-${step}` : ""}.log`;
    a.click();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  };

  const options = useMemo(() => {
    const all = [...steps];
    for (const s of buffer.steps) if (!all.includes(s)) all.push(s);
    if (step && !all.includes(step)) all.push(step);
    return all;
  }, [steps, buffer.steps, version, step]);

  const items = virtualizer.getVirtualItems();

  return (
    <div className="log">
      <div className="log-toolbar">
        <label>
          <span>Step</span>
          <select className="select" data-testid="log-step-filter" value={step} onChange={(e) => onStepChange(e.target.value)}>
            <option value="">All steps</option>
            {options.map((s) => (
              <option key={s} value={s}>
                {s}
              </option>
            ))}
          </select>
        </label>
        <input
          type="search"
          className="input log-search"
          data-testid="log-search"
          placeholder="Filter lines…"
          value={query}
          onChange={(e) => setQuery(e.target.value)}
        />
        <span className="muted log-count">
          {count.toLocaleString("en-US")}
          {shown ? ` of ${buffer.lines.length.toLocaleString("en-US")}` : ""} line{count === 1 ? "" : "s"}
        </span>
        <span className="log-status muted">{status}</span>
        <span className="rn-spacer" />
        {!following ? (
          <button type="button" className="btn btn-small" data-testid="log-follow" onClick={jump}>
            ↓ Follow newest
          </button>
        ) : null}
        <button type="button" className="btn btn-small" onClick={download} disabled={count === 0}>
          Download
        </button>
      </div>
      <div className="log-head" aria-hidden="true">
        <span className="log-time">Time (UTC)</span>
        <span className="log-step">Step</span>
        <span className="log-text">Message</span>
      </div>
      <div className="log-scroll" ref={scrollRef} onScroll={onScroll} data-testid="log-view" data-following={following}>
        {count === 0 ? (
          <div className="log-empty muted">{buffer.lines.length === 0 ? "No log lines yet." : "No line matches."}</div>
        ) : null}
        <div className="log-inner" style={{ height: virtualizer.getTotalSize() }}>
          {items.map((item) => {
            const line = buffer.lines[shown ? shown[item.index] : item.index];
            const stream = streamName(line.stream);
            return (
              <div
                key={String(line.seq)}
                className={`log-line stream-${stream}`}
                data-testid="log-line"
                data-step={line.step}
                data-stream={stream}
                data-seq={String(line.seq)}
                style={{ transform: `translateY(${item.start}px)` }}
              >
                <span className="log-time" title={formatTime(line.time)}>
                  {clock(line)}
                </span>
                <span className="log-step" title={line.step ? `${line.step}, attempt ${line.attempt}` : "run"}>
                  {line.step ? (line.attempt ? `${line.step}#${line.attempt}` : line.step) : "run"}
                </span>
                <span className="log-text">{line.text}</span>
              </div>
            );
          })}
        </div>
      </div>
    </div>
  );
}
