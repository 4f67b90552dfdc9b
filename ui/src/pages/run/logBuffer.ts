import type { LogLine } from "@legato/client/gen/legato/v1/run_pb";

/** The lines of a run's log, in seq order, without repeats. It is mutated in place (a
 * 100,000-line log is not copied on every new line); `version` changes on every change so
 * React state can follow it. */
export class LogBuffer {
  readonly lines: LogLine[] = [];
  lastSeq = 0n;
  version = 0;
  /** Step names in the order their first line came. */
  readonly steps: string[] = [];
  private readonly seenSteps = new Set<string>();

  /** Appends the lines newer than the last one; answers whether any was new. */
  add(lines: readonly LogLine[]): boolean {
    let added = false;
    for (const line of lines) {
      if (line.seq <= this.lastSeq) continue;
      this.lines.push(line);
      this.lastSeq = line.seq;
      if (line.step && !this.seenSteps.has(line.step)) {
        this.seenSteps.add(line.step);
        this.steps.push(line.step);
      }
      added = true;
    }
    if (added) this.version++;
    return added;
  }
}

/** The indexes of the lines of `step` ("" for every step) whose text contains `query`
 * (ignoring case); undefined when neither filters. */
export function filterLines(lines: readonly LogLine[], step: string, query = ""): number[] | undefined {
  const q = query.trim().toLowerCase();
  if (!step && !q) return undefined;
  const out: number[] = [];
  for (let i = 0; i < lines.length; i++) {
    const l = lines[i];
    if (step && l.step !== step) continue;
    if (q && !l.text.toLowerCase().includes(q)) continue;
    out.push(i);
  }
  return out;
}
