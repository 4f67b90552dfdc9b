// The live state of one run: GetRun, the log history through GetRunLogs, then WatchRun
// (server streaming) for step changes and new log lines while the run is active.
import { useCallback, useEffect, useRef, useState } from "react";
import { runs, errorMessage } from "../../api";
import type { Run, StepRun } from "../../gen/legato/v1/run_pb";
import { LogBuffer } from "./logBuffer";
import { isRunActive } from "./util";

export type StreamState = "idle" | "loading-logs" | "live" | "reconnecting" | "ended";

export interface RunLive {
  run?: Run;
  /** GetRun's error: the page has nothing to show. */
  error: string;
  /** An error of the log history or of the live stream (shown beside what loaded). */
  logError: string;
  streamError: string;
  stream: StreamState;
  logs: LogBuffer;
  /** Changes whenever `logs` changes. */
  logVersion: number;
  /** Merges a Run answered by another call (CancelRun) into the state. */
  applyRun(run: Run): void;
}

const LOG_PAGE = 1000;

/** A Run message without steps (WatchRun sends one on a status change) keeps the steps
 * already known. */
export function mergeRun(prev: Run | undefined, next: Run): Run {
  if (prev && prev.id === next.id && next.steps.length === 0 && prev.steps.length > 0) {
    return { ...next, steps: prev.steps };
  }
  return next;
}

export function mergeStep(prev: Run, step: StepRun): Run {
  const steps = prev.steps.slice();
  const i = steps.findIndex((s) => s.name === step.name);
  if (i >= 0) steps[i] = step;
  else steps.push(step);
  return { ...prev, steps };
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener(
      "abort",
      () => {
        clearTimeout(t);
        resolve();
      },
      { once: true },
    );
  });
}

export function useRunLive(id: string): RunLive {
  const [run, setRun] = useState<Run | undefined>(undefined);
  const [error, setError] = useState("");
  const [logError, setLogError] = useState("");
  const [streamError, setStreamError] = useState("");
  const [stream, setStream] = useState<StreamState>("idle");
  const [logs, setLogs] = useState(() => new LogBuffer());
  const [logVersion, setLogVersion] = useState(0);
  const runRef = useRef<Run | undefined>(undefined);

  const update = useCallback((f: (prev: Run | undefined) => Run | undefined) => {
    runRef.current = f(runRef.current);
    setRun(runRef.current);
  }, []);

  const applyRun = useCallback(
    (next: Run) => update((prev) => mergeRun(prev, next)),
    [update],
  );

  useEffect(() => {
    const ac = new AbortController();
    const { signal } = ac;
    const buffer = new LogBuffer();
    runRef.current = undefined;
    setRun(undefined);
    setError("");
    setLogError("");
    setStreamError("");
    setStream("idle");
    setLogs(buffer);
    setLogVersion(0);

    // New lines are shown once per animation frame, not once per line.
    let frame = 0;
    const bump = () => {
      if (frame) return;
      frame = requestAnimationFrame(() => {
        frame = 0;
        setLogVersion(buffer.version);
      });
    };

    (async () => {
      try {
        const res = await runs.getRun({ id }, { signal });
        if (signal.aborted) return;
        update(() => res.run);
      } catch (e) {
        if (!signal.aborted) setError(errorMessage(e));
        return;
      }

      setStream("loading-logs");
      try {
        let pageToken = "";
        do {
          const page = await runs.getRunLogs(
            { runId: id, pageSize: LOG_PAGE, pageToken },
            { signal },
          );
          if (signal.aborted) return;
          if (buffer.add(page.lines)) bump();
          pageToken = page.nextPageToken;
        } while (pageToken);
      } catch (e) {
        if (signal.aborted) return;
        // The history is incomplete; the live stream below still resumes after the last
        // line read, so what follows is shown.
        setLogError(errorMessage(e));
      }

      let backoff = 1000;
      while (!signal.aborted) {
        const current = runRef.current;
        if (!current || !isRunActive(current.status)) break;
        setStream("live");
        try {
          const watch = runs.watchRun(
            { id, includeLogs: true, afterSeq: buffer.lastSeq },
            { signal },
          );
          for await (const msg of watch) {
            backoff = 1000;
            setStreamError("");
            const ev = msg.event;
            if (ev.case === "run") {
              const next = ev.value;
              update((prev) => mergeRun(prev, next));
            } else if (ev.case === "step") {
              const step = ev.value;
              update((prev) => (prev ? mergeStep(prev, step) : prev));
            } else if (ev.case === "log") {
              if (buffer.add([ev.value])) bump();
            }
          }
          // The stream ends once the run has; should it end earlier (a server restart),
          // it is opened again after a pause.
          const after = runRef.current;
          if (after && isRunActive(after.status)) await sleep(1000, signal);
        } catch (e) {
          if (signal.aborted) return;
          setStreamError(errorMessage(e));
          setStream("reconnecting");
          await sleep(backoff, signal);
          backoff = Math.min(backoff * 2, 30_000);
        }
      }
      if (!signal.aborted) setStream("ended");
    })();

    return () => {
      ac.abort();
      if (frame) cancelAnimationFrame(frame);
    };
  }, [id, update]);

  return { run, error, logError, streamError, stream, logs, logVersion, applyRun };
}
