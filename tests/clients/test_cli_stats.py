"""``legato stats`` in-process against a fake PipelineService on a real gRPC server: the
table, the sparkline, the slowest step, -o json, --runs and its bounds, an unknown
pipeline."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from concurrent import futures
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.protobuf import duration_pb2, timestamp_pb2

from legato.cli.main import main
from legato.cli.stats import sparkline
from legato.v1 import pipeline_service_pb2 as pb
from legato.v1 import run_pb2

# ruff: noqa: N802

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
MiB = 1 << 20


def _at(hours: float) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(T0 + timedelta(hours=hours))
    return stamp


def _took(seconds: float) -> duration_pb2.Duration:
    duration = duration_pb2.Duration()
    duration.FromNanoseconds(round(seconds * 1e9))
    return duration


def _stats() -> pb.GetPipelineStatsResponse:
    runs = [
        pb.RunSample(run_id=f"r{i}", version=1, status=status, start_time=_at(i * 24))
        for i, status in [
            (3, run_pb2.RUN_STATUS_SUCCEEDED),
            (2, run_pb2.RUN_STATUS_FAILED),
            (1, run_pb2.RUN_STATUS_SUCCEEDED),
            (0, run_pb2.RUN_STATUS_SUCCEEDED),
        ]
    ]
    ok, failed = run_pb2.STEP_STATUS_SUCCEEDED, run_pb2.STEP_STATUS_FAILED
    extract = pb.StepStats(
        name="extract",
        kind="query",
        count=4,
        duration_p50=_took(1.5),
        duration_p95=_took(2.85),
        peak_memory_bytes_p50=12 * MiB,
        peak_memory_bytes_max=20 * MiB,
        records_out_p50=127,
        cpu_time_p50=_took(0.25),
        samples=[
            pb.StepSample(run_id=f"r{i}", status=ok, duration=_took(seconds))
            for i, seconds in [(0, 1.0), (1, 2.0), (2, 1.0), (3, 3.0)]
        ],
    )
    transform = pb.StepStats(
        name="transform",
        kind="transform",
        count=3,
        failures=1,
        duration_p50=_took(252),
        duration_p95=_took(300),
        peak_memory_bytes_p50=400 * MiB,
        peak_memory_bytes_max=412 * MiB,
        memory_limit_bytes=512 * MiB,
        samples=[
            pb.StepSample(run_id="r0", status=ok, duration=_took(200)),
            pb.StepSample(run_id="r2", status=failed, duration=_took(10)),
            pb.StepSample(run_id="r3", status=ok, duration=_took(300)),
        ],
    )
    return pb.GetPipelineStatsResponse(
        pipeline="etl", runs=runs, steps=[extract, transform], slowest_step="transform"
    )


class FakePipelines:
    """GetPipelineStats alone, served as a generic handler (the CLI calls nothing else)."""

    def __init__(self) -> None:
        self.requests: list[pb.GetPipelineStatsRequest] = []

    def handler(self) -> grpc.GenericRpcHandler:
        method = grpc.unary_unary_rpc_method_handler(
            self.GetPipelineStats,
            request_deserializer=pb.GetPipelineStatsRequest.FromString,
            response_serializer=pb.GetPipelineStatsResponse.SerializeToString,
        )
        return grpc.method_handlers_generic_handler(
            "legato.v1.PipelineService", {"GetPipelineStats": method}
        )

    def GetPipelineStats(
        self, request: pb.GetPipelineStatsRequest, context: grpc.ServicerContext
    ) -> pb.GetPipelineStatsResponse:
        self.requests.append(request)
        if request.pipeline == "nope":
            context.abort(grpc.StatusCode.NOT_FOUND, "pipeline 'nope' does not exist")
        if request.pipeline == "new":
            return pb.GetPipelineStatsResponse(pipeline="new")
        return _stats()


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[FakePipelines, str]]:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    fake = FakePipelines()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((fake.handler(),))
    address = f"127.0.0.1:{server.add_insecure_port('127.0.0.1:0')}"
    server.start()
    yield fake, address
    server.stop(None).wait()
    monkeypatch.undo()
    time.tzset()


def _rows(text: str) -> list[list[str]]:
    return [re.split(r"\s{2,}", line.strip()) for line in text.splitlines() if line.strip()]


def test_the_table_has_each_step_s_figures_trend_and_the_slowest_marked(
    served: tuple[FakePipelines, str], capsys: pytest.CaptureFixture[str]
) -> None:
    fake, address = served
    assert main(["stats", "etl", "--server", address]) == 0
    assert fake.requests[0].runs == 30
    header, table, footer = capsys.readouterr().out.split("\n\n")
    assert header == (
        "pipeline etl: the latest 4 runs, 1 not successful, "
        "2026-12-01 09:00 UTC → 2026-12-04 09:00 UTC"
    )
    rows = _rows(table)
    assert rows[0] == [
        "STEP",
        "KIND",
        "RUNS",
        "FAILED",
        "P50",
        "P95",
        "MEMORY P50",
        "MEMORY MAX",
        "CPU P50",
        "RECORDS P50",
        "DURATION TREND",
    ]
    assert rows[1] == [
        "extract", "query", "4", "0", "1.5s", "2.9s", "12 MiB", "20 MiB", "250ms", "127", "▁▅▁█"
    ]  # fmt: skip
    assert rows[2][:9] == [
        "transform *", "transform", "3", "1", "4m12s", "5m", "400 MiB", "412 MiB of 512 MiB", "-"
    ]  # fmt: skip
    assert rows[2][9:] == ["-", "▁ ✗█"]  # no records; in r1 the step did not run
    assert footer.splitlines() == [
        "* the slowest step (the highest p50 duration): transform",
        "trend: oldest → newest run, ▁…█ shortest to longest, ✗ failed",
    ]


def test_runs_is_sent_and_json_is_the_response(
    served: tuple[FakePipelines, str], capsys: pytest.CaptureFixture[str]
) -> None:
    fake, address = served
    assert main(["stats", "etl", "--runs", "4", "-o", "json", "--server", address]) == 0
    assert fake.requests[0].runs == 4
    data = json.loads(capsys.readouterr().out)
    assert data["slowest_step"] == "transform"
    assert data["steps"][1]["peak_memory_bytes_max"] == 412 * MiB
    assert data["steps"][1]["memory_limit_bytes"] == 512 * MiB


@pytest.mark.parametrize("runs", ["0", "1001", "-3"])
def test_runs_out_of_range_is_refused_with_its_bounds(
    served: tuple[FakePipelines, str], capsys: pytest.CaptureFixture[str], runs: str
) -> None:
    fake, address = served
    assert main(["stats", "etl", "--runs", runs, "--server", address]) != 0
    assert capsys.readouterr().err == (
        f"legato stats: --runs {runs} is out of range; count between 1 and 1000 runs\n"
    )
    assert fake.requests == []


def test_no_finished_runs_and_an_unknown_pipeline(
    served: tuple[FakePipelines, str], capsys: pytest.CaptureFixture[str]
) -> None:
    _fake, address = served
    assert main(["stats", "new", "--server", address]) == 0
    assert capsys.readouterr().out == "pipeline new has no finished runs yet\n"
    assert main(["stats", "nope", "--server", address]) == 1
    assert "pipeline 'nope' does not exist" in capsys.readouterr().err


def test_sparkline_levels_failures_and_gaps() -> None:
    assert sparkline([]) == ""
    assert sparkline([(1.0, False), (8.0, False), None, (3.0, True), (None, False)]) == "▁█ ✗·"
    assert sparkline([(2.0, False), (2.0, False)]) == "▄▄"
    assert sparkline([(0.0, False), (7.0, False), (3.5, False)]) == "▁█▅"
