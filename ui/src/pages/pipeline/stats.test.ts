import { create } from "@bufbuild/protobuf";
import { DurationSchema } from "@bufbuild/protobuf/wkt";
import { StepSampleSchema, StepStatsSchema } from "@legato/client/gen/legato/v1/pipeline_service_pb";
import { StepStatus } from "@legato/client/gen/legato/v1/run_pb";
import { describe, expect, it } from "vitest";
import { limitShare, polyline, trendPoints } from "./stats";

function sample(runId: string, seconds: number | undefined, status = StepStatus.SUCCEEDED) {
  return create(StepSampleSchema, {
    runId,
    status,
    duration: seconds === undefined ? undefined : create(DurationSchema, { seconds: BigInt(seconds) }),
  });
}

describe("trendPoints", () => {
  it("puts the oldest on the left and the longest at the top", () => {
    const points = trendPoints([sample("a", 1), sample("b", 3, StepStatus.FAILED), sample("c", 2)], 104, 24);
    expect(points.map((p) => p.x)).toEqual([2, 52, 102]);
    expect(points.map((p) => p.y)).toEqual([22, 2, 12]);
    expect(points.map((p) => p.failed)).toEqual([false, true, false]);
    expect(polyline(points)).toBe("2.0,22.0 52.0,2.0 102.0,12.0");
  });

  it("skips samples without a duration and draws equal ones flat", () => {
    const points = trendPoints([sample("a", 5), sample("b", undefined), sample("c", 5)], 100, 20);
    expect(points.map((p) => p.runId)).toEqual(["a", "c"]);
    expect(points.map((p) => p.y)).toEqual([10, 10]);
    expect(trendPoints([], 100, 20)).toEqual([]);
  });
});

describe("limitShare", () => {
  it("is the largest peak over the limit, undefined without a limit", () => {
    const near = create(StepStatsSchema, { peakMemoryBytesMax: 410n << 20n, memoryLimitBytes: 512n << 20n });
    expect(limitShare(near)).toBeCloseTo(0.8, 2);
    expect(limitShare(create(StepStatsSchema, { peakMemoryBytesMax: 1n }))).toBeUndefined();
    expect(limitShare(create(StepStatsSchema, { memoryLimitBytes: 1n }))).toBeUndefined();
  });
});
