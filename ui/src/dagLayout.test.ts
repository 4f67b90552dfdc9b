import { describe, expect, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { PipelineSpecSchema, StepSchema, TransformStepSchema, QueryStepSchema } from "@legato/client/gen/legato/v1/spec_pb";
import { dagInput, edgePath, layoutDag, nodeWidth } from "./dagLayout";

function spec(steps: { name: string; needs?: string[]; kind?: "transform" | "query" }[]) {
  return create(PipelineSpecSchema, {
    name: "p",
    steps: steps.map((s) =>
      create(StepSchema, {
        name: s.name,
        needs: s.needs ?? [],
        kind:
          s.kind === "query"
            ? { case: "query", value: create(QueryStepSchema, { connection: "db", sql: "select 1" }) }
            : { case: "transform", value: create(TransformStepSchema, { code: "result = data" }) },
      }),
    ),
  });
}

describe("dagInput", () => {
  it("has a node per step and an edge per need", () => {
    const input = dagInput(spec([{ name: "a", kind: "query" }, { name: "b", needs: ["a"] }, { name: "c", needs: ["a", "b"] }]));
    expect(input.nodes.map((n) => [n.id, n.kind, n.missing])).toEqual([
      ["a", "query", false],
      ["b", "transform", false],
      ["c", "transform", false],
    ]);
    expect(input.edges).toEqual([
      { from: "a", to: "b" },
      { from: "a", to: "c" },
      { from: "b", to: "c" },
    ]);
  });

  it("marks needs that are not steps, and drops duplicates and self-edges", () => {
    const input = dagInput(spec([{ name: "a", needs: ["ghost", "ghost", "a"] }, { name: "a" }]));
    expect(input.nodes.map((n) => [n.id, n.missing])).toEqual([
      ["a", false],
      ["ghost", true],
    ]);
    expect(input.edges).toEqual([{ from: "ghost", to: "a" }]);
  });

  it("sizes nodes by their name within bounds", () => {
    expect(nodeWidth("a")).toBe(130);
    expect(nodeWidth("x".repeat(200))).toBe(260);
  });
});

describe("layoutDag", () => {
  it("places upstream steps to the left", () => {
    const laid = layoutDag(dagInput(spec([{ name: "a" }, { name: "b", needs: ["a"] }, { name: "c", needs: ["b"] }])));
    const x = Object.fromEntries(laid.nodes.map((n) => [n.id, n.x]));
    expect(x.a).toBeLessThan(x.b);
    expect(x.b).toBeLessThan(x.c);
    expect(laid.edges).toHaveLength(2);
    for (const e of laid.edges) expect(e.points.length).toBeGreaterThanOrEqual(2);
    for (const n of laid.nodes) {
      expect(n.x + n.width).toBeLessThanOrEqual(laid.width);
      expect(n.y + n.height).toBeLessThanOrEqual(laid.height);
    }
  });

  it("is empty without steps", () => {
    expect(layoutDag(dagInput(spec([])))).toEqual({ width: 0, height: 0, nodes: [], edges: [] });
  });

  it("is deterministic", () => {
    const s = spec([{ name: "a" }, { name: "b", needs: ["a"] }, { name: "c", needs: ["a"] }, { name: "d", needs: ["b", "c"] }]);
    expect(layoutDag(dagInput(s))).toEqual(layoutDag(dagInput(s)));
  });
});

describe("edgePath", () => {
  it("draws through the points", () => {
    expect(edgePath([])).toBe("");
    expect(edgePath([{ x: 0, y: 0 }, { x: 10, y: 5 }])).toBe("M0,0 L10,5");
    expect(edgePath([{ x: 0, y: 0 }, { x: 10, y: 0 }, { x: 20, y: 10 }])).toBe("M0,0 Q10,0 15,5 L20,10");
  });
});
