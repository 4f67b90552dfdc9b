import { Link } from "react-router-dom";
import { formatTime, runStatusName, triggerName } from "../../format";
import type { MarksEntry } from "./runMarks";

/** The last runs of a pipeline as coloured marks, oldest left, newest right. */
export function RunMarks({ entry, count }: { entry: MarksEntry | undefined; count: number }) {
  if (!entry) {
    return (
      <span className="marks" aria-busy="true">
        {Array.from({ length: 3 }, (_, i) => (
          <span key={i} className="mark mark-placeholder" />
        ))}
      </span>
    );
  }
  if (entry.error) {
    return (
      <span className="error-text ellipsis" title={entry.error} role="alert">
        {entry.error}
      </span>
    );
  }
  if (entry.runs.length === 0) {
    return <span className="muted small">no runs</span>;
  }
  const shown = entry.runs.slice(0, count).reverse();
  return (
    <span className="marks" data-testid="run-marks">
      {shown.map((r) => {
        const status = runStatusName(r.status);
        return (
          <Link
            key={r.id}
            to={`/runs/${r.id}`}
            className={`mark mark-${status}`}
            data-status={status}
            title={`${status} · ${triggerName(r.trigger?.kind ?? 0)} · ${formatTime(r.createTime)}`}
            aria-label={`run ${r.id}: ${status}`}
          />
        );
      })}
    </span>
  );
}
