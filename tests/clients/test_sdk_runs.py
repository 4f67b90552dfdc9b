"""The SDK's run and agent calls against a fake RunService/AgentService on a real gRPC
server: the requests they send, the responses they decode, paging, retries and the
reconnection of watch_run."""

# The fake servicers' methods are named by the proto's RPCs.
# ruff: noqa: N802

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TypeVar

import grpc
import pytest
from google.protobuf import struct_pb2
from google.protobuf.message import Message

import legato.client
from legato import Client, RpcError
from legato.v1 import (
    agent_pb2,
    agent_service_pb2,
    agent_service_pb2_grpc,
    run_pb2,
    run_service_pb2,
    run_service_pb2_grpc,
)

M = TypeVar("M", bound=Message)
REQUEST_ID = re.compile(r"[0-9a-f]{32}")
USER = "alice"
# Pages of every List call: the page token names the next page.
PAGES = {"": ("t1", 0, 2), "t1": ("t2", 2, 4), "t2": ("", 4, 5)}


def _page(token: str) -> tuple[str, range]:
    following, start, end = PAGES[token]
    return following, range(start, end)


def _run(run_id: str, status: run_pb2.RunStatus.ValueType) -> run_pb2.Run:
    return run_pb2.Run(id=run_id, pipeline="etl", version=3, status=status)


def _log(seq: int) -> run_service_pb2.WatchRunResponse:
    line = run_pb2.LogLine(seq=seq, step="extract", attempt=1, text=f"line {seq}")
    return run_service_pb2.WatchRunResponse(log=line)


def _snapshot(status: run_pb2.RunStatus.ValueType) -> run_service_pb2.WatchRunResponse:
    return run_service_pb2.WatchRunResponse(run=_run("r1", status))


class FakeRuns(run_service_pb2_grpc.RunServiceServicer):
    """Records every request (and the caller's user) and answers with canned runs.

    ``unavailable_once`` names methods that fail once with UNAVAILABLE before answering;
    ``watch_scripts`` holds, per WatchRun call, the events to send and whether the call
    then fails with UNAVAILABLE, waits until the client goes away, or ends."""

    def __init__(self) -> None:
        self.requests: list[Message] = []
        self.users: list[str] = []
        self.unavailable_once: set[str] = set()
        self.watch_scripts: list[tuple[list[run_service_pb2.WatchRunResponse], str]] = []
        self.watch_sent = threading.Event()
        self.watch_gone = threading.Event()

    def _record(self, method: str, request: Message, context: grpc.ServicerContext) -> None:
        self.requests.append(request)
        self.users += [str(v) for k, v in context.invocation_metadata() if k == "legato-user"]
        if method in self.unavailable_once:
            self.unavailable_once.discard(method)
            context.abort(grpc.StatusCode.UNAVAILABLE, "restarting")

    def sent(self, kind: type[M]) -> list[M]:
        return [r for r in self.requests if isinstance(r, kind)]

    def TriggerRun(
        self, request: run_service_pb2.TriggerRunRequest, context: grpc.ServicerContext
    ) -> run_service_pb2.TriggerRunResponse:
        self._record("TriggerRun", request, context)
        run = _run("r1", run_pb2.RUN_STATUS_QUEUED)
        run.params.CopyFrom(request.params)
        run.trigger.kind = request.kind
        return run_service_pb2.TriggerRunResponse(run=run, created=True)

    def GetRun(
        self, request: run_service_pb2.GetRunRequest, context: grpc.ServicerContext
    ) -> run_service_pb2.GetRunResponse:
        self._record("GetRun", request, context)
        if request.id != "r1":
            context.abort(grpc.StatusCode.NOT_FOUND, f"run {request.id!r} not found")
        run = _run("r1", run_pb2.RUN_STATUS_RUNNING)
        run.steps.add(name="extract", status=run_pb2.STEP_STATUS_RUNNING, attempt=1)
        return run_service_pb2.GetRunResponse(run=run)

    def ListRuns(
        self, request: run_service_pb2.ListRunsRequest, context: grpc.ServicerContext
    ) -> run_service_pb2.ListRunsResponse:
        self._record("ListRuns", request, context)
        token, numbers = _page(request.page_token)
        runs = [_run(f"r{n}", run_pb2.RUN_STATUS_SUCCEEDED) for n in numbers]
        return run_service_pb2.ListRunsResponse(runs=runs, next_page_token=token)

    def CancelRun(
        self, request: run_service_pb2.CancelRunRequest, context: grpc.ServicerContext
    ) -> run_service_pb2.CancelRunResponse:
        self._record("CancelRun", request, context)
        return run_service_pb2.CancelRunResponse(run=_run(request.id, run_pb2.RUN_STATUS_CANCELLED))

    def RerunRun(
        self, request: run_service_pb2.RerunRunRequest, context: grpc.ServicerContext
    ) -> run_service_pb2.RerunRunResponse:
        self._record("RerunRun", request, context)
        run = _run("r2", run_pb2.RUN_STATUS_QUEUED)
        run.trigger.rerun_of = request.id
        return run_service_pb2.RerunRunResponse(run=run)

    def WatchRun(
        self, request: run_service_pb2.WatchRunRequest, context: grpc.ServicerContext
    ) -> Iterator[run_service_pb2.WatchRunResponse]:
        self._record("WatchRun", request, context)
        if request.id != "r1":
            context.abort(grpc.StatusCode.NOT_FOUND, f"run {request.id!r} not found")
        events, then = self.watch_scripts.pop(0) if self.watch_scripts else ([], "fail")
        for event in events:
            if event.HasField("log") and event.log.seq <= request.after_seq:
                continue
            yield event
        self.watch_sent.set()
        if then == "fail":
            context.abort(grpc.StatusCode.UNAVAILABLE, "restarting")
        if then == "wait":
            while context.is_active():
                self.watch_gone.wait(0.02)
            self.watch_gone.set()

    def GetRunLogs(
        self, request: run_service_pb2.GetRunLogsRequest, context: grpc.ServicerContext
    ) -> run_service_pb2.GetRunLogsResponse:
        self._record("GetRunLogs", request, context)
        token, numbers = _page(request.page_token)
        lines = [run_pb2.LogLine(seq=n + 1, text=f"line {n + 1}") for n in numbers]
        return run_service_pb2.GetRunLogsResponse(lines=lines, next_page_token=token)

    def GetStepOutput(
        self, request: run_service_pb2.GetStepOutputRequest, context: grpc.ServicerContext
    ) -> run_service_pb2.GetStepOutputResponse:
        self._record("GetStepOutput", request, context)
        summary = run_pb2.OutputSummary(rows=127, columns=[run_pb2.Column(name="id", type="int64")])
        summary.values.update({"count": 127})
        rows = [struct_pb2.Struct() for _ in range(2)]
        for number, row in enumerate(rows):
            row.update({"id": number})
        return run_service_pb2.GetStepOutputResponse(summary=summary, rows=rows)

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
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "not faked")


class FakeAgents(agent_service_pb2_grpc.AgentServiceServicer):
    def __init__(self, runs: FakeRuns) -> None:
        self._runs = runs  # one log of requests for both services

    def ListAgents(
        self, request: agent_service_pb2.ListAgentsRequest, context: grpc.ServicerContext
    ) -> agent_service_pb2.ListAgentsResponse:
        self._runs._record("ListAgents", request, context)
        token, numbers = _page(request.page_token)
        agents = [agent_pb2.Agent(name=f"a{n}", slots=4) for n in numbers]
        return agent_service_pb2.ListAgentsResponse(agents=agents, next_page_token=token)

    def DrainAgent(
        self, request: agent_service_pb2.DrainAgentRequest, context: grpc.ServicerContext
    ) -> agent_service_pb2.DrainAgentResponse:
        self._runs._record("DrainAgent", request, context)
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


def serve(runs: FakeRuns, address: str = "127.0.0.1:0") -> tuple[grpc.Server, int]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    run_service_pb2_grpc.add_RunServiceServicer_to_server(runs, server)
    agent_service_pb2_grpc.add_AgentServiceServicer_to_server(FakeAgents(runs), server)
    port = server.add_insecure_port(address)
    server.start()
    return server, port


@dataclass
class Served:
    fake: FakeRuns
    server: grpc.Server
    port: int


@pytest.fixture
def served() -> Iterator[Served]:
    fake = FakeRuns()
    server, port = serve(fake)
    yield Served(fake, server, port)
    server.stop(None).wait()


@pytest.fixture
def fake(served: Served) -> FakeRuns:
    return served.fake


@pytest.fixture
def client(served: Served) -> Iterator[Client]:
    with Client(f"127.0.0.1:{served.port}", user=USER, timeout=5) as connected:
        yield connected


@pytest.fixture
def fast_reconnects(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(legato.client, "WATCH_BACKOFF_INITIAL", 0.01)


# Runs


def test_trigger_run_sends_params_as_struct_with_a_request_id(
    client: Client, fake: FakeRuns
) -> None:
    params = {
        "limit": 7,
        "ratio": 0.5,
        "dry_run": True,
        "day": date(2026, 6, 12),
        "tables": ["a", "b"],
        "options": {"mode": "full", "since": None},
    }

    response = client.trigger_run("etl", params=params, version=2)

    [request] = fake.sent(run_service_pb2.TriggerRunRequest)
    assert (request.pipeline, request.version, request.kind) == ("etl", 2, run_pb2.TRIGGER_KIND_API)
    assert REQUEST_ID.fullmatch(request.request_id)
    fields = request.params.fields
    assert fields["limit"].WhichOneof("kind") == "number_value"
    assert fields["limit"].number_value == 7
    assert fields["ratio"].number_value == 0.5
    assert fields["dry_run"].WhichOneof("kind") == "bool_value"
    assert fields["day"].string_value == "2026-06-12"
    assert [v.string_value for v in fields["tables"].list_value.values] == ["a", "b"]
    options = fields["options"].struct_value.fields
    assert options["mode"].string_value == "full"
    assert options["since"].WhichOneof("kind") == "null_value"
    assert fake.users == [USER]
    assert response.created
    assert response.run.id == "r1"
    assert response.run.params == request.params


def test_trigger_run_keeps_a_given_request_id_and_kind(client: Client, fake: FakeRuns) -> None:
    response = client.trigger_run("etl", request_id="req-1", kind=run_pb2.TRIGGER_KIND_MANUAL)

    [request] = fake.sent(run_service_pb2.TriggerRunRequest)
    assert request.request_id == "req-1"
    assert request.kind == run_pb2.TRIGGER_KIND_MANUAL
    assert not request.HasField("params")
    assert response.run.trigger.kind == run_pb2.TRIGGER_KIND_MANUAL


def test_trigger_run_refuses_params_that_are_not_json(client: Client, fake: FakeRuns) -> None:
    with pytest.raises(TypeError, match=r"params\.options\.when: set is not a JSON value"):
        client.trigger_run("etl", params={"options": {"when": {1, 2}}})
    assert fake.requests == []


def test_each_mutation_gets_its_own_request_id(client: Client, fake: FakeRuns) -> None:
    client.trigger_run("etl")
    client.trigger_run("etl")
    client.cancel_run("r1")
    client.rerun_run("r1")
    client.drain_agent("a1")

    ids = [r.request_id for r in fake.sent(run_service_pb2.TriggerRunRequest)]
    ids += [r.request_id for r in fake.sent(run_service_pb2.CancelRunRequest)]
    ids += [r.request_id for r in fake.sent(run_service_pb2.RerunRunRequest)]
    ids += [r.request_id for r in fake.sent(agent_service_pb2.DrainAgentRequest)]
    assert all(REQUEST_ID.fullmatch(i) for i in ids)
    assert len(set(ids)) == 5


def test_get_run_decodes_the_run_and_its_steps(client: Client, fake: FakeRuns) -> None:
    run = client.get_run("r1")

    assert fake.requests == [run_service_pb2.GetRunRequest(id="r1")]
    assert run.status == run_pb2.RUN_STATUS_RUNNING
    assert [(s.name, s.attempt) for s in run.steps] == [("extract", 1)]


def test_an_unknown_run_raises_rpc_error(client: Client) -> None:
    with pytest.raises(RpcError) as info:
        client.get_run("nope")
    assert info.value.code == grpc.StatusCode.NOT_FOUND
    assert info.value.message == "run 'nope' not found"


def test_list_runs_reads_three_pages_lazily_with_the_same_filters(
    client: Client, fake: FakeRuns
) -> None:
    since = datetime(2026, 6, 12, 9, 0, tzinfo=UTC)
    runs = client.list_runs(
        pipeline="etl",
        statuses=[run_pb2.RUN_STATUS_FAILED, run_pb2.RUN_STATUS_TIMED_OUT],
        triggers=[run_pb2.TRIGGER_KIND_SCHEDULE],
        since=since,
        page_size=2,
    )

    assert next(runs).id == "r0"
    assert len(fake.requests) == 1
    assert [r.id for r in runs] == ["r1", "r2", "r3", "r4"]
    requests = fake.sent(run_service_pb2.ListRunsRequest)
    assert [r.page_token for r in requests] == ["", "t1", "t2"]
    for request in requests:
        assert request.pipeline == "etl"
        assert list(request.statuses) == [run_pb2.RUN_STATUS_FAILED, run_pb2.RUN_STATUS_TIMED_OUT]
        assert list(request.triggers) == [run_pb2.TRIGGER_KIND_SCHEDULE]
        assert request.since.ToDatetime(tzinfo=UTC) == since
        assert request.page_size == 2


def test_list_runs_refuses_a_naive_since(client: Client) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        client.list_runs(since=datetime(2026, 6, 12))  # noqa: DTZ001


def test_cancel_run_sends_the_reason(client: Client, fake: FakeRuns) -> None:
    run = client.cancel_run("r1", reason="wrong params", request_id="req-9")

    assert fake.requests == [
        run_service_pb2.CancelRunRequest(id="r1", reason="wrong params", request_id="req-9")
    ]
    assert run.status == run_pb2.RUN_STATUS_CANCELLED


def test_rerun_run_sends_its_options_and_returns_the_new_run(
    client: Client, fake: FakeRuns
) -> None:
    run = client.rerun_run("r1", all_steps=True, latest_version=True)

    [request] = fake.sent(run_service_pb2.RerunRunRequest)
    assert (request.id, request.all_steps, request.latest_version) == ("r1", True, True)
    assert REQUEST_ID.fullmatch(request.request_id)
    assert (run.id, run.trigger.rerun_of) == ("r2", "r1")


def test_get_run_logs_reads_every_page_with_the_step_filter(client: Client, fake: FakeRuns) -> None:
    lines = list(client.get_run_logs("r1", step="extract", attempt=2, page_size=2))

    assert [line.seq for line in lines] == [1, 2, 3, 4, 5]
    assert fake.requests == [
        run_service_pb2.GetRunLogsRequest(
            run_id="r1", step="extract", attempt=2, page_size=2, page_token=token
        )
        for token in ("", "t1", "t2")
    ]


def test_get_step_output_sends_the_limit_and_decodes_rows(client: Client, fake: FakeRuns) -> None:
    response = client.get_step_output("r1", "extract", limit=5)

    assert fake.requests == [
        run_service_pb2.GetStepOutputRequest(run_id="r1", step="extract", limit=5)
    ]
    assert response.summary.rows == 127
    assert [c.name for c in response.summary.columns] == ["id"]
    assert [row.fields["id"].number_value for row in response.rows] == [0, 1]


def test_unary_calls_are_retried_on_unavailable(client: Client, fake: FakeRuns) -> None:
    fake.unavailable_once = {"GetRun", "CancelRun", "ListAgents"}

    assert client.get_run("r1").id == "r1"
    assert client.cancel_run("r1").status == run_pb2.RUN_STATUS_CANCELLED
    assert [a.name for a in client.list_agents()] == ["a0", "a1", "a2", "a3", "a4"]

    cancels = fake.sent(run_service_pb2.CancelRunRequest)
    assert len(cancels) == 2
    assert cancels[0] == cancels[1]  # the retry carries the same request_id
    assert len(fake.sent(run_service_pb2.GetRunRequest)) == 2


# watch_run


def test_watch_run_streams_until_the_run_ends(client: Client, fake: FakeRuns) -> None:
    fake.watch_scripts = [
        (
            [
                _snapshot(run_pb2.RUN_STATUS_RUNNING),
                _log(8),
                _log(9),
                _snapshot(run_pb2.RUN_STATUS_SUCCEEDED),
            ],
            "end",
        )
    ]

    events = list(client.watch_run("r1", include_logs=False, after_seq=7))

    assert [e.WhichOneof("event") for e in events] == ["run", "log", "log", "run"]
    assert events[-1].run.status == run_pb2.RUN_STATUS_SUCCEEDED
    assert fake.requests == [
        run_service_pb2.WatchRunRequest(id="r1", include_logs=False, after_seq=7)
    ]
    assert fake.users == [USER]


def test_watch_run_resumes_after_the_last_log_line_when_the_stream_breaks(
    client: Client, fake: FakeRuns, fast_reconnects: None
) -> None:
    running = _snapshot(run_pb2.RUN_STATUS_RUNNING)
    script = [running, _log(1), _log(2), _log(3), _snapshot(run_pb2.RUN_STATUS_SUCCEEDED)]
    fake.watch_scripts = [(script[:3], "fail"), (script, "end")]

    events = list(client.watch_run("r1"))

    assert [e.log.seq for e in events if e.HasField("log")] == [1, 2, 3]
    assert events[-1].run.status == run_pb2.RUN_STATUS_SUCCEEDED
    requests = fake.sent(run_service_pb2.WatchRunRequest)
    assert [r.after_seq for r in requests] == [0, 2]


def test_watch_run_reconnects_to_a_restarted_server(
    served: Served, client: Client, fast_reconnects: None
) -> None:
    served.fake.watch_scripts = [
        ([_snapshot(run_pb2.RUN_STATUS_RUNNING), _log(1), _log(2)], "wait")
    ]
    events = client.watch_run("r1")
    assert [next(events).WhichOneof("event") for _ in range(3)] == ["run", "log", "log"]

    served.server.stop(None).wait()
    restarted = FakeRuns()
    restarted.watch_scripts = [
        (
            [
                _snapshot(run_pb2.RUN_STATUS_RUNNING),
                _log(1),
                _log(2),
                _log(3),
                _snapshot(run_pb2.RUN_STATUS_SUCCEEDED),
            ],
            "end",
        )
    ]
    server, port = serve(restarted, f"127.0.0.1:{served.port}")
    try:
        rest = list(events)
    finally:
        server.stop(None).wait()

    assert port == served.port
    assert [e.WhichOneof("event") for e in rest] == ["run", "log", "run"]
    assert rest[1].log.seq == 3
    assert restarted.requests == [
        run_service_pb2.WatchRunRequest(id="r1", include_logs=True, after_seq=2)
    ]


def test_watch_run_gives_up_after_its_reconnections(
    client: Client, fake: FakeRuns, fast_reconnects: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(legato.client, "WATCH_RECONNECTS", 2)

    with pytest.raises(RpcError) as info:
        list(client.watch_run("r1"))

    assert info.value.code == grpc.StatusCode.UNAVAILABLE
    # Three calls: the first and two reconnections; the channel itself retries none.
    assert len(fake.sent(run_service_pb2.WatchRunRequest)) == 3


def test_watch_run_raises_other_errors_at_once(client: Client, fake: FakeRuns) -> None:
    with pytest.raises(RpcError) as info:
        list(client.watch_run("nope"))

    assert info.value.code == grpc.StatusCode.NOT_FOUND
    assert len(fake.requests) == 1


def test_closing_the_watch_cancels_the_call(client: Client, fake: FakeRuns) -> None:
    fake.watch_scripts = [([_snapshot(run_pb2.RUN_STATUS_RUNNING)], "wait")]
    events = client.watch_run("r1")
    next(events)
    assert fake.watch_sent.wait(5)

    events.close()

    assert fake.watch_gone.wait(5)


# Agents


def test_list_agents_reads_every_page(client: Client, fake: FakeRuns) -> None:
    agents = list(client.list_agents(show_disconnected=True, page_size=2))

    assert [a.name for a in agents] == ["a0", "a1", "a2", "a3", "a4"]
    assert fake.requests == [
        agent_service_pb2.ListAgentsRequest(page_size=2, page_token=token, show_disconnected=True)
        for token in ("", "t1", "t2")
    ]


def test_drain_agent(client: Client, fake: FakeRuns) -> None:
    agent = client.drain_agent("a1")

    [request] = fake.sent(agent_service_pb2.DrainAgentRequest)
    assert request.name == "a1"
    assert REQUEST_ID.fullmatch(request.request_id)
    assert agent.state == agent_pb2.AGENT_STATE_DRAINING
