import { describe, expect, it } from "vitest";
import { diffStats, diffToRows } from "./diffRows";

describe("diffToRows", () => {
  it("pairs unchanged lines", () => {
    const rows = diffToRows("a\nb\n", "a\nb\n");
    expect(rows).toEqual([
      { left: { no: 1, text: "a", kind: "same" }, right: { no: 1, text: "a", kind: "same" } },
      { left: { no: 2, text: "b", kind: "same" }, right: { no: 2, text: "b", kind: "same" } },
    ]);
  });

  it("puts a replaced line beside its replacement", () => {
    const rows = diffToRows("a\nb\nc\n", "a\nB\nc\n");
    expect(rows[1]).toEqual({ left: { no: 2, text: "b", kind: "removed" }, right: { no: 2, text: "B", kind: "added" } });
    expect(rows[2].left?.no).toBe(3);
    expect(rows[2].right?.no).toBe(3);
  });

  it("leaves the other side empty for pure additions and removals", () => {
    const rows = diffToRows("a\nc\n", "a\nb1\nb2\nc\n");
    expect(rows.map((r) => [r.left?.kind ?? null, r.right?.kind ?? null])).toEqual([
      ["same", "same"],
      [null, "added"],
      [null, "added"],
      ["same", "same"],
    ]);
    expect(rows[3]).toEqual({ left: { no: 2, text: "c", kind: "same" }, right: { no: 4, text: "c", kind: "same" } });

    const removed = diffToRows("x\ny\n", "x\n");
    expect(removed[1]).toEqual({ left: { no: 2, text: "y", kind: "removed" }, right: null });
  });

  it("handles a missing final newline and empty texts", () => {
    expect(diffToRows("", "")).toEqual([]);
    const rows = diffToRows("", "a\nb");
    expect(rows.map((r) => r.right?.text)).toEqual(["a", "b"]);
    expect(rows.every((r) => r.left === null)).toBe(true);
  });

  it("counts changes", () => {
    const rows = diffToRows("a\nb\nc\n", "a\nB\nc\nd\n");
    expect(diffStats(rows)).toEqual({ added: 2, removed: 1, same: 2 });
  });
});
