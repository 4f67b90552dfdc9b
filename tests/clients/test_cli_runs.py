"""The run and agent commands of the CLI, in-process, against a fake RunService and
AgentService with canned data on a real gRPC server."""

from __future__ import annotations

import _thread
import json
import re
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest
from google.protobuf import duration_pb2, timestamp_pb2
from google.protobuf.message import Message

from legato.cli.main import main
from legato.cli.runs import parse_param_value
from legato.v1 import (
    agent_pb2,
    agent_service_pb2,
    agent_service_pb2_grpc,
    run_pb2,
    run_service_pb2,
    run_service_pb2_grpc,
)

# The fake servicers' methods are named by the proto's RPCs.
# ruff: noqa: N802

M = TypeVar("M", bound=Message)
T0 = datetime(2026, 6, 12, 9, 0, 0, tzinfo=UTC)
SYSTEM, STDOUT, STDERR = (
    run_pb2.LOG_STREAM_SYSTEM,
    run_pb2.LOG_STREAM_STDOUT,
    run_pb2.LOG_STREAM_STDERR,
)
LOAD_ERROR = (
    "psycopg.OperationalError: connection to server at 10.0.0.5, port 5432 failed: "
    "Connection refused"
)


def _at(seconds: float) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(T0 + timedelta(seconds=seconds))
    return ts


def _took(seconds: float) -> duration_pb2.Duration:
    duration = duration_pb2.Duration()
    duration.FromNanoseconds(round(seconds * 1e9))
    return duration


def _line(
    seq: int, seconds: float, stream: run_pb2.LogStream.ValueType, text: str, step: str = ""
) -> run_pb2.LogLine:
    return run_pb2.LogLine(
        seq=seq, time=_at(seconds), step=step, attempt=1 if step else 0, stream=stream, text=text
    )


LINES = [
    _line(1, 0, SYSTEM, "Pipeline started (etl v3)"),
    _line(2, 1, STDOUT, "read 127 rows", "extract"),
    _line(3, 2, STDERR, "careful: 3 nulls", "extract"),
    _line(4, 3, STDOUT, "kept 98 rows", "clean"),
    _line(5, 63, SYSTEM, "Pipeline succeeded"),
]


def _failed_run() -> run_pb2.Run:
    """r1: a scheduled run whose load step failed."""
    run = run_pb2.Run(
        id="r1",
        pipeline="etl",
        version=3,
        status=run_pb2.RUN_STATUS_FAILED,
        trigger=run_pb2.RunTrigger(
            kind=run_pb2.TRIGGER_KIND_SCHEDULE, logical_time=_at(0), actor="scheduler"
        ),
        create_time=_at(0),
        start_time=_at(0),
        end_time=_at(63),
        duration=_took(63),
        error="step 'load' failed",
    )
    run.params.update({"day": "2026-06-12", "limit": 7})
    run.steps.add(
        name="extract",
        status=run_pb2.STEP_STATUS_SUCCEEDED,
        attempt=1,
        agent="a1",
        start_time=_at(1),
        duration=_took(2),
        records_out=127,
        peak_memory_bytes=412 << 20,
        memory_limit_bytes=512 << 20,
        cpu_time=_took(1.25),
    )
    run.steps.add(
        name="clean",
        status=run_pb2.STEP_STATUS_SUCCEEDED,
        attempt=1,
        agent="a1",
        start_time=_at(3),
        duration=_took(1.5),
        records_in=127,
        records_out=98,
        peak_memory_bytes=3 << 19,
    )
    run.steps.add(
        name="load",
        status=run_pb2.STEP_STATUS_FAILED,
        attempt=2,
        agent="a2",
        start_time=_at(5),
        duration=_took(58),
        records_in=98,
        error=LOAD_ERROR,
    )
    run.steps.add(
        name="notify",
        status=run_pb2.STEP_STATUS_PENDING,
        waiting_reason="waiting for load",
    )
    return run


def _running_run() -> run_pb2.Run:
    return run_pb2.Run(
        id="r2",
        pipeline="etl",
        version=3,
        status=run_pb2.RUN_STATUS_RUNNING,
        trigger=run_pb2.RunTrigger(kind=run_pb2.TRIGGER_KIND_MANUAL, actor="alice"),
        create_time=_at(120),
        start_time=_at(120),
    )


class FakeRuns(run_service_pb2_grpc.RunServiceServicer):
    """Canned runs; records the requests. ``final_status`` is how watched runs end;
    ``hang`` makes WatchRun stop after the log lines and wait for the client to leave;
    ``logs_written`` is how many of LINES GetRunLogs knows."""

    def __init__(self) -> None:
        self.requests: list[Any] = []
        self.final_status = run_pb2.RUN_STATUS_SUCCEEDED
        self.hang = False
        self.hanging = threading.Event()
        self.left = threading.Event()
        self.logs_written = len(LINES)

    def of(self, kind: type[M]) -> list[M]:
        return [r for r in self.requests if isinstance(r, kind)]

    def TriggerRun(
        self, request: run_service_pb2.TriggerRunRequest, context: grpc.ServicerContext
    ) -> run_service_pb2.TriggerRunResponse:
        self.requests.append(request)
        run = run_pb2.Run(
            id="r9",
            pipeline=request.pipeline,
            version=request.version or 3,
            status=run_pb2.RUN_STATUS_QUEUED,
            trigger=run_pb2.RunTrigger(kind=request.kind),
            params=request.params,
            request_id=request.request_id,
        )
        return run_service_pb2.TriggerRunResponse(run=run, created=True)

    def GetRun(
        self, request: run_service_pb2.GetRunRequest, context: grpc.ServicerContext
    ) -> run_service_pb2.GetRunResponse:
        self.requests.append(request)
        if request.id != "r1":
            context.abort(grpc.StatusCode.NOT_FOUND, f"run {request.id!r} not found")
        return run_service_pb2.GetRunResponse(run=_failed_run())

    def ListRuns(
        self, request: run_service_pb2.ListRunsRequest, context: grpc.ServicerContext
    ) -> run_service_pb2.ListRunsResponse:
        self.requests.append(request)
        runs = [_running_run(), _failed_run()]
        for run in runs:
            del run.steps[:]
        return run_service_pb2.ListRunsResponse(runs=runs[: request.page_size or None])

    def CancelRun(
        self, request: run_service_pb2.CancelRunRequest, context: grpc.ServicerContext
    ) -> run_service_pb2.CancelRunResponse:
        self.requests.append(request)
        if request.id == "r1":
            return run_service_pb2.CancelRunResponse(run=_failed_run())
        run = run_pb2.Run(id=request.id, pipeline="etl", status=run_pb2.RUN_STATUS_CANCELLED)
        return run_service_pb2.CancelRunResponse(run=run)

    def RerunRun(
        self, request: run_service_pb2.RerunRunRequest, context: grpc.ServicerContext
    ) -> run_service_pb2.RerunRunResponse:
        self.requests.append(request)
        run = run_pb2.Run(
            id="r10",
            pipeline="etl",
            version=4 if request.latest_version else 3,
            status=run_pb2.RUN_STATUS_QUEUED,
            trigger=run_pb2.RunTrigger(kind=run_pb2.TRIGGER_KIND_RERUN, rerun_of=request.id),
        )
        return run_service_pb2.RerunRunResponse(run=run)

    def WatchRun(
        self, request: run_service_pb2.WatchRunRequest, context: grpc.ServicerContext
    ) -> Iterator[run_service_pb2.WatchRunResponse]:
        self.requests.append(request)
        run = run_pb2.Run(id=request.id, pipeline="etl", version=3, start_time=_at(0))
        run.status = run_pb2.RUN_STATUS_RUNNING
        yield run_service_pb2.WatchRunResponse(run=run)
        if request.include_logs:
            for line in LINES:
                if line.seq > request.after_seq:
                    yield run_service_pb2.WatchRunResponse(log=line)
        if self.hang:
            self.hanging.set()
            while context.is_active():
                time.sleep(0.02)
            self.left.set()
            return
        run.status = self.final_status
        run.end_time.CopyFrom(_at(63))
        run.duration.CopyFrom(_took(63))
        if self.final_status == run_pb2.RUN_STATUS_FAILED:
            run.error = "step 'load' failed"
        yield run_service_pb2.WatchRunResponse(run=run)

    def GetRunLogs(
        self, request: run_service_pb2.GetRunLogsRequest, context: grpc.ServicerContext
    ) -> run_service_pb2.GetRunLogsResponse:
        self.requests.append(request)
        lines = [
            line
            for line in LINES[: self.logs_written]
            if not request.step or line.step == request.step
        ]
        start = int(request.page_token or 0)
        following = str(start + 3) if start + 3 < len(lines) else ""
        page = lines[start : start + 3]
        return run_service_pb2.GetRunLogsResponse(lines=page, next_page_token=following)

    def GetStepOutput(
        self, request: run_service_pb2.GetStepOutputRequest, context: grpc.ServicerContext
    ) -> run_service_pb2.GetStepOutputResponse:
        self.requests.append(request)
        summary = run_pb2.OutputSummary(
            rows=127,
            columns=[
                run_pb2.Column(name="id", type="int64"),
                run_pb2.Column(name="name", type="string"),
            ],
            artifact_id="art-1",
        )
        summary.values.update({"source": "orders", "count": 127})
        response = run_service_pb2.GetStepOutputResponse(summary=summary)
        for number, name in [(1, "ada"), (2, None), (3, "grace")][: request.limit]:
            response.rows.add().update({"id": number, "name": name})
        return response

    def CreateBackfill(
        self, request: run_service_pb2.CreateBackfillRequest, context: grpc.ServicerContext
    ) -> run_service_pb2.CreateBackfillResponse:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "not faked")

    def CancelBackfill(
        self, request: run_service_pb2.CancelBackfillRequest, context: grpc.ServicerContext
    ) -> run_service_pb2.CancelBackfillResponse:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "not faked")

    def GetBackfill(
        self, request: run_service_pb2.GetBackfillRequest, context: grpc.ServicerContext
    ) -> run_service_pb2.GetBackfillResponse:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "not faked")

    def TestStep(
        self, request: run_service_pb2.TestStepRequest, context: grpc.ServicerContext
    ) -> run_service_pb2.TestStepResponse:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "not faked")

    def ListNotifications(
        self, request: run_service_pb2.ListNotificationsRequest, context: grpc.ServicerContext
    ) -> run_service_pb2.ListNotificationsResponse:
        if request.run_id != "r1":
            return run_service_pb2.ListNotificationsResponse()
        hook = "webhook https://hooks.example.com/legato"
        return run_service_pb2.ListNotificationsResponse(
            notifications=[
                run_service_pb2.NotificationDelivery(
                    run_id="r1",
                    event="failed",
                    target=hook,
                    status=run_service_pb2.NOTIFICATION_STATUS_FAILED,
                    attempts=8,
                    last_error=f"{hook} answered 503: down",
                ),
                run_service_pb2.NotificationDelivery(
                    run_id="r1",
                    event="failed",
                    target="slack webhook 'slack-data'",
                    status=run_service_pb2.NOTIFICATION_STATUS_DELIVERED,
                    attempts=1,
                ),
                run_service_pb2.NotificationDelivery(
                    run_id="r1",
                    event="started",
                    target=hook,
                    status=run_service_pb2.NOTIFICATION_STATUS_SUPPRESSED,
                ),
            ]
        )


class FakeAgents(agent_service_pb2_grpc.AgentServiceServicer):
    def __init__(self) -> None:
        self.requests: list[Any] = []

    def ListAgents(
        self, request: agent_service_pb2.ListAgentsRequest, context: grpc.ServicerContext
    ) -> agent_service_pb2.ListAgentsResponse:
        self.requests.append(request)
        agents = [
            agent_pb2.Agent(
                name="a1",
                labels={"region": "eu", "gpu": "no"},
                slots=4,
                slots_used=1,
                version="0.1.0",
                state=agent_pb2.AGENT_STATE_CONNECTED,
                last_seen_time=_at(0),
                connections=["warehouse", "lake"],
            )
        ]
        if request.show_disconnected:
            agents.append(
                agent_pb2.Agent(name="a2", slots=2, state=agent_pb2.AGENT_STATE_DISCONNECTED)
            )
        return agent_service_pb2.ListAgentsResponse(agents=agents)

    def DrainAgent(
        self, request: agent_service_pb2.DrainAgentRequest, context: grpc.ServicerContext
    ) -> agent_service_pb2.DrainAgentResponse:
        self.requests.append(request)
        agent = agent_pb2.Agent(name=request.name, state=agent_pb2.AGENT_STATE_DRAINING)
        return agent_service_pb2.DrainAgentResponse(agent=agent)

    def Connect(
        self,
        request_iterator: Iterator[agent_service_pb2.ConnectRequest],
        context: grpc.ServicerContext,
    ) -> Iterator[agent_service_pb2.ConnectResponse]:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "not faked")

    def UploadArtifact(
        self,
        request_iterator: Iterator[agent_service_pb2.UploadArtifactRequest],
        context: grpc.ServicerContext,
    ) -> agent_service_pb2.UploadArtifactResponse:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "not faked")

    def DownloadArtifact(
        self, request: agent_service_pb2.DownloadArtifactRequest, context: grpc.ServicerContext
    ) -> Iterator[agent_service_pb2.DownloadArtifactResponse]:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "not faked")


class Plane:
    """The fakes on a server, and the CLI pointed at it."""

    def __init__(self) -> None:
        self.runs = FakeRuns()
        self.agents = FakeAgents()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        run_service_pb2_grpc.add_RunServiceServicer_to_server(self.runs, self.server)
        agent_service_pb2_grpc.add_AgentServiceServicer_to_server(self.agents, self.server)
        self.address = f"127.0.0.1:{self.server.add_insecure_port('127.0.0.1:0')}"
        self.server.start()

    def legato(self, *argv: str) -> int:
        return main([*argv, "--server", self.address])


@pytest.fixture
def plane(monkeypatch: pytest.MonkeyPatch) -> Iterator[Plane]:
    # Times print in local time: make that UTC for exact lines.
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    running = Plane()
    yield running
    running.server.stop(None).wait()
    monkeypatch.undo()
    time.tzset()


def _rows(text: str) -> list[list[str]]:
    """A rendered table as its cells (columns are two or more spaces apart)."""
    return [re.split(r"\s{2,}", line.strip()) for line in text.splitlines() if line.strip()]


# run


def test_run_prints_the_run_it_started(plane: Plane, capsys: pytest.CaptureFixture[str]) -> None:
    assert plane.legato("run", "etl") == 0

    assert capsys.readouterr().out == "run r9 started: etl v3 (trigger manual)\n"
    [request] = plane.runs.of(run_service_pb2.TriggerRunRequest)
    assert request.kind == run_pb2.TRIGGER_KIND_MANUAL
    assert request.request_id
    assert not request.HasField("params")


def test_run_reads_param_values_as_yaml_over_the_params_file(
    plane: Plane, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    params_file = tmp_path / "params.yaml"
    params_file.write_text("limit: 1\nregion: eu\ntables: [orders, customers]\n")

    code = plane.legato(
        "run",
        "etl",
        "--version",
        "2",
        "--params-file",
        str(params_file),
        "-p",
        "limit=7",
        "-p",
        "dry_run=true",
        "-p",
        "day=2026-06-12",
        "-p",
        "label='007'",
    )

    assert code == 0
    assert capsys.readouterr().out == "run r9 started: etl v2 (trigger manual)\n"
    [request] = plane.runs.of(run_service_pb2.TriggerRunRequest)
    fields = request.params.fields
    assert fields["limit"].WhichOneof("kind") == "number_value"
    assert fields["limit"].number_value == 7
    assert fields["dry_run"].WhichOneof("kind") == "bool_value"
    assert fields["dry_run"].bool_value is True
    assert fields["day"].string_value == "2026-06-12"
    assert fields["label"].string_value == "007"
    assert fields["region"].string_value == "eu"
    assert [v.string_value for v in fields["tables"].list_value.values] == ["orders", "customers"]


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ("7", 7),
        ("-3", -3),
        ("2.5", 2.5),
        ("true", True),
        ("false", False),
        ("null", None),
        ("'x'", "x"),
        ("'7'", "7"),
        ('"true"', "true"),
        ("x", "x"),
        ("hello world", "hello world"),
        ("", ""),
        ("2026-06-12", "2026-06-12"),
        ("2026-06-12 09:00:00", "2026-06-12 09:00:00"),
        ("[1, 2]", "[1, 2]"),
        ("a: b", "a: b"),
        ("#tag", "#tag"),
        ("a #b", "a #b"),
        ("'unclosed", "'unclosed"),
        (".inf", ".inf"),
        ("12345678901234567890", "12345678901234567890"),
    ],
)
def test_param_values_read_as_yaml_scalars(raw: str, value: object) -> None:
    parsed = parse_param_value(raw)
    assert parsed == value
    assert type(parsed) is type(value)


def test_a_param_without_equals_is_a_usage_error(
    plane: Plane, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        plane.legato("run", "etl", "-p", "limit")

    assert info.value.code == 2
    assert "expected KEY=VALUE, got 'limit'" in capsys.readouterr().err
    assert plane.runs.requests == []


def test_a_params_file_must_be_a_mapping(
    plane: Plane, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    params_file = tmp_path / "params.json"
    params_file.write_text("[1, 2]")

    assert plane.legato("run", "etl", "--params-file", str(params_file)) == 1

    expected = (
        f"legato run: {params_file}: expected a mapping of parameter names to values, got a list\n"
    )
    assert capsys.readouterr().err == expected
    assert plane.runs.requests == []


def test_run_follow_prints_the_log_and_exits_0_when_the_run_succeeds(
    plane: Plane, capsys: pytest.CaptureFixture[str]
) -> None:
    assert plane.legato("run", "etl", "--follow") == 0

    assert capsys.readouterr().out.splitlines() == [
        "run r9 started: etl v3 (trigger manual)",
        "2026-06-12 09:00:00 UTC - Pipeline started (etl v3)",
        "2026-06-12 09:00:01 UTC - [extract#1] read 127 rows",
        "2026-06-12 09:00:02 UTC - [extract#1 stderr] careful: 3 nulls",
        "2026-06-12 09:00:03 UTC - [clean#1] kept 98 rows",
        "2026-06-12 09:01:03 UTC - Pipeline succeeded",
        "run r9 succeeded in 1m3s",
    ]
    [watch] = plane.runs.of(run_service_pb2.WatchRunRequest)
    assert (watch.id, watch.include_logs, watch.after_seq) == ("r9", True, 0)


@pytest.mark.parametrize(
    "status",
    [
        run_pb2.RUN_STATUS_FAILED,
        run_pb2.RUN_STATUS_TIMED_OUT,
        run_pb2.RUN_STATUS_CANCELLED,
        run_pb2.RUN_STATUS_SKIPPED,
    ],
)
def test_run_follow_exits_1_when_the_run_does_not_succeed(
    plane: Plane, capsys: pytest.CaptureFixture[str], status: run_pb2.RunStatus.ValueType
) -> None:
    plane.runs.final_status = status

    assert plane.legato("run", "etl", "--follow") == 1

    last = capsys.readouterr().out.splitlines()[-1]
    name = run_pb2.RunStatus.Name(status).removeprefix("RUN_STATUS_").lower()
    error = ": step 'load' failed" if status == run_pb2.RUN_STATUS_FAILED else ""
    assert last == f"run r9 {name} in 1m3s{error}"


def test_run_follow_as_json_prints_the_ended_run(
    plane: Plane, capsys: pytest.CaptureFixture[str]
) -> None:
    plane.runs.final_status = run_pb2.RUN_STATUS_FAILED

    assert plane.legato("run", "etl", "--follow", "-o", "json") == 1

    data = json.loads(capsys.readouterr().out)
    assert data["created"] is True
    assert data["run"]["status"] == "RUN_STATUS_FAILED"
    assert data["run"]["end_time"] == "2026-06-12T09:01:03Z"
    [watch] = plane.runs.of(run_service_pb2.WatchRunRequest)
    assert not watch.include_logs


def test_ctrl_c_stops_following_without_cancelling(
    plane: Plane, capsys: pytest.CaptureFixture[str]
) -> None:
    plane.runs.hang = True

    def interrupt() -> None:
        if plane.runs.hanging.wait(10):
            time.sleep(0.1)
            _thread.interrupt_main()

    threading.Thread(target=interrupt, daemon=True).start()
    code = plane.legato("run", "etl", "--follow")

    assert code == 130
    captured = capsys.readouterr()
    assert captured.out.splitlines()[-1] == "2026-06-12 09:01:03 UTC - Pipeline succeeded"
    assert "legato cancel r9" in captured.err
    assert plane.runs.of(run_service_pb2.CancelRunRequest) == []
    assert plane.runs.left.wait(5)  # the watch call was cancelled


# runs


def test_runs_lists_runs_with_trigger_status_and_duration(
    plane: Plane, capsys: pytest.CaptureFixture[str]
) -> None:
    assert plane.legato("runs") == 0

    rows = _rows(capsys.readouterr().out)
    assert rows[0] == ["ID", "PIPELINE", "VERSION", "TRIGGER", "STATUS", "STARTED", "DURATION"]
    assert rows[1][:6] == ["r2", "etl", "3", "manual", "running", "2026-06-12 09:02:00 UTC"]
    assert rows[2] == [
        "r1",
        "etl",
        "3",
        "schedule@2026-06-12 09:00 UTC",
        "failed",
        "2026-06-12 09:00:00 UTC",
        "1m3s",
    ]
    [request] = plane.runs.of(run_service_pb2.ListRunsRequest)
    assert request.page_size == 20


def test_runs_sends_the_filters(plane: Plane, capsys: pytest.CaptureFixture[str]) -> None:
    code = plane.legato(
        "runs",
        "etl",
        "--status",
        "failed",
        "--status",
        "timed_out",
        "--trigger",
        "schedule",
        "--limit",
        "1",
    )

    assert code == 0
    assert len(_rows(capsys.readouterr().out)) == 2
    [request] = plane.runs.of(run_service_pb2.ListRunsRequest)
    assert request.pipeline == "etl"
    assert list(request.statuses) == [run_pb2.RUN_STATUS_FAILED, run_pb2.RUN_STATUS_TIMED_OUT]
    assert list(request.triggers) == [run_pb2.TRIGGER_KIND_SCHEDULE]
    assert request.page_size == 1


def test_runs_refuses_an_unknown_status(plane: Plane, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        plane.legato("runs", "--status", "broken")
    assert "invalid choice: 'broken'" in capsys.readouterr().err


def test_runs_as_json_has_proto_field_names(
    plane: Plane, capsys: pytest.CaptureFixture[str]
) -> None:
    assert plane.legato("runs", "-o", "json") == 0

    data = json.loads(capsys.readouterr().out)
    assert [r["id"] for r in data["runs"]] == ["r2", "r1"]
    assert data["runs"][1]["trigger"]["logical_time"] == "2026-06-12T09:00:00Z"
    assert data["runs"][1]["start_time"] == "2026-06-12T09:00:00Z"


# status


def test_status_prints_the_run_and_its_steps_in_server_order(
    plane: Plane, capsys: pytest.CaptureFixture[str]
) -> None:
    assert plane.legato("status", "r1") == 0

    header, table, notifications = capsys.readouterr().out.split("\n\n")
    assert notifications.splitlines() == [
        "notifications: 1 delivered, 1 suppressed, 1 failed",
        "  ✗ failed to webhook https://hooks.example.com/legato: failed after 8 attempts: "
        "webhook https://hooks.example.com/legato answered 503: down",
        "  (legato notifications r1 lists them all)",
    ]
    assert header.splitlines() == [
        "run:      r1",
        "pipeline: etl v3",
        "status:   failed",
        "trigger:  schedule@2026-06-12 09:00 UTC by scheduler",
        'params:   {"day": "2026-06-12", "limit": 7}',
        "created:  2026-06-12 09:00:00 UTC",
        "started:  2026-06-12 09:00:00 UTC",
        "ended:    2026-06-12 09:01:03 UTC",
        "duration: 1m3s",
        "error:    step 'load' failed",
    ]
    *table_lines, footer = table.splitlines()
    rows = _rows("\n".join(table_lines))
    headers = ["STEP", "STATUS", "ATTEMPT", "AGENT", "STARTED", "DURATION", "RECORDS"]
    assert rows[0] == [*headers, "MEMORY", "CPU", "ERROR/WAITING"]
    assert [r[0] for r in rows[1:]] == ["extract", "clean", "load *", "notify"]
    assert rows[1] == [
        "extract",
        "succeeded",
        "1",
        "a1",
        "2026-06-12 09:00:01 UTC",
        "2s",
        "127",
        "412 MiB of 512 MiB",
        "1.2s",
        "-",
    ]
    assert rows[2][5:9] == ["1.5s", "127 → 98", "1.5 MiB", "-"]
    load_error = rows[3][9]
    assert len(load_error) == 60
    assert load_error == LOAD_ERROR[:59] + "…"
    assert rows[4] == ["notify", "pending", "-", "-", "-", "-", "-", "-", "-", "waiting for load"]
    assert footer == "* the slowest step (the longest of the finished steps): load"


def test_status_as_json_has_proto_field_names(
    plane: Plane, capsys: pytest.CaptureFixture[str]
) -> None:
    assert plane.legato("status", "r1", "-o", "json") == 0

    data = json.loads(capsys.readouterr().out)
    assert data["status"] == "RUN_STATUS_FAILED"
    # int64 fields print as numbers and Struct numbers as written, not 127.0 or "127".
    assert data["steps"][1]["records_in"] == 127
    assert data["params"] == {"day": "2026-06-12", "limit": 7}
    assert data["steps"][3]["waiting_reason"] == "waiting for load"
    assert data["steps"][0]["peak_memory_bytes"] == 412 << 20
    assert data["steps"][0]["memory_limit_bytes"] == 512 << 20
    assert data["steps"][0]["cpu_time"] == "1.250s"


def test_an_rpc_error_is_one_line_on_stderr(
    plane: Plane, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = "01m9zzzzzzzzzzzzzzzzzzzzzz"  # a whole id: sent as it is
    assert plane.legato("status", missing) == 1

    captured = capsys.readouterr()
    assert captured.err == f"legato status: run '{missing}' not found\n"
    assert captured.out == ""


# logs


def test_logs_prints_every_page(plane: Plane, capsys: pytest.CaptureFixture[str]) -> None:
    assert plane.legato("logs", "r1") == 0

    assert capsys.readouterr().out.splitlines() == [
        "2026-06-12 09:00:00 UTC - Pipeline started (etl v3)",
        "2026-06-12 09:00:01 UTC - [extract#1] read 127 rows",
        "2026-06-12 09:00:02 UTC - [extract#1 stderr] careful: 3 nulls",
        "2026-06-12 09:00:03 UTC - [clean#1] kept 98 rows",
        "2026-06-12 09:01:03 UTC - Pipeline succeeded",
    ]
    tokens = [r.page_token for r in plane.runs.of(run_service_pb2.GetRunLogsRequest)]
    assert tokens == ["", "3"]
    assert plane.runs.of(run_service_pb2.WatchRunRequest) == []


def test_logs_of_one_step_attempt(plane: Plane, capsys: pytest.CaptureFixture[str]) -> None:
    assert plane.legato("logs", "r1", "--step", "extract", "--attempt", "1") == 0

    assert capsys.readouterr().out.splitlines() == [
        "2026-06-12 09:00:01 UTC - [extract#1] read 127 rows",
        "2026-06-12 09:00:02 UTC - [extract#1 stderr] careful: 3 nulls",
    ]
    [request] = plane.runs.of(run_service_pb2.GetRunLogsRequest)
    assert (request.run_id, request.step, request.attempt) == ("r1", "extract", 1)


def test_logs_follow_continues_after_the_last_line_read(
    plane: Plane, capsys: pytest.CaptureFixture[str]
) -> None:
    plane.runs.logs_written = 3

    assert plane.legato("logs", "r1", "-f") == 0

    assert [line.split(" - ", 1)[1] for line in capsys.readouterr().out.splitlines()] == [
        "Pipeline started (etl v3)",
        "[extract#1] read 127 rows",
        "[extract#1 stderr] careful: 3 nulls",
        "[clean#1] kept 98 rows",
        "Pipeline succeeded",
    ]
    [watch] = plane.runs.of(run_service_pb2.WatchRunRequest)
    assert (watch.id, watch.include_logs, watch.after_seq) == ("r1", True, 3)


def test_logs_attempt_needs_a_step(plane: Plane, capsys: pytest.CaptureFixture[str]) -> None:
    assert plane.legato("logs", "r1", "--attempt", "2") == 1

    assert capsys.readouterr().err == (
        "legato logs: --attempt needs --step: attempts are numbered per step\n"
    )


# cancel, rerun


def test_cancel(plane: Plane, capsys: pytest.CaptureFixture[str]) -> None:
    assert plane.legato("cancel", "r2", "--reason", "wrong day") == 0

    assert capsys.readouterr().out == "run r2 cancelled\n"
    [request] = plane.runs.of(run_service_pb2.CancelRunRequest)
    assert (request.id, request.reason) == ("r2", "wrong day")
    assert request.request_id


def test_cancel_of_an_ended_run_says_how_it_ended(
    plane: Plane, capsys: pytest.CaptureFixture[str]
) -> None:
    assert plane.legato("cancel", "r1") == 0

    assert capsys.readouterr().out == "run r1 already failed\n"


def test_rerun(plane: Plane, capsys: pytest.CaptureFixture[str]) -> None:
    assert plane.legato("rerun", "r1", "--all", "--latest-version") == 0

    assert capsys.readouterr().out == "run r10 started: rerun of r1 (etl v4)\n"
    [request] = plane.runs.of(run_service_pb2.RerunRunRequest)
    assert (request.id, request.all_steps, request.latest_version) == ("r1", True, True)
    assert request.request_id


def test_rerun_follow_exits_with_the_outcome(
    plane: Plane, capsys: pytest.CaptureFixture[str]
) -> None:
    plane.runs.final_status = run_pb2.RUN_STATUS_FAILED

    assert plane.legato("rerun", "r1", "--follow") == 1

    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "run r10 started: rerun of r1 (etl v3)"
    assert lines[-1] == "run r10 failed in 1m3s: step 'load' failed"
    [request] = plane.runs.of(run_service_pb2.RerunRunRequest)
    assert (request.all_steps, request.latest_version) == (False, False)


# output


def test_output_prints_the_summary_and_the_rows(
    plane: Plane, capsys: pytest.CaptureFixture[str]
) -> None:
    assert plane.legato("output", "r1", "extract", "--limit", "2") == 0

    summary, table = capsys.readouterr().out.split("\n\n")
    assert summary.splitlines() == [
        "rows:     127",
        "columns:  id (int64), name (string)",
        'values:   {"count": 127, "source": "orders"}',
    ]
    assert _rows(table) == [
        ["id", "name"],
        ["1", "ada"],
        ["2", "null"],
        ["(2 of 127 rows; --limit N shows more)"],
    ]
    [request] = plane.runs.of(run_service_pb2.GetStepOutputRequest)
    assert (request.run_id, request.step, request.limit) == ("r1", "extract", 2)


def test_output_as_json(plane: Plane, capsys: pytest.CaptureFixture[str]) -> None:
    assert plane.legato("output", "r1", "extract", "-o", "json") == 0

    data = json.loads(capsys.readouterr().out)
    assert data["summary"]["artifact_id"] == "art-1"
    assert data["rows"][0] == {"id": 1, "name": "ada"}


# agents


def test_agents(plane: Plane, capsys: pytest.CaptureFixture[str]) -> None:
    assert plane.legato("agents") == 0

    rows = _rows(capsys.readouterr().out)
    assert rows == [
        ["NAME", "STATE", "LABELS", "SLOTS", "VERSION", "LAST SEEN", "CONNECTIONS"],
        [
            "a1",
            "connected",
            "gpu=no,region=eu",
            "1/4",
            "0.1.0",
            "2026-06-12 09:00:00 UTC",
            "warehouse,lake",
        ],
    ]
    [request] = plane.agents.requests
    assert not request.show_disconnected


def test_agents_all_lists_disconnected_ones(
    plane: Plane, capsys: pytest.CaptureFixture[str]
) -> None:
    assert plane.legato("agents", "--all") == 0

    rows = _rows(capsys.readouterr().out)
    assert rows[2] == ["a2", "disconnected", "-", "0/2", "-", "-", "-"]
    [request] = plane.agents.requests
    assert request.show_disconnected


def test_agents_as_json_has_proto_field_names(
    plane: Plane, capsys: pytest.CaptureFixture[str]
) -> None:
    assert plane.legato("agents", "-o", "json") == 0

    [agent] = json.loads(capsys.readouterr().out)["agents"]
    assert agent["slots_used"] == 1
    assert agent["last_seen_time"] == "2026-06-12T09:00:00Z"


def test_drain(plane: Plane, capsys: pytest.CaptureFixture[str]) -> None:
    assert plane.legato("drain", "a1") == 0

    assert capsys.readouterr().out == "agent a1 draining\n"
    [request] = plane.agents.requests
    assert request.name == "a1"
    assert request.request_id
