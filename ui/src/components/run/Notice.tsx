import type { ReactNode } from "react";

/** An API error (the server's message) or a note, shown where it happened. */
export function ErrorNote({ message, title }: { message: string; title?: string }) {
  if (!message) return null;
  return (
    <div className="error-box rn-error" role="alert">
      {title ? <strong>{title}: </strong> : null}
      <span className="rn-error-text">{message}</span>
    </div>
  );
}

/** A small coloured label for states that are not run or step statuses (agent states,
 * audit outcomes, notification statuses). */
export function Pill({ tone, children, testId }: { tone: string; children: ReactNode; testId?: string }) {
  return (
    <span className={`rn-pill rn-tone-${tone}`} data-testid={testId}>
      {children}
    </span>
  );
}

/** A section of a page with a title bar and optional tools on its right. */
export function Section({
  title,
  tools,
  children,
  className,
  testId,
}: {
  title: ReactNode;
  tools?: ReactNode;
  children: ReactNode;
  className?: string;
  testId?: string;
}) {
  return (
    <section className={`card rn-section ${className ?? ""}`} data-testid={testId}>
      <header className="rn-section-head">
        <h2>{title}</h2>
        {tools ? <div className="rn-section-tools">{tools}</div> : null}
      </header>
      <div className="rn-section-body">{children}</div>
    </section>
  );
}
