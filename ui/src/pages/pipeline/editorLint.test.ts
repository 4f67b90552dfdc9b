import { describe, expect, it } from "vitest";
import { Text } from "@codemirror/state";
import { problemRange, problemsToDiagnostics } from "./editorLint";

const doc = Text.of(["name: x", "steps:", "  - name: a", ""]);

describe("problemsToDiagnostics", () => {
  it("marks the problem's line from its column", () => {
    const [d] = problemsToDiagnostics(doc, [{ line: 3, column: 5, field: "steps[0].name", message: "bad" }]);
    const line = doc.line(3);
    expect(d.from).toBe(line.from + 4);
    expect(d.to).toBe(line.to);
    expect(d.message).toBe("steps[0].name: bad");
    expect(d.severity).toBe("error");
  });

  it("skips problems without a line and clamps lines past the end", () => {
    const ds = problemsToDiagnostics(doc, [
      { line: 0, column: 0, field: "", message: "somewhere" },
      { line: 99, column: 0, field: "", message: "past the end" },
    ]);
    expect(ds).toHaveLength(1);
    expect(ds[0].from).toBeLessThanOrEqual(doc.length);
  });

  it("never makes an empty range on a non-empty doc", () => {
    const r = problemRange(doc, 4, 1);
    expect(r.to).toBeGreaterThan(r.from);
  });
});
