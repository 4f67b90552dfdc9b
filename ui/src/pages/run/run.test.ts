import { describe, expect, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import {
  LogLineSchema,
  RunSchema,
  RunStatus,
  StepAttemptSchema,
  StepRunSchema,
  StepStatus,
} from "@legato/client/gen/legato/v1/run_pb";
import { stepBars } from "../../components/run/Gantt";
import { filterLines, LogBuffer } from "./logBuffer";
import { mergeRun, mergeStep } from "./merge";
import {
  clockUtc,
  fromUtcInputValue,
  ganttTicks,
  ganttWindow,
  parseSince,
  shortRunId,
  splitList,
  toUtcInputValue,
} from "./util";
import { waitingLines } from "./waiting";

const T0 = Date.UTC(2026, 11, 7, 14, 0, 0);

describe("util", () => {
  it("shortens run ids to their random tail", () => {
    expect(shortRunId("01m99d9wk5jjtg61p6r45r1wsv")).toBe("r45r1wsv");
    expect(shortRunId("abc")).toBe("abc");
  });

  it("reads relative and absolute since values", () => {
    expect(parseSince("", T0)).toBeUndefined();
    expect(parseSince("24h", T0)).toBe(T0 - 86_400_000);
    expect(parseSince("7d", T0)).toBe(T0 - 7 * 86_400_000);
    expect(parseSince("30m", T0)).toBe(T0 - 1_800_000);
    expect(parseSince("2026-12-07T13:00Z", T0)).toBe(T0 - 3_600_000);
    expect(parseSince("yesterday", T0)).toBeUndefined();
  });

  it("round-trips datetime-local values as UTC", () => {
    expect(toUtcInputValue(T0)).toBe("2026-12-07T14:00");
    expect(fromUtcInputValue("2026-12-07T14:00")).toBe(T0);
    expect(fromUtcInputValue("")).toBeUndefined();
  });

  it("splits comma lists", () => {
    expect(splitList("failed, cancelled,,")).toEqual(["failed", "cancelled"]);
    expect(splitList(null)).toEqual([]);
  });

  it("puts round ticks on the axis", () => {
    const ticks = ganttTicks(T0 + 1200, T0 + 61_000);
    expect(ticks.length).toBeGreaterThanOrEqual(3);
    expect(ticks.length).toBeLessThanOrEqual(7);
    for (const t of ticks) {
      expect(t.at % 10_000).toBe(0);
      expect(t.x).toBeGreaterThanOrEqual(0);
      expect(t.x).toBeLessThanOrEqual(1);
    }
    expect(clockUtc(T0 + 5250, 250)).toBe("14:00:05.250");
    expect(clockUtc(T0 + 5250, 5000)).toBe("14:00:05");
    expect(clockUtc(T0 + 5250, 600_000)).toBe("14:00");
  });
});

describe("gantt", () => {
  const step = create(StepRunSchema, {
    name: "load",
    status: StepStatus.RUNNING,
    attempt: 2,
    attempts: [
      create(StepAttemptSchema, {
        number: 1,
        status: StepStatus.FAILED,
        startTime: timestampFromMs(T0),
        endTime: timestampFromMs(T0 + 2000),
        error: "boom",
      }),
      create(StepAttemptSchema, { number: 2, status: StepStatus.RUNNING, startTime: timestampFromMs(T0 + 5000) }),
    ],
  });

  it("draws every attempt as its own bar, the open one up to now", () => {
    const bars = stepBars(step, T0 + 9000);
    expect(bars.map((b) => [b.attempt, b.status, b.end - b.start, b.open])).toEqual([
      [1, "failed", 2000, false],
      [2, "running", 4000, true],
    ]);
  });

  it("gives a reused step (no attempts) no bar", () => {
    const reused = create(StepRunSchema, {
      name: "extract",
      status: StepStatus.SUCCEEDED,
      startTime: timestampFromMs(T0 - 86_400_000),
      endTime: timestampFromMs(T0 - 86_300_000),
      waitingReason: "reused from run 01m99d9wk5jjtg61p6r45r1wsv",
      kind: "transform",
    });
    expect(stepBars(reused, T0)).toEqual([]);
  });

  it("spans the window to now while the run is active", () => {
    const bars = stepBars(step, T0 + 9000);
    expect(ganttWindow(bars, T0 - 500, undefined, T0 + 9000, true)).toEqual({ start: T0 - 500, end: T0 + 9000 });
    expect(ganttWindow([], undefined, undefined, T0, false)).toBeUndefined();
  });
});

describe("log buffer", () => {
  const line = (seq: number, step: string) => create(LogLineSchema, { seq: BigInt(seq), step, text: `line ${seq}` });

  it("keeps lines in order without repeats", () => {
    const buf = new LogBuffer();
    expect(buf.add([line(1, ""), line(2, "a"), line(3, "b")])).toBe(true);
    expect(buf.add([line(2, "a"), line(3, "b")])).toBe(false);
    expect(buf.add([line(4, "a")])).toBe(true);
    expect(buf.lines.map((l) => Number(l.seq))).toEqual([1, 2, 3, 4]);
    expect(buf.lastSeq).toBe(4n);
    expect(buf.steps).toEqual(["a", "b"]);
    expect(buf.version).toBe(2);
    expect(filterLines(buf.lines, "a")).toEqual([1, 3]);
    expect(filterLines(buf.lines, "")).toBeUndefined();
    expect(filterLines(buf.lines, "", "LINE 3")).toEqual([2]);
    expect(filterLines(buf.lines, "a", "4")).toEqual([3]);
  });
});

describe("watch merging", () => {
  const run = create(RunSchema, {
    id: "r1",
    status: RunStatus.RUNNING,
    steps: [create(StepRunSchema, { name: "a", status: StepStatus.RUNNING })],
  });

  it("keeps the steps when a status change comes without them", () => {
    const next = create(RunSchema, { id: "r1", status: RunStatus.FAILED });
    const merged = mergeRun(run, next);
    expect(merged.status).toBe(RunStatus.FAILED);
    expect(merged.steps.map((s) => s.name)).toEqual(["a"]);
  });

  it("replaces a step by name, appends a new one", () => {
    const done = mergeStep(run, create(StepRunSchema, { name: "a", status: StepStatus.SUCCEEDED }));
    expect(done.steps[0].status).toBe(StepStatus.SUCCEEDED);
    const more = mergeStep(done, create(StepRunSchema, { name: "b", status: StepStatus.READY }));
    expect(more.steps.map((s) => s.name)).toEqual(["a", "b"]);
  });
});

describe("waiting reasons", () => {
  it("says why a queued run waits", () => {
    const run = create(RunSchema, {
      status: RunStatus.QUEUED,
      waitingReason: "waiting: limits.max_concurrent_runs (1) reached; active runs: 01m99d9xzcd238ejcy9gk97hqb",
    });
    expect(waitingLines(run, undefined, T0)).toEqual([
      {
        subject: "run",
        text: "The run is queued and has not started: limits.max_concurrent_runs (1) reached; active runs: 01m99d9xzcd238ejcy9gk97hqb.",
      },
    ]);
  });

  it("names the unfinished upstreams, the agent wait and the retry time", () => {
    const run = create(RunSchema, {
      status: RunStatus.RUNNING,
      steps: [
        create(StepRunSchema, { name: "extract", status: StepStatus.RUNNING }),
        create(StepRunSchema, { name: "load", status: StepStatus.PENDING }),
        create(StepRunSchema, { name: "side", status: StepStatus.READY, waitingReason: "waiting: no connected agent has connection 'warehouse'" }),
        create(StepRunSchema, {
          name: "flaky",
          status: StepStatus.PENDING,
          attempt: 1,
          nextAttemptTime: timestampFromMs(T0 + 90_000),
          waitingReason: "retry 1 of 3 in 1m 30s",
        }),
      ],
    });
    const needs = new Map([
      ["load", ["extract"]],
      ["extract", []],
    ]);
    const lines = waitingLines(run, needs, T0);
    expect(lines).toEqual([
      { subject: "load", text: "Waiting for the step it needs to finish: extract (running)." },
      { subject: "side", text: "Ready to run, not started yet: no connected agent has connection 'warehouse'." },
      {
        subject: "flaky",
        text: "Attempt 1 failed; the next attempt starts at 2026-12-07 14:01:30 UTC (in 1m 30s) (retry 1 of 3 in 1m 30s).",
      },
    ]);
  });

  it("says nothing once the run ended", () => {
    const run = create(RunSchema, { status: RunStatus.SUCCEEDED, steps: [create(StepRunSchema, { name: "a", status: StepStatus.PENDING })] });
    expect(waitingLines(run, undefined, T0)).toEqual([]);
  });
});
