import { graphlib, layout } from "@dagrejs/dagre";
import type { PipelineSpec } from "@legato/client/gen/legato/v1/spec_pb";

export interface DagNodeInput {
  id: string;
  kind: string;
  /** A step named in `needs` that the spec does not have. */
  missing: boolean;
  width: number;
  height: number;
}

export interface DagEdgeInput {
  from: string;
  to: string;
}

export interface DagInput {
  nodes: DagNodeInput[];
  edges: DagEdgeInput[];
}

export interface DagNodeLayout extends DagNodeInput {
  /** Top-left corner. */
  x: number;
  y: number;
}

export interface DagEdgeLayout extends DagEdgeInput {
  points: { x: number; y: number }[];
}

export interface DagLayout {
  width: number;
  height: number;
  nodes: DagNodeLayout[];
  edges: DagEdgeLayout[];
}

export const NODE_HEIGHT = 46;
const MIN_NODE_WIDTH = 130;
const MAX_NODE_WIDTH = 260;
const MARGIN = 16;

/** The width a node needs for its name (monospace-ish estimate: layout must not depend on fonts). */
export function nodeWidth(name: string): number {
  return Math.min(MAX_NODE_WIDTH, Math.max(MIN_NODE_WIDTH, Math.ceil(name.length * 7.6) + 36));
}

/** Nodes (one per step, in spec order, plus one per unknown step named in `needs`) and edges need → step. */
export function dagInput(spec: Pick<PipelineSpec, "steps">): DagInput {
  const nodes: DagNodeInput[] = [];
  const seen = new Set<string>();
  for (const step of spec.steps) {
    if (!step.name || seen.has(step.name)) continue;
    seen.add(step.name);
    nodes.push({
      id: step.name,
      kind: step.kind.case ?? "",
      missing: false,
      width: nodeWidth(step.name),
      height: NODE_HEIGHT,
    });
  }
  const edges: DagEdgeInput[] = [];
  const edgeKeys = new Set<string>();
  const missing = new Set<string>();
  const doneSteps = new Set<string>();
  for (const step of spec.steps) {
    if (!step.name || doneSteps.has(step.name)) continue;
    doneSteps.add(step.name);
    for (const need of step.needs) {
      if (!need || need === step.name) continue;
      const key = `${need}\u0000${step.name}`;
      if (edgeKeys.has(key)) continue;
      edgeKeys.add(key);
      if (!seen.has(need) && !missing.has(need)) {
        missing.add(need);
      }
      edges.push({ from: need, to: step.name });
    }
  }
  for (const name of missing) {
    nodes.push({ id: name, kind: "", missing: true, width: nodeWidth(name), height: NODE_HEIGHT });
  }
  return { nodes, edges };
}

/** Positions of the nodes and edges, left to right, with dagre. */
export function layoutDag(input: DagInput, direction: "LR" | "TB" = "LR"): DagLayout {
  if (input.nodes.length === 0) {
    return { width: 0, height: 0, nodes: [], edges: [] };
  }
  const g = new graphlib.Graph({ multigraph: false });
  g.setGraph({ rankdir: direction, nodesep: 18, ranksep: 48, marginx: MARGIN, marginy: MARGIN });
  g.setDefaultEdgeLabel(() => ({}));
  for (const n of input.nodes) {
    g.setNode(n.id, { width: n.width, height: n.height });
  }
  for (const e of input.edges) {
    g.setEdge(e.from, e.to);
  }
  layout(g);
  const nodes: DagNodeLayout[] = input.nodes.map((n) => {
    const laid = g.node(n.id) as { x?: number; y?: number } | undefined;
    const cx = laid?.x ?? n.width / 2;
    const cy = laid?.y ?? n.height / 2;
    return { ...n, x: cx - n.width / 2, y: cy - n.height / 2 };
  });
  const edges: DagEdgeLayout[] = input.edges.map((e) => {
    const laid = g.edge(e.from, e.to) as { points?: { x: number; y: number }[] } | undefined;
    return { ...e, points: laid?.points ?? [] };
  });
  let width = 0;
  let height = 0;
  for (const n of nodes) {
    width = Math.max(width, n.x + n.width);
    height = Math.max(height, n.y + n.height);
  }
  for (const e of edges) {
    for (const p of e.points) {
      width = Math.max(width, p.x);
      height = Math.max(height, p.y);
    }
  }
  return { width: Math.ceil(width + MARGIN), height: Math.ceil(height + MARGIN), nodes, edges };
}

/** An SVG path through an edge's points: straight segments with rounded joins. */
export function edgePath(points: { x: number; y: number }[]): string {
  if (points.length === 0) return "";
  const [first, ...rest] = points;
  if (rest.length === 0) return `M${first.x},${first.y}`;
  if (points.length === 2) {
    return `M${first.x},${first.y} L${points[1].x},${points[1].y}`;
  }
  let d = `M${first.x},${first.y}`;
  for (let i = 1; i < points.length - 1; i++) {
    const p = points[i];
    const next = points[i + 1];
    const mx = (p.x + next.x) / 2;
    const my = (p.y + next.y) / 2;
    d += ` Q${p.x},${p.y} ${mx},${my}`;
  }
  const last = points[points.length - 1];
  d += ` L${last.x},${last.y}`;
  return d;
}
