// The live state of one run: GetRun, the log history through GetRunLogs, then WatchRun
// (server streaming) for step changes and new log lines while the run is active.
import { useCallback, useEffect, useRef, useState } from "react";
import { runs, errorMessage } from "../../api";
import type { Run } from "@legato/client/gen/legato/v1/run_pb";
import { LogBuffer } from "./logBuffer";
import { mergeRun, mergeStep } from "./merge";
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

const LOG_PAGE = 10000; // GetRunLogs' largest page

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

    /** Follows the run through WatchRun until it ends (or `signal` aborts), opening the
     * stream again after errors; with `includeLogs`, new lines go to the buffer. */
    const follow = async (includeLogs: boolean, stop: AbortSignal, live: boolean) => {
      let backoff = 1000;
      while (!stop.aborted) {
        const current = runRef.current;
        if (!current || !isRunActive(current.status)) return;
        if (live) setStream("live");
        try {
          const watch = runs.watchRun(
            { id, includeLogs, afterSeq: includeLogs ? buffer.lastSeq : 0n },
            { signal: stop },
          );
          for await (const msg of watch) {
            backoff = 1000;
            setStreamError("");
            if (live) setStream("live");
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
          if (after && isRunActive(after.status)) await sleep(1000, stop);
        } catch (e) {
          if (stop.aborted) return;
          setStreamError(errorMessage(e));
          if (live) setStream("reconnecting");
          await sleep(backoff, stop);
          backoff = Math.min(backoff * 2, 30_000);
        }
      }
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

      // While a long history loads, the run's state follows through a stream without
      // log lines; the lines that follow the history come through the stream after it.
      const stateOnly = new AbortController();
      signal.addEventListener("abort", () => stateOnly.abort(), { once: true });
      const statePromise = follow(false, stateOnly.signal, false);

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
      stateOnly.abort();
      await statePromise;

      await follow(true, signal, true);
      if (!signal.aborted) setStream("ended");
    })();

    return () => {
      ac.abort();
      if (frame) cancelAnimationFrame(frame);
    };
  }, [id, update]);

  return { run, error, logError, streamError, stream, logs, logVersion, applyRun };
}
