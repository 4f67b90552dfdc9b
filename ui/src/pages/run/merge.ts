// How WatchRun's messages fold into the run shown.
import type { Run, StepRun } from "@legato/client/gen/legato/v1/run_pb";

/** A Run message without steps (WatchRun sends one on a status change) keeps the steps
 * already known. */
export function mergeRun(prev: Run | undefined, next: Run): Run {
  if (prev && prev.id === next.id && next.steps.length === 0 && prev.steps.length > 0) {
    return { ...next, steps: prev.steps };
  }
  return next;
}

export function mergeStep(prev: Run, step: StepRun): Run {
  const steps = prev.steps.slice();
  const i = steps.findIndex((s) => s.name === step.name);
  if (i >= 0) steps[i] = step;
  else steps.push(step);
  return { ...prev, steps };
}
