import { describe, expect, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { TimestampSchema, DurationSchema } from "@bufbuild/protobuf/wkt";
import { RunStatus, StepStatus, TriggerKind } from "@legato/client/gen/legato/v1/run_pb";
import {
  durationMs,
  formatDuration,
  formatLocalTime,
  formatRelative,
  formatTime,
  runStatusFromName,
  runStatusName,
  stepStatusName,
  triggerFromName,
  triggerName,
  tsMs,
} from "./format";

const ts = (seconds: number, nanos = 0) => create(TimestampSchema, { seconds: BigInt(seconds), nanos });

describe("tsMs", () => {
  it("converts seconds and nanos to milliseconds", () => {
    expect(tsMs(ts(1, 500_000_000))).toBe(1500);
    expect(tsMs(undefined)).toBeUndefined();
  });
  it("reads durations", () => {
    expect(durationMs(create(DurationSchema, { seconds: 2n, nanos: 250_000_000 }))).toBe(2250);
    expect(durationMs(undefined)).toBeUndefined();
  });
});

describe("formatTime", () => {
  // 2026-12-07T14:03:01Z
  const t = ts(Date.UTC(2026, 11, 7, 14, 3, 1) / 1000);
  it("labels UTC", () => {
    expect(formatTime(t)).toBe("2026-12-07 14:03:01 UTC");
  });
  it("formats in a zone and names it", () => {
    expect(formatTime(t, "America/New_York")).toBe("2026-12-07 09:03:01 America/New_York");
    expect(formatTime(t, "Asia/Kolkata")).toBe("2026-12-07 19:33:01 Asia/Kolkata");
  });
  it("uses a 24-hour clock at midnight", () => {
    expect(formatTime(ts(Date.UTC(2026, 0, 1, 0, 0, 0) / 1000))).toBe("2026-01-01 00:00:00 UTC");
  });
  it("shows a dash when absent", () => {
    expect(formatTime(undefined)).toBe("—");
  });
  it("falls back to UTC for an unknown zone", () => {
    expect(formatTime(t, "Not/AZone")).toBe("2026-12-07 14:03:01 UTC");
  });
});

describe("formatDuration", () => {
  it.each([
    [850, "850 ms"],
    [0, "0 ms"],
    [12_345, "12.3 s"],
    [59_999, "59.9 s"],
    [245_000, "4m 05s"],
    [3_720_000, "1h 02m"],
    [90_061_000, "25h 01m"],
  ])("%d ms → %s", (ms, text) => {
    expect(formatDuration(ms)).toBe(text);
  });
  it("shows a dash when absent", () => {
    expect(formatDuration(undefined)).toBe("—");
  });
});

describe("formatRelative", () => {
  const now = 1_000_000_000_000;
  it("reads past and future", () => {
    expect(formatRelative(now - 10_000, now)).toBe("just now");
    expect(formatRelative(now - 5 * 60_000, now)).toBe("5 min ago");
    expect(formatRelative(now + 3 * 3_600_000, now)).toBe("in 3 h");
    expect(formatRelative(now - 2 * 86_400_000, now)).toBe("2 d ago");
  });
});

describe("status names", () => {
  it("names run statuses in lower case", () => {
    expect(runStatusName(RunStatus.QUEUED)).toBe("queued");
    expect(runStatusName(RunStatus.TIMED_OUT)).toBe("timed_out");
    expect(runStatusName(RunStatus.SKIPPED)).toBe("skipped");
  });
  it("names step statuses in lower case", () => {
    expect(stepStatusName(StepStatus.UPSTREAM_FAILED)).toBe("upstream_failed");
    expect(stepStatusName(StepStatus.LEASED)).toBe("leased");
    expect(stepStatusName(StepStatus.READY)).toBe("ready");
  });
  it("names triggers", () => {
    expect(triggerName(TriggerKind.SCHEDULE)).toBe("schedule");
    expect(triggerName(TriggerKind.MANUAL)).toBe("manual");
  });
  it("reads names back", () => {
    expect(runStatusFromName("failed")).toBe(RunStatus.FAILED);
    expect(runStatusFromName("nope")).toBeUndefined();
    expect(triggerFromName("backfill")).toBe(TriggerKind.BACKFILL);
  });
});

describe("formatLocalTime", () => {
  it("reads ISO 8601 with an offset", () => {
    expect(formatLocalTime("2026-12-08T02:00:00-05:00")).toBe("2026-12-08 02:00:00 (UTC−05:00)");
    expect(formatLocalTime("2026-03-29T03:00:00+02:00")).toBe("2026-03-29 03:00:00 (UTC+02:00)");
    expect(formatLocalTime("2026-01-01T00:00:00Z")).toBe("2026-01-01 00:00:00 (UTC)");
    expect(formatLocalTime("whatever")).toBe("whatever");
  });
});
