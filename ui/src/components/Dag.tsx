import { useMemo } from "react";
import type { PipelineSpec } from "@legato/client/gen/legato/v1/spec_pb";
import { dagInput, edgePath, layoutDag } from "../dagLayout";

export interface DagProps {
  spec: PipelineSpec;
  /** Status name (format.ts) by step name: colours the nodes. */
  statuses?: Record<string, string>;
  /** Called with the step name when a node is clicked. */
  onSelect?: (step: string) => void;
  /** The step drawn as selected. */
  selected?: string;
  /** LR (default): upstream steps on the left; TB: on top (for narrow places). */
  direction?: "LR" | "TB";
}

function truncate(text: string, width: number): string {
  const max = Math.max(4, Math.floor((width - 24) / 7.2));
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

/** The step DAG of a spec as SVG, laid out left to right with dagre. */
export function Dag({ spec, statuses, onSelect, selected, direction = "LR" }: DagProps) {
  const laid = useMemo(() => layoutDag(dagInput(spec), direction), [spec, direction]);
  if (laid.nodes.length === 0) {
    return <div className="dag-empty muted">No steps.</div>;
  }
  return (
    <div className="dag-scroll">
      <svg
        className="dag-svg"
        width={laid.width}
        height={laid.height}
        viewBox={`0 0 ${laid.width} ${laid.height}`}
        role="img"
        aria-label="Pipeline steps"
      >
        <defs>
          <marker id="dag-arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">
            <path d="M0,0 L10,5 L0,10 z" className="dag-arrow" />
          </marker>
        </defs>
        {laid.edges.map((e) => (
          <path
            key={`${e.from}->${e.to}`}
            className="dag-edge"
            d={edgePath(e.points)}
            markerEnd="url(#dag-arrow)"
            data-from={e.from}
            data-to={e.to}
          />
        ))}
        {laid.nodes.map((n) => {
          const status = statuses?.[n.id];
          const classes = ["dag-node"];
          if (status) classes.push(`dag-status-${status}`);
          if (n.missing) classes.push("dag-missing");
          if (onSelect) classes.push("dag-clickable");
          if (selected === n.id) classes.push("dag-selected");
          return (
            <g
              key={n.id}
              data-testid="dag-node"
              data-step={n.id}
              data-status={status}
              className={classes.join(" ")}
              transform={`translate(${n.x},${n.y})`}
              onClick={onSelect ? () => onSelect(n.id) : undefined}
              role={onSelect ? "button" : undefined}
              tabIndex={onSelect ? 0 : undefined}
              onKeyDown={
                onSelect
                  ? (ev) => {
                      if (ev.key === "Enter" || ev.key === " ") {
                        ev.preventDefault();
                        onSelect(n.id);
                      }
                    }
                  : undefined
              }
            >
              <title>{`${n.id}${n.kind ? ` (${n.kind})` : ""}${status ? `: ${status}` : ""}${n.missing ? ": not a step of this pipeline" : ""}`}</title>
              <rect className="dag-box" width={n.width} height={n.height} rx={6} ry={6} />
              <rect className="dag-stripe" width={5} height={n.height} rx={2} ry={2} />
              <text className="dag-name" x={14} y={19}>
                {truncate(n.id, n.width)}
              </text>
              <text className="dag-kind" x={14} y={35}>
                {truncate(
                  n.missing ? "missing step" : [n.kind, status?.replace(/_/g, " ")].filter(Boolean).join(" · "),
                  n.width,
                )}
              </text>
            </g>
          );
        })}
      </svg>
    </div>
  );
}
