import { diffLines } from "diff";

export type DiffKind = "same" | "removed" | "added";

export interface DiffCell {
  /** 1-based line number in its version. */
  no: number;
  text: string;
  kind: DiffKind;
}

/** One row of a side-by-side diff: the old line on the left, the new one on the right (either may be absent). */
export interface DiffRow {
  left: DiffCell | null;
  right: DiffCell | null;
}

export interface DiffStats {
  added: number;
  removed: number;
  same: number;
}

function splitLines(value: string): string[] {
  if (value === "") return [];
  const lines = value.split("\n");
  if (lines[lines.length - 1] === "") lines.pop();
  return lines;
}

/**
 * Side-by-side rows of a line diff: unchanged lines face each other, a removed block faces the
 * added block that replaces it (line by line), and the longer one's extra lines face nothing.
 */
export function diffToRows(oldText: string, newText: string): DiffRow[] {
  const changes = diffLines(oldText, newText);
  const rows: DiffRow[] = [];
  let oldNo = 0;
  let newNo = 0;
  let i = 0;
  while (i < changes.length) {
    const c = changes[i];
    if (!c.added && !c.removed) {
      for (const text of splitLines(c.value)) {
        oldNo++;
        newNo++;
        rows.push({ left: { no: oldNo, text, kind: "same" }, right: { no: newNo, text, kind: "same" } });
      }
      i++;
      continue;
    }
    let removed: string[] = [];
    let added: string[] = [];
    while (i < changes.length && (changes[i].added || changes[i].removed)) {
      if (changes[i].removed) removed = removed.concat(splitLines(changes[i].value));
      else added = added.concat(splitLines(changes[i].value));
      i++;
    }
    const n = Math.max(removed.length, added.length);
    for (let k = 0; k < n; k++) {
      const left: DiffCell | null = k < removed.length ? { no: ++oldNo, text: removed[k], kind: "removed" } : null;
      const right: DiffCell | null = k < added.length ? { no: ++newNo, text: added[k], kind: "added" } : null;
      rows.push({ left, right });
    }
  }
  return rows;
}

export function diffStats(rows: readonly DiffRow[]): DiffStats {
  const s: DiffStats = { added: 0, removed: 0, same: 0 };
  for (const r of rows) {
    if (r.left?.kind === "same") s.same++;
    if (r.left?.kind === "removed") s.removed++;
    if (r.right?.kind === "added") s.added++;
  }
  return s;
}
