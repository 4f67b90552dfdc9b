import { useEffect, useRef, type ReactNode } from "react";

export interface DialogProps {
  title: string;
  children: ReactNode;
  /** The buttons of the dialog's foot. */
  footer: ReactNode;
  onClose: () => void;
  testId?: string;
}

/** A modal dialog: Escape or a click outside closes it. */
export function Dialog({ title, children, footer, onClose, testId }: DialogProps) {
  const box = useRef<HTMLDivElement>(null);
  const onCloseRef = useRef(onClose);
  onCloseRef.current = onClose;
  useEffect(() => {
    const onKey = (ev: KeyboardEvent) => {
      if (ev.key === "Escape") onCloseRef.current();
    };
    window.addEventListener("keydown", onKey);
    const first = box.current?.querySelector<HTMLElement>("input, select, textarea, button.btn-primary");
    first?.focus();
    return () => window.removeEventListener("keydown", onKey);
  }, []);
  return (
    <div
      className="dialog-backdrop"
      onMouseDown={(ev) => {
        if (ev.target === ev.currentTarget) onClose();
      }}
    >
      <div className="dialog" role="dialog" aria-modal="true" aria-label={title} ref={box} data-testid={testId}>
        <div className="dialog-head">
          <h2>{title}</h2>
        </div>
        <div className="dialog-body">{children}</div>
        <div className="dialog-foot">{footer}</div>
      </div>
    </div>
  );
}
