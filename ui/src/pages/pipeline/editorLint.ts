import type { Text } from "@codemirror/state";
import type { Diagnostic } from "@codemirror/lint";

export interface LineProblem {
  line: number;
  column: number;
  field: string;
  message: string;
}

/** The [from, to) range a problem marks: its line (from its column when known), clamped to the doc. */
export function problemRange(doc: Text, line: number, column: number): { from: number; to: number } {
  const n = Math.min(Math.max(line, 1), doc.lines);
  const l = doc.line(n);
  let from = l.from;
  if (column > 0) {
    from = Math.min(l.from + column - 1, l.to);
  }
  let to = l.to;
  if (to <= from) {
    to = Math.min(from + 1, doc.length);
    if (to <= from) {
      from = Math.max(0, from - 1);
    }
  }
  return { from, to };
}

/** CodeMirror diagnostics of the problems that have a line (the others are only listed). */
export function problemsToDiagnostics(doc: Text, problems: readonly LineProblem[]): Diagnostic[] {
  const out: Diagnostic[] = [];
  for (const p of problems) {
    if (p.line <= 0) continue;
    const { from, to } = problemRange(doc, p.line, p.column);
    out.push({
      from,
      to,
      severity: "error",
      message: p.field ? `${p.field}: ${p.message}` : p.message,
      source: "legato",
    });
  }
  return out;
}
