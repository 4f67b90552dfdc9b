import { useRef, type ReactNode } from "react";
import { useVirtualizer } from "@tanstack/react-virtual";

export interface VirtualColumn {
  /** Header text. */
  header: ReactNode;
  /** CSS width of the column (table-layout is fixed). */
  width?: string;
  className?: string;
}

export interface VirtualTableProps {
  columns: VirtualColumn[];
  count: number;
  /** Every row has this height in pixels (cells do not wrap). */
  rowHeight: number;
  /** The `<tr>` of row `index`; it gets the height through CSS (.vt-row). */
  renderRow: (index: number) => ReactNode;
  /** The most the scroll area may take; it shrinks to the rows it has. */
  maxHeight?: string;
  /** Shown in place of the rows when there are none. */
  empty?: ReactNode;
  testId?: string;
  className?: string;
}

/** A table whose rows are virtualised: only the rows in view (and a few around) are in
 * the DOM, so tens of thousands of rows scroll smoothly. */
export function VirtualTable({
  columns,
  count,
  rowHeight,
  renderRow,
  maxHeight = "calc(100vh - 240px)",
  empty,
  testId,
  className,
}: VirtualTableProps) {
  const scrollRef = useRef<HTMLDivElement>(null);
  const virtualizer = useVirtualizer({
    count,
    getScrollElement: () => scrollRef.current,
    estimateSize: () => rowHeight,
    overscan: 12,
    // Before the first measurement (and in browsers without layout), render a screenful.
    initialRect: { width: 1000, height: 800 },
  });
  const items = virtualizer.getVirtualItems();
  const total = virtualizer.getTotalSize();
  const top = items.length > 0 ? items[0].start : 0;
  const bottom = items.length > 0 ? total - items[items.length - 1].end : 0;

  return (
    <div
      ref={scrollRef}
      className={`vt-scroll ${className ?? ""}`}
      style={{ maxHeight }}
      data-testid={testId}
    >
      <table className="vt-table" style={{ ["--vt-row" as string]: `${rowHeight}px` }}>
        <colgroup>
          {columns.map((c, i) => (
            <col key={i} style={c.width ? { width: c.width } : undefined} />
          ))}
        </colgroup>
        <thead>
          <tr>
            {columns.map((c, i) => (
              <th key={i} className={c.className}>
                {c.header}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>
          {count === 0 && empty !== undefined ? (
            <tr>
              <td className="vt-empty" colSpan={columns.length}>
                {empty}
              </td>
            </tr>
          ) : null}
          {top > 0 ? (
            <tr aria-hidden="true" className="vt-spacer">
              <td colSpan={columns.length} style={{ height: top }} />
            </tr>
          ) : null}
          {items.map((item) => renderRow(item.index))}
          {bottom > 0 ? (
            <tr aria-hidden="true" className="vt-spacer">
              <td colSpan={columns.length} style={{ height: bottom }} />
            </tr>
          ) : null}
        </tbody>
      </table>
    </div>
  );
}
