import { useEffect, useState, useSyncExternalStore } from "react";
import { errorMessage, runs } from "../../api";
import type { Run } from "@legato/client/gen/legato/v1/run_pb";

export interface MarksEntry {
  runs: Run[];
  error: string;
}

type Fetcher = (pipeline: string, count: number) => Promise<Run[]>;

/**
 * Loads the last runs of pipelines a few at a time, only for the pipelines asked for last
 * (the rows in view): scrolling through 1,000 pipelines never queues 1,000 requests.
 */
export class MarksLoader {
  private readonly cache = new Map<string, MarksEntry>();
  private readonly inflight = new Set<string>();
  private queue: string[] = [];
  private readonly listeners = new Set<() => void>();
  private version = 0;

  constructor(
    private readonly fetcher: Fetcher,
    private readonly count = 8,
    private readonly concurrency = 4,
  ) {}

  get(name: string): MarksEntry | undefined {
    return this.cache.get(name);
  }

  getVersion = (): number => this.version;

  subscribe = (listener: () => void): (() => void) => {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  };

  /** Replaces what is waiting to load by the pipelines in `names` not loaded yet. */
  want(names: readonly string[]): void {
    this.queue = names.filter((n) => !this.cache.has(n) && !this.inflight.has(n));
    this.pump();
  }

  /** Forgets everything loaded (e.g. after a run was started). */
  clear(): void {
    this.cache.clear();
    this.bump();
  }

  /** Number of requests running now. */
  get active(): number {
    return this.inflight.size;
  }

  private bump(): void {
    this.version++;
    for (const l of this.listeners) l();
  }

  private pump(): void {
    while (this.inflight.size < this.concurrency && this.queue.length > 0) {
      const name = this.queue.shift();
      if (name === undefined || this.cache.has(name) || this.inflight.has(name)) continue;
      this.inflight.add(name);
      this.fetcher(name, this.count)
        .then((list) => {
          this.cache.set(name, { runs: list, error: "" });
        })
        .catch((e: unknown) => {
          this.cache.set(name, { runs: [], error: errorMessage(e) });
        })
        .finally(() => {
          this.inflight.delete(name);
          this.bump();
          this.pump();
        });
    }
  }
}

export async function fetchLastRuns(pipeline: string, count: number): Promise<Run[]> {
  const res = await runs.listRuns({ pipeline, pageSize: count });
  return res.runs;
}

/** One loader per page; re-renders when marks arrive. `names` are the rows in view. */
export function useRunMarks(names: readonly string[]): MarksLoader {
  const [loader] = useState(() => new MarksLoader(fetchLastRuns));
  useSyncExternalStore(loader.subscribe, loader.getVersion);
  const key = names.join("\n");
  useEffect(() => {
    const timer = window.setTimeout(() => loader.want(key ? key.split("\n") : []), 200);
    return () => window.clearTimeout(timer);
  }, [key, loader]);
  return loader;
}
