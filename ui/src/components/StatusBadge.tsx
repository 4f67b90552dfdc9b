/** A coloured status pill: `<span class="badge status-<status>" data-status=...>`. */
export function StatusBadge({ status }: { status: string }) {
  return (
    <span className={`badge status-${status}`} data-status={status}>
      {status.replace(/_/g, " ")}
    </span>
  );
}
