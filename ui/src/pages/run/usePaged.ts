import { useCallback, useEffect, useRef, useState } from "react";
import { errorMessage } from "../../api";

export interface Page<T> {
  items: T[];
  nextToken: string;
}

export interface Paged<T> {
  items: T[];
  nextToken: string;
  loading: boolean;
  error: string;
  loadingMore: boolean;
  moreError: string;
  /** Appends the next page. */
  loadMore(): Promise<void>;
  /** Reads the first page again (keeping the pages after it when `merge` is given). */
  reload(): Promise<void>;
  /** Replaces one item (after a mutation answered it). */
  replace(match: (item: T) => boolean, next: T): void;
}

/** A list read page by page through page tokens. `key` names the filters: a new key starts
 * over (tokens are tied to the filters that made them). `merge` folds a re-read first page
 * into the items shown; without it a reload replaces them. */
export function usePaged<T>(
  key: string,
  fetchPage: (pageToken: string, signal: AbortSignal) => Promise<Page<T>>,
  merge?: (shown: T[], fresh: T[]) => T[],
): Paged<T> {
  const [state, setState] = useState({ key: "", items: [] as T[], nextToken: "", loading: true, error: "" });
  const [loadingMore, setLoadingMore] = useState(false);
  const [moreError, setMoreError] = useState("");
  const fetchRef = useRef(fetchPage);
  fetchRef.current = fetchPage;
  const mergeRef = useRef(merge);
  mergeRef.current = merge;
  const stateRef = useRef(state);
  stateRef.current = state;

  useEffect(() => {
    const ac = new AbortController();
    setState({ key, items: [], nextToken: "", loading: true, error: "" });
    setMoreError("");
    fetchRef
      .current("", ac.signal)
      .then((p) => setState({ key, items: p.items, nextToken: p.nextToken, loading: false, error: "" }))
      .catch((e: unknown) => {
        if (!ac.signal.aborted) setState({ key, items: [], nextToken: "", loading: false, error: errorMessage(e) });
      });
    return () => ac.abort();
  }, [key]);

  const loadMore = useCallback(async () => {
    const token = stateRef.current.nextToken;
    if (!token || stateRef.current.key !== key) return;
    setLoadingMore(true);
    setMoreError("");
    try {
      const p = await fetchRef.current(token, new AbortController().signal);
      setState((prev) => (prev.key === key ? { ...prev, items: [...prev.items, ...p.items], nextToken: p.nextToken } : prev));
    } catch (e) {
      setMoreError(errorMessage(e));
    } finally {
      setLoadingMore(false);
    }
  }, [key]);

  const reload = useCallback(async () => {
    try {
      const p = await fetchRef.current("", new AbortController().signal);
      setState((prev) => {
        if (prev.key !== key) return prev;
        const m = mergeRef.current;
        if (m) return { ...prev, items: m(prev.items, p.items), error: "" };
        return { key, items: p.items, nextToken: p.nextToken, loading: false, error: "" };
      });
    } catch (e) {
      setState((prev) => (prev.key === key ? { ...prev, error: errorMessage(e) } : prev));
    }
  }, [key]);

  const replace = useCallback((match: (item: T) => boolean, next: T) => {
    setState((prev) => ({ ...prev, items: prev.items.map((it) => (match(it) ? next : it)) }));
  }, []);

  const current = state.key === key ? state : { key, items: [] as T[], nextToken: "", loading: true, error: "" };
  return {
    items: current.items,
    nextToken: current.nextToken,
    loading: current.loading,
    error: current.error,
    loadingMore,
    moreError,
    loadMore,
    reload,
    replace,
  };
}
