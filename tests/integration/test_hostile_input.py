"""Hostile input does not hurt other users: oversized, malformed and out-of-range requests
are INVALID_ARGUMENT naming the field and the limit, write nothing and echo little; list
responses stay bounded by bytes; artifacts are read only with the right to; and clients
that open streams and never read cost the server a bounded amount of memory.

Everything goes over real gRPC to a real control plane (on SQLite and PostgreSQL), with
raw channels where the SDK would refuse to send the bad input."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import struct_pb2
from test_leases import HandAgent

from legato.errors import RpcError, from_grpc_error
from legato.spec import load_spec_text
from legato.testing import LocalControlPlane
from legato.v1 import (
    access_pb2,
    access_service_pb2,
    access_service_pb2_grpc,
    agent_pb2,
    agent_service_pb2,
    agent_service_pb2_grpc,
    pipeline_service_pb2,
    pipeline_service_pb2_grpc,
    run_pb2,
    run_service_pb2,
    run_service_pb2_grpc,
    spec_pb2,
)

ag = agent_service_pb2
rs = run_service_pb2
ps = pipeline_service_pb2

KIB = 1024
MIB = 1024 * KIB
SMALL = 4 * KIB
"""What an error may weigh on the wire (details plus trailing metadata)."""
RESPONSE_LIMIT = 3 * MIB
"""The documented bound of a list response (docs/api.md#limits)."""

ONE_STEP = """
name: {name}
description: a pipeline of the hostile-input tests
params:
  blob: {{type: json}}
  note: {{type: string}}
steps:
  - name: only
    transform: {{code: "result = 1"}}
"""
TWO_STEPS = """
name: art
steps:
  - name: produce
    transform: {code: "result = 1"}
  - name: consume
    needs: [produce]
    transform: {code: "result = 1"}
"""


def spec(name: str = "one") -> spec_pb2.PipelineSpec:
    return load_spec_text(textwrap.dedent(ONE_STEP.format(name=name))).spec


@contextmanager
def raw_channel(plane: LocalControlPlane, *, large: bool = True) -> Iterator[grpc.Channel]:
    """A plain channel that sends and takes messages up to 100 MB (the SDK's limits
    would stop the hostile requests before they reach the server); not ``large``: with
    gRPC's default limits (it takes at most 4 MiB), as any client in any language."""
    options = [
        ("grpc.max_send_message_length", 100 * MIB),
        ("grpc.max_receive_message_length", 100 * MIB),
    ]
    channel = grpc.insecure_channel(plane.address, options=options if large else [])
    try:
        yield channel
    finally:
        channel.close()


def bearer(secret: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {secret}"),)


def refused(call: Any, request: Any, metadata: Any, *, stream: bool = False) -> RpcError:
    """The error ``call`` answers ``request`` with; asserts it is small on the wire."""
    with pytest.raises(grpc.RpcError) as caught:
        answer = call(request, metadata=metadata, timeout=60)
        if stream:
            list(answer)
    error: Any = caught.value
    assert len(error.details() or "") < SMALL, error.details()[:300]
    trailers = sum(len(k) + len(v) for k, v in error.trailing_metadata() or ())
    assert trailers < SMALL, trailers
    return from_grpc_error(error, "test")


def params(**values: Any) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(values)
    return struct


# -- sizes ------------------------------------------------------------------------------


@pytest.mark.timeout(120)
@pytest.mark.parametrize("size", [10 * MIB, 300 * KIB])
def test_a_huge_param_is_refused_naming_params_and_writes_nothing(
    plane: LocalControlPlane, size: int
) -> None:
    client = plane.client()
    client.apply_pipeline(spec())
    with raw_channel(plane) as channel:
        runs = run_service_pb2_grpc.RunServiceStub(channel)
        request = rs.TriggerRunRequest(
            pipeline="one", params=params(blob=["x" * (60 * KIB)] * (size // (60 * KIB) + 1))
        )
        error = refused(runs.TriggerRun, request, bearer(plane.token()))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.message.startswith("params: "), error.message
    assert str(256 * KIB) in error.message
    assert [v.field for v in error.field_violations] == ["params"]
    assert error.metadata["field"] == "params"
    # Nothing was written, and listing still works for everyone.
    assert list(client.list_runs(pipeline="one")) == []
    assert list(plane.client(role="viewer").list_runs()) == []


@pytest.mark.timeout(180)
def test_a_huge_description_or_spec_is_refused_and_commits_nothing(
    plane: LocalControlPlane,
) -> None:
    huge = spec("huge")
    huge.description = "d" * (63 * MIB)  # reaches the servicer: under --max-message-mb 64
    wide = spec("wide")
    wide.steps[0].transform.code = "x = 1\n" * (40 * KIB)  # 240 KiB, within its own limit
    for index in range(7):
        step = wide.steps.add()
        step.CopyFrom(wide.steps[0])
        step.name = f"copy{index}"
    assert 2 * MIB > ps.ApplyPipelineRequest(spec=wide).ByteSize() > 1900 * KIB
    with raw_channel(plane) as channel:
        pipelines = pipeline_service_pb2_grpc.PipelineServiceStub(channel)
        metadata = bearer(plane.token())
        error = refused(pipelines.ApplyPipeline, ps.ApplyPipelineRequest(spec=huge), metadata)
        assert error.code == grpc.StatusCode.INVALID_ARGUMENT
        assert error.reason == "REQUEST_TOO_LARGE"
        assert error.message.startswith("spec.description: 66060288 characters"), error.message
        assert str(16 * KIB) in error.message
        error = refused(pipelines.ApplyPipeline, ps.ApplyPipelineRequest(spec=wide), metadata)
        assert error.code == grpc.StatusCode.INVALID_ARGUMENT
        assert error.message.startswith("spec: "), error.message
        assert str(MIB) in error.message
        for name in ("huge", "wide"):
            gone = refused(pipelines.GetPipeline, ps.GetPipelineRequest(name=name), metadata)
            assert gone.code == grpc.StatusCode.NOT_FOUND
    assert [p.name for p in plane.client().list_pipelines()] == []


# -- list responses bounded by bytes ----------------------------------------------------


def _big_params(index: int) -> dict[str, Any]:
    """About 240 KiB of params: near the 256 KiB limit of a run's params."""
    return {"note": f"run {index}", "blob": [str(index % 10) * (60 * KIB)] * 4}


@pytest.mark.timeout(180)
def test_list_runs_is_bounded_by_bytes_and_its_pages_reach_every_run(
    plane: LocalControlPlane,
) -> None:
    client = plane.client()
    client.apply_pipeline(spec())
    created = [
        client.trigger_run("one", params=_big_params(i)).run.id for i in range(20)
    ]  # 20 x 240 KiB: one page of 1000 would be 4.8 MB
    with raw_channel(plane, large=False) as channel:
        runs = run_service_pb2_grpc.RunServiceStub(channel)
        seen: list[str] = []
        token = ""
        pages = 0
        while True:
            response = runs.ListRuns(
                rs.ListRunsRequest(page_size=1000, page_token=token),
                metadata=bearer(plane.token("viewer")),
            )
            assert response.ByteSize() <= RESPONSE_LIMIT + KIB
            assert response.runs, "every page carries at least one run"
            seen += [run.id for run in response.runs]
            pages += 1
            token = response.next_page_token
            if not token:
                break
    assert pages >= 2
    assert seen == list(reversed(created))  # newest first, each once
    assert [run.id for run in client.list_runs(page_size=1000)] == seen
    assert [run.params["note"] for run in client.list_runs()][:2] == ["run 19", "run 18"]
    listed = _cli(plane, "runs", "--limit", "0")
    assert listed.returncode == 0, listed.stderr
    assert {run_id for run_id in created if run_id in listed.stdout} == set(created)


@pytest.mark.timeout(180)
def test_list_pipelines_is_bounded_by_bytes(plane: LocalControlPlane) -> None:
    client = plane.client()
    names = [f"big-{index}" for index in range(7)]
    for name in names:
        large = spec(name)
        large.steps[0].transform.code = "x = 1\n" * (40 * KIB)  # 240 KiB
        for index in range(2):
            step = large.steps.add()
            step.CopyFrom(large.steps[0])
            step.name = f"copy{index}"
        client.apply_pipeline(large)  # about 720 KiB each: 7 of them are 5 MB
    with raw_channel(plane, large=False) as channel:
        pipelines = pipeline_service_pb2_grpc.PipelineServiceStub(channel)
        first = pipelines.ListPipelines(
            ps.ListPipelinesRequest(page_size=1000), metadata=bearer(plane.token("viewer"))
        )
    assert first.ByteSize() <= RESPONSE_LIMIT + KIB
    assert 0 < len(first.pipelines) < len(names) and first.next_page_token
    assert [p.name for p in client.list_pipelines(page_size=1000)] == names
    listed = _cli(plane, "pipelines")
    assert listed.returncode == 0, listed.stderr
    assert all(name in listed.stdout for name in names)


async def test_run_logs_are_bounded_by_bytes(plane: LocalControlPlane) -> None:
    client = plane.client()
    client.apply_pipeline(spec())
    run_id = (await asyncio.to_thread(client.trigger_run, "one")).run.id
    agent, task = await _working_agent(plane, "chatty")
    # 300 lines of 16 KiB (the longest a line is kept): one page of 1000 would be 4.8 MB.
    texts = [f"{index:03d} " + "y" * (16 * KIB - 4) for index in range(300)]
    for start in range(0, len(texts), 10):
        lines = [agent_pb2.TaskLogLine(text=text) for text in texts[start : start + 10]]
        seq = await agent.send(logs=ag.TaskLogs(lease_id=task.lease_id, lines=lines))
    await _acked(agent, seq)
    with raw_channel(plane, large=False) as channel:
        runs = run_service_pb2_grpc.RunServiceStub(channel)
        first = await asyncio.to_thread(
            runs.GetRunLogs,
            rs.GetRunLogsRequest(run_id=run_id, step="only", page_size=1000),
            metadata=bearer(plane.token("viewer")),
        )
    assert first.ByteSize() <= RESPONSE_LIMIT + KIB
    assert 0 < len(first.lines) < len(texts) and first.next_page_token
    got = await asyncio.to_thread(
        lambda: [line.text for line in client.get_run_logs(run_id, step="only", page_size=1000)]
    )
    assert got == texts
    await agent.close()


# -- enums --------------------------------------------------------------------------------


def test_unknown_enum_values_are_invalid_argument_naming_the_field(
    plane: LocalControlPlane,
) -> None:
    plane.client().apply_pipeline(spec())
    with raw_channel(plane) as channel:
        runs = run_service_pb2_grpc.RunServiceStub(channel)
        metadata = bearer(plane.token())
        kind: Any = 99
        error = refused(runs.TriggerRun, rs.TriggerRunRequest(pipeline="one", kind=kind), metadata)
        assert error.code == grpc.StatusCode.INVALID_ARGUMENT
        assert error.message.startswith("kind: 99 is not a value of TriggerKind")
        statuses: Any = [42]
        error = refused(runs.ListRuns, rs.ListRunsRequest(statuses=statuses), metadata)
        assert error.code == grpc.StatusCode.INVALID_ARGUMENT
        assert [v.field for v in error.field_violations] == ["statuses[0]"]
        assert "RUN_STATUS_SUCCEEDED" in error.message
    assert list(plane.client().list_runs()) == []


async def test_an_unknown_failure_kind_is_refused_and_changes_nothing(
    plane: LocalControlPlane,
) -> None:
    client = plane.client()
    client.apply_pipeline(spec())
    run_id = (await asyncio.to_thread(client.trigger_run, "one")).run.id
    agent, task = await _working_agent(plane, "confused")
    kind: Any = 55
    seq = await agent.send(
        result=ag.TaskResult(
            lease_id=task.lease_id, outcome=agent_pb2.TASK_OUTCOME_FAILED, failure_kind=kind
        )
    )
    ack = await _acked(agent, seq)
    rejection = next(r for r in ack.rejections if r.seq == seq)
    assert rejection.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert "failure_kind 55" in rejection.message
    run = await asyncio.to_thread(client.get_run, run_id)
    assert run.status == run_pb2.RUN_STATUS_RUNNING
    assert [a.status for a in run.steps[0].attempts] == [run_pb2.STEP_STATUS_RUNNING]
    await agent.close()


# -- NUL characters ---------------------------------------------------------------------


def test_nul_characters_are_invalid_argument_on_every_store(plane: LocalControlPlane) -> None:
    plane.client().apply_pipeline(spec())
    named = spec("a-b")
    named.name = "a\x00b"
    described = spec("described")
    described.description = "first line\x00second"
    with raw_channel(plane) as channel:
        pipelines = pipeline_service_pb2_grpc.PipelineServiceStub(channel)
        runs = run_service_pb2_grpc.RunServiceStub(channel)
        metadata = bearer(plane.token())
        cases = [
            (pipelines.ApplyPipeline, ps.ApplyPipelineRequest(spec=named), "spec.name"),
            (pipelines.ApplyPipeline, ps.ApplyPipelineRequest(spec=described), "spec.description"),
            (pipelines.GetPipeline, ps.GetPipelineRequest(name="a\x00b"), "name"),
            (runs.GetRun, rs.GetRunRequest(id="a\x00b"), "id"),
            (
                runs.TriggerRun,
                rs.TriggerRunRequest(pipeline="one", params=params(note="a\x00b")),
                "params.fields['note'].string_value",
            ),
        ]
        for call, request, field in cases:
            error = refused(call, request, metadata)
            assert error.code == grpc.StatusCode.INVALID_ARGUMENT, (field, error)
            assert [v.field for v in error.field_violations] == [field]
            assert "NUL" in error.message
    assert [p.name for p in plane.client().list_pipelines()] == ["one"]
    assert list(plane.client().list_runs()) == []
    # The refusals are in the activity log, NUL and all (PostgreSQL refuses to store one).
    applies = list(plane.client().list_audit_events(action="ApplyPipeline"))
    refusals = [e for e in applies if e.outcome != access_pb2.AUDIT_OUTCOME_SUCCEEDED]
    assert [(e.outcome, e.code) for e in refusals] == [(access_pb2.AUDIT_OUTCOME_FAILED, 3)] * 2
    assert "a\ufffdb" in {e.pipeline for e in refusals}
    # Over HTTP too: a webhook for a pipeline whose name holds NUL does not exist.
    hook = urllib.request.Request(f"http://{plane.http_address}/hooks/a%00b", data=b"{}")
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(hook, timeout=10)
    assert caught.value.code == 404
    assert json.loads(caught.value.read())["reason"] == "WEBHOOK_NOT_FOUND"


async def test_an_agents_log_lines_with_nul_are_stored_with_it_replaced(
    plane: LocalControlPlane,
) -> None:
    client = plane.client()
    client.apply_pipeline(spec())
    run_id = (await asyncio.to_thread(client.trigger_run, "one")).run.id
    agent, task = await _working_agent(plane, "binary-output")
    lines = [agent_pb2.TaskLogLine(text="before\x00after"), agent_pb2.TaskLogLine(text="plain")]
    seq = await agent.send(logs=ag.TaskLogs(lease_id=task.lease_id, lines=lines))
    ack = await _acked(agent, seq)
    assert not [r for r in ack.rejections if r.seq == seq]
    got = await asyncio.to_thread(
        lambda: [line.text for line in client.get_run_logs(run_id, step="only")]
    )
    assert got == ["before\ufffdafter", "plain"]
    await agent.close()


# -- undecodable messages ---------------------------------------------------------------


def test_undecodable_messages_are_invalid_argument(plane: LocalControlPlane) -> None:
    garbage = b"\xff\xff\xff\xff\x0f"
    agent_token = plane.agent_token("garbler")

    def same(data: bytes) -> bytes:
        return data

    with raw_channel(plane) as channel:
        for method, kind, secret in [
            ("/legato.v1.RunService/GetRun", "unary_unary", plane.token()),
            ("/legato.v1.RunService/WatchRun", "unary_stream", plane.token()),
            ("/legato.v1.AgentService/UploadArtifact", "stream_unary", agent_token),
            ("/legato.v1.AgentService/Connect", "stream_stream", agent_token),
        ]:
            call = getattr(channel, kind)(
                method, request_serializer=same, response_deserializer=same
            )
            request: Any = iter([garbage]) if kind.startswith("stream") else garbage
            error = refused(call, request, bearer(secret), stream=kind.endswith("stream"))
            assert error.code == grpc.StatusCode.INVALID_ARGUMENT, (method, error)
            assert error.reason == "UNDECODABLE_REQUEST", (method, error)


# -- error echo -------------------------------------------------------------------------


def test_errors_quote_a_short_prefix_of_a_huge_value(plane: LocalControlPlane) -> None:
    plane.client().apply_pipeline(spec())
    with raw_channel(plane) as channel:
        runs = run_service_pb2_grpc.RunServiceStub(channel)
        pipelines = pipeline_service_pb2_grpc.PipelineServiceStub(channel)
        metadata = bearer(plane.token())
        five_mb = "v" * (5 * MIB)
        cases: list[tuple[Any, Any, grpc.StatusCode]] = [
            (
                runs.TriggerRun,
                rs.TriggerRunRequest(pipeline="one", params=params(note=five_mb)),
                grpc.StatusCode.INVALID_ARGUMENT,
            ),
            (runs.GetRun, rs.GetRunRequest(id=five_mb), grpc.StatusCode.INVALID_ARGUMENT),
            (  # under the request limit, over the field's
                pipelines.GetPipeline,
                ps.GetPipelineRequest(name="n" * (1900 * KIB)),
                grpc.StatusCode.INVALID_ARGUMENT,
            ),
            (  # within every limit: the servicer's own error quotes it
                runs.GetRun,
                rs.GetRunRequest(id="r" * 4000),
                grpc.StatusCode.NOT_FOUND,
            ),
        ]
        for call, request, code in cases:
            error = refused(call, request, metadata)  # asserts it is small
            assert error.code == code, error
            assert len(error.message) <= 1024
            assert all(len(v.description) <= 512 for v in error.field_violations)
            assert all(len(value) <= 200 for value in error.metadata.values())


# -- artifacts --------------------------------------------------------------------------


async def test_download_artifact_needs_a_lease_whose_run_has_the_artifact(
    plane: LocalControlPlane, tmp_path: Path
) -> None:
    client = plane.client()
    client.apply_pipeline(load_spec_text(textwrap.dedent(TWO_STEPS)).spec)
    client.apply_pipeline(spec("other"))
    await asyncio.to_thread(client.trigger_run, "art")
    owner, produce = await _working_agent(plane, "owner")
    data = os.urandom(300 * KIB)
    artifact = await _upload(owner, produce.lease_id, data)
    await owner.send(
        result=ag.TaskResult(
            lease_id=produce.lease_id,
            outcome=agent_pb2.TASK_OUTCOME_SUCCEEDED,
            output=run_pb2.OutputSummary(artifact_id=artifact.id),
        )
    )
    await owner.send(credit=ag.CreditGrant(credits=1))
    consume = await owner.next("assignment")
    assert consume.step_name == "consume"
    # The downstream step's lease reads it.
    assert await _download(owner, artifact.id, consume.lease_id) == data

    await asyncio.to_thread(client.trigger_run, "other")
    stranger, elsewhere = await _working_agent(plane, "stranger")
    for lease_id, reason in [
        ("", "LEASE_NOT_YOURS"),
        (consume.lease_id, "LEASE_NOT_YOURS"),  # another agent's lease
        (elsewhere.lease_id, "ARTIFACT_NOT_AN_INPUT"),  # its own, of a run without it
    ]:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await _download(stranger, artifact.id, lease_id)
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED, lease_id
        assert from_grpc_error(caught.value, "test").reason == reason
    # A person may read any output (as a viewer already reads the run).
    destination = tmp_path / "table"
    info = await asyncio.to_thread(
        plane.client(role="viewer").download_artifact, artifact.id, destination
    )
    assert destination.read_bytes() == data and info.sha256 == hashlib.sha256(data).hexdigest()
    await owner.close()
    await stranger.close()


# -- streams ------------------------------------------------------------------------------


async def test_the_stream_cap_is_per_caller_and_frees_its_slots(db_url: str) -> None:
    with LocalControlPlane(db=db_url, max_streams_per_caller=2) as plane:
        client = plane.client()
        client.apply_pipeline(spec())
        run_id = (await asyncio.to_thread(client.trigger_run, "one")).run.id  # stays queued
        channel = grpc.aio.insecure_channel(plane.address)
        runs = run_service_pb2_grpc.RunServiceStub(channel)

        async def watch(role: str) -> Any:
            call = runs.WatchRun(rs.WatchRunRequest(id=run_id), metadata=bearer(plane.token(role)))
            await call.read()  # the run: the stream is open
            return call

        held = [await watch("viewer"), await watch("viewer")]
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await watch("viewer")
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert from_grpc_error(caught.value, "test").reason == "TOO_MANY_STREAMS"
        other = await watch("operator")  # another caller is not held up
        held[0].cancel()
        again = await _eventually(lambda: watch("viewer"))
        for call in [held[1], other, again]:
            call.cancel()
        await channel.close()


# -- memory under clients that never read ----------------------------------------------

LEGATO = str(Path(sys.executable).with_name("legato"))
NON_READER = [("grpc.http2.bdp_probe", 0), ("grpc.use_local_subchannel_pool", 1)]
"""A client that never reads and so never widens its window (the server cannot push past
the first 64 KiB), each on a connection of its own (channels share one by default)."""


@pytest.mark.timeout(300)
async def test_streams_that_never_read_hold_bounded_memory(tmp_path: Path) -> None:
    """100 downloads of a 7 MB artifact and 200 watchers of a chatty run, none reading,
    cost the server a bounded amount each, and it is given back when they end."""
    downloads, watchers, per_caller = 100, 200, 20
    db = f"sqlite:///{tmp_path}/legato.db"
    with _server(db, tmp_path / "server.log") as (process, address, admin):
        channel = grpc.aio.insecure_channel(address)
        access = access_service_pb2_grpc.AccessServiceStub(channel)
        pipelines = pipeline_service_pb2_grpc.PipelineServiceStub(channel)
        runs = run_service_pb2_grpc.RunServiceStub(channel)
        for name in ("art", "chatty"):
            await pipelines.ApplyPipeline(
                ps.ApplyPipelineRequest(spec=spec(name)), metadata=bearer(admin)
            )
        await runs.TriggerRun(rs.TriggerRunRequest(pipeline="art"), metadata=bearer(admin))
        enrolment = await access.CreateAgentToken(
            access_service_pb2.CreateAgentTokenRequest(agent="worker"), metadata=bearer(admin)
        )
        agent = HandAgent(address, "worker", enrolment.secret)
        await agent.connect(credits=1)
        task = await agent.next("assignment")
        await agent.send(started=ag.TaskStarted(lease_id=task.lease_id))
        artifact = await _upload(agent, task.lease_id, os.urandom(7 * MIB))
        await agent.send(
            result=ag.TaskResult(
                lease_id=task.lease_id,
                outcome=agent_pb2.TASK_OUTCOME_SUCCEEDED,
                output=run_pb2.OutputSummary(artifact_id=artifact.id),
            )
        )
        chatty = await runs.TriggerRun(
            rs.TriggerRunRequest(pipeline="chatty"), metadata=bearer(admin)
        )
        await agent.send(credit=ag.CreditGrant(credits=1))
        task = await agent.next("assignment")
        await agent.send(started=ag.TaskStarted(lease_id=task.lease_id))
        line = "z" * 2000
        for batch in range(20):  # 10,000 lines, 20 MB of log
            lines = [agent_pb2.TaskLogLine(text=f"{batch} {i} {line}") for i in range(500)]
            seq = await agent.send(logs=ag.TaskLogs(lease_id=task.lease_id, lines=lines))
        await _acked(agent, seq)
        chatter = asyncio.create_task(_keep_chatting(agent, task.lease_id))
        viewers = [
            (
                await access.CreateToken(
                    access_service_pb2.CreateTokenRequest(
                        name=f"viewer-{index}", role=access_pb2.ROLE_VIEWER
                    ),
                    metadata=bearer(admin),
                )
            ).secret
            for index in range((downloads + watchers) // per_caller)
        ]
        channels: list[grpc.aio.Channel] = []
        calls: list[Any] = []

        def open_call(method: str, request: Any, secret: str) -> Any:
            client = grpc.aio.insecure_channel(address, options=NON_READER)
            channels.append(client)
            stub: Any = (
                agent_service_pb2_grpc.AgentServiceStub(client)
                if method == "DownloadArtifact"
                else run_service_pb2_grpc.RunServiceStub(client)
            )
            call = getattr(stub, method)(request, metadata=bearer(secret))
            calls.append(call)
            return call

        base = await _settled_rss(process.pid)
        for index in range(watchers):
            open_call(
                "WatchRun",
                rs.WatchRunRequest(id=chatty.run.id, include_logs=True),
                viewers[index // per_caller],
            )
        watching = await _settled_rss(process.pid)
        for index in range(downloads):
            open_call(
                "DownloadArtifact",
                ag.DownloadArtifactRequest(artifact_id=artifact.id),
                viewers[watchers // per_caller + index // per_caller],
            )
        peak = await _settled_rss(process.pid)
        report = (
            f"server RSS: {base} MB, {watching} MB with {watchers} watchers "
            f"({(watching - base) / watchers:.2f} MB each), {peak} MB with {downloads} "
            f"downloads more ({(peak - watching) / downloads:.2f} MB each)"
        )
        print(report)
        assert (watching - base) / watchers < 1.0, report
        assert (peak - watching) / downloads < 3.0, report

        # One caller may hold 32 streams; the next is refused, another caller's is not.
        capped = viewers[-1]
        for _ in range(32 - per_caller):  # each open once its first message is here
            await _first(open_call("WatchRun", rs.WatchRunRequest(id=chatty.run.id), capped))
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await open_call("WatchRun", rs.WatchRunRequest(id=chatty.run.id), capped).read()
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert from_grpc_error(caught.value, "test").reason == "TOO_MANY_STREAMS"

        for call in calls:
            call.cancel()
        for client in channels:
            await client.close()
        # What the calls held is given back: the same downloads again need no more memory
        # (freed memory may stay in the allocator, so RSS alone does not show its release;
        # what leaked would add up).
        calls.clear()
        channels.clear()
        for index in range(downloads):
            open_call(
                "DownloadArtifact",
                ag.DownloadArtifactRequest(artifact_id=artifact.id),
                viewers[watchers // per_caller + index // per_caller],
            )
        again_peak = await _settled_rss(process.pid)
        for call in calls:
            call.cancel()
        for client in channels:
            await client.close()
        calls.clear()
        channels.clear()
        print(f"{report}; {again_peak} MB with the downloads opened a second time")
        assert again_peak - peak < (peak - watching) / 2, f"{report}; {again_peak} MB again"
        # Their slots are free again.
        again = await _eventually(
            lambda: _first(open_call("WatchRun", rs.WatchRunRequest(id=chatty.run.id), capped))
        )
        again.cancel()
        for client in channels:
            await client.close()
        chatter.cancel()
        await agent.close()
        await channel.close()


@contextmanager
def _server(db: str, log: Path) -> Iterator[tuple[subprocess.Popen[bytes], str, str]]:
    """A real `legato server` process on ``db``: (process, address, an admin token)."""
    made = subprocess.run(
        [LEGATO, "tokens", "create", "admin", "--role", "admin", "--db", db, "-o", "json"],
        capture_output=True,
        text=True,
        check=True,
    )
    admin: str = json.loads(made.stdout)["secret"]
    with log.open("wb") as out:
        command = [LEGATO, "server", "--listen", "127.0.0.1:0", "--http-listen", "off"]
        process = subprocess.Popen([*command, "--db", db, "--log-format", "json"], stderr=out)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for text in log.read_text().splitlines():
                event = json.loads(text)
                if event.get("event") == "server_started":
                    yield process, f"127.0.0.1:{event['port']}", admin
                    return
            assert process.poll() is None, log.read_text()
            time.sleep(0.1)
        raise AssertionError(f"the server did not start: {log.read_text()}")
    finally:
        process.terminate()
        process.wait(timeout=30)


def _rss(pid: int) -> int:
    """Resident memory of process ``pid``, in MB."""
    for text in Path(f"/proc/{pid}/status").read_text().splitlines():
        if text.startswith("VmRSS:"):
            return int(text.split()[1]) // 1024
    raise AssertionError(f"no VmRSS for process {pid}")


async def _settled_rss(pid: int, within: float = 30) -> int:
    """RSS once it has stopped moving (three samples a second apart within 2 MB)."""
    samples = [_rss(pid)]
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        await asyncio.sleep(1)
        samples.append(_rss(pid))
        if len(samples) >= 3 and max(samples[-3:]) - min(samples[-3:]) <= 2:
            break
    return samples[-1]


async def _keep_chatting(agent: HandAgent, lease_id: str) -> None:
    """The run keeps running and logging."""
    while True:
        await asyncio.sleep(1)
        await agent.send(heartbeat=ag.Heartbeat(lease_ids=[lease_id]))
        lines = [agent_pb2.TaskLogLine(text=f"still going {i}") for i in range(50)]
        await agent.send(logs=ag.TaskLogs(lease_id=lease_id, lines=lines))


async def _first(call: Any) -> Any:
    await call.read()
    return call


# -- helpers ------------------------------------------------------------------------------


async def _working_agent(plane: LocalControlPlane, name: str) -> tuple[HandAgent, Any]:
    """A hand-driven agent holding the next task, started."""
    agent = HandAgent(plane.address, name, plane.agent_token(name))
    await agent.connect(credits=1)
    task = await agent.next("assignment")
    await _acked(agent, await agent.send(started=ag.TaskStarted(lease_id=task.lease_id)))
    return agent, task


async def _acked(agent: HandAgent, seq: int) -> Any:
    """The ack that covers report ``seq``."""
    ack = await agent.next("ack")
    while ack.through_seq < seq:
        ack = await agent.next("ack")
    return ack


async def _upload(agent: HandAgent, lease_id: str, data: bytes) -> run_pb2.Artifact:
    async def requests() -> Any:
        header = ag.ArtifactHeader(
            lease_id=lease_id, name="table", media_type="application/octet-stream"
        )
        yield ag.UploadArtifactRequest(header=header)
        for start in range(0, len(data), 64 * KIB):
            yield ag.UploadArtifactRequest(chunk=data[start : start + 64 * KIB])

    response = await agent.stub.UploadArtifact(requests(), metadata=agent.metadata)
    artifact: run_pb2.Artifact = response.artifact
    return artifact


async def _download(agent: HandAgent, artifact_id: str, lease_id: str) -> bytes:
    call = agent.stub.DownloadArtifact(
        ag.DownloadArtifactRequest(artifact_id=artifact_id, lease_id=lease_id),
        metadata=agent.metadata,
    )
    return b"".join([message.chunk async for message in call])


def _cli(plane: LocalControlPlane, *args: str) -> subprocess.CompletedProcess[str]:
    """The `legato` command, as a viewer would run it against this control plane."""
    env = {**os.environ, "LEGATO_SERVER": plane.address, "LEGATO_TOKEN": plane.token("viewer")}
    return subprocess.run(
        [LEGATO, *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )


async def _eventually(attempt: Any, within: float = 10) -> Any:
    deadline = time.monotonic() + within
    while True:
        try:
            return await attempt()
        except grpc.aio.AioRpcError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)
