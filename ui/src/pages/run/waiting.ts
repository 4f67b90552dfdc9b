// "Why is this waiting": the run's and its steps' waiting reasons said in words.
import { formatDuration, formatMs, stepStatusName, tsMs } from "../../format";
import { RunStatus, StepStatus, type Run } from "@legato/client/gen/legato/v1/run_pb";

export interface WaitingLine {
  /** "run" or the step's name. */
  subject: string;
  text: string;
}

/** The server's reasons start with "waiting: " or "waiting for ..."; the sentence here
 * says who waits, so the reason is kept from what follows. */
function reasonText(reason: string): string {
  return reason.replace(/^waiting:\s*/i, "").trim();
}

/** The text with a full stop, unless it already ends a sentence. */
function sentence(text: string): string {
  return /[.!?…]$/.test(text) ? text : `${text}.`;
}

function unfinished(status: StepStatus): boolean {
  return (
    status === StepStatus.PENDING ||
    status === StepStatus.READY ||
    status === StepStatus.LEASED ||
    status === StepStatus.RUNNING
  );
}

/** Why the run (queued) or its ready and pending steps are not running yet. `needs` (from
 * the pinned pipeline version, when it could be read) names each step's upstreams. */
export function waitingLines(run: Run, needs: Map<string, string[]> | undefined, now: number): WaitingLine[] {
  const out: WaitingLine[] = [];
  if (run.status === RunStatus.QUEUED) {
    const why = reasonText(run.waitingReason);
    out.push({
      subject: "run",
      text: why
        ? sentence(`The run is queued and has not started: ${why}`)
        : "The run is queued: the control plane has not started it yet (no reason given).",
    });
    return out;
  }
  if (run.status !== RunStatus.RUNNING) return out;
  const byName = new Map(run.steps.map((s) => [s.name, s]));
  for (const step of run.steps) {
    if (step.status === StepStatus.READY) {
      const why = reasonText(step.waitingReason) || "waiting for a free agent slot";
      out.push({ subject: step.name, text: sentence(`Ready to run, not started yet: ${why}`) });
    } else if (step.status === StepStatus.PENDING) {
      const next = tsMs(step.nextAttemptTime);
      const why = reasonText(step.waitingReason);
      if (next !== undefined && step.attempt > 0) {
        const when = next > now ? `at ${formatMs(next)} (in ${formatDuration(next - now)})` : "now";
        out.push({
          subject: step.name,
          text: sentence(`Attempt ${step.attempt} failed; the next attempt starts ${when}${why ? ` (${why})` : ""}`),
        });
        continue;
      }
      const upstream = (needs?.get(step.name) ?? []).filter((n) => {
        const s = byName.get(n);
        return s !== undefined && unfinished(s.status);
      });
      if (upstream.length > 0) {
        const list = upstream.map((n) => `${n} (${stepStatusName(byName.get(n)?.status ?? 0).replace(/_/g, " ")})`);
        out.push({
          subject: step.name,
          text: `Waiting for the step${upstream.length === 1 ? "" : "s"} it needs to finish: ${list.join(", ")}.`,
        });
      } else if (why) {
        out.push({ subject: step.name, text: sentence(`Pending: ${why}`) });
      } else {
        out.push({
          subject: step.name,
          text: needs
            ? "Pending: its upstream steps have finished; it becomes ready at the control plane's next pass."
            : "Pending: waiting for the steps it needs to finish.",
        });
      }
    }
  }
  return out;
}
