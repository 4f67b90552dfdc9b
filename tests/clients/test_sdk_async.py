"""``legato.AsyncClient`` beside the sync client: the same methods by the same names and
arguments, as coroutines over grpc.aio, against a real control plane — applying, listing,
starting, waiting, cancelling, reading logs, typed errors — and the same retries."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

import legato
from legato import AsyncClient, Client, RunStatus
from legato.aio import AsyncRunHandle
from legato.connection import Connection
from legato.runs import RunHandle
from legato.statuses import LogStream
from legato.testing import LocalControlPlane
from legato.v1 import run_pb2, run_service_pb2

NO_AGENT = legato.Pipeline("waits", params={"rows": legato.Param(int, default=3)})
NO_AGENT.transform("only", code="result = None")


@pytest.fixture
def plane(tmp_path: Path) -> Iterator[LocalControlPlane]:
    with LocalControlPlane(db=f"sqlite:///{tmp_path}/legato.db") as running:
        yield running


def connection(plane: LocalControlPlane, role: str = "admin") -> Connection:
    return Connection(server=plane.address, token=plane.token(role))


def test_every_method_of_the_sync_client_is_on_the_async_one() -> None:
    for cls_sync, cls_async in ((Client, AsyncClient), (RunHandle, AsyncRunHandle)):
        public = [n for n, _ in inspect.getmembers(cls_sync, inspect.isfunction) if n[0] != "_"]
        for name in public:
            assert hasattr(cls_async, name), f"{cls_async.__name__} has no {name}"
            sync_parameters = inspect.signature(getattr(cls_sync, name)).parameters
            async_parameters = inspect.signature(getattr(cls_async, name)).parameters
            assert list(sync_parameters) == list(async_parameters), name
            for key, parameter in sync_parameters.items():
                assert parameter.default == async_parameters[key].default, (name, key)
                assert parameter.kind == async_parameters[key].kind, (name, key)


async def test_apply_list_and_read_pipelines(plane: LocalControlPlane) -> None:
    async with AsyncClient(connection=connection(plane, "editor")) as client:
        applied = await NO_AGENT.apply(client, message="first")
        assert (applied.created, applied.version.number) == (True, 1)
        assert (await client.apply(NO_AGENT)).created is False
        assert (await client.validate(NO_AGENT)).content_hash == applied.version.content_hash
        assert [p.name async for p in client.list_pipelines()] == ["waits"]
        versions = [v.number async for v in client.list_pipeline_versions("waits")]
        assert versions == [1]
        version = await client.get_pipeline_version("waits")
        assert version.spec == NO_AGENT.to_spec()
        with pytest.raises(legato.NotFound) as caught:
            await client.get_pipeline("nope")
        assert caught.value.reason == "PIPELINE_NOT_FOUND"
        with pytest.raises(legato.InvalidSpec) as invalid:
            await client.apply(legato.Pipeline("bad", schedule="every day"))
        assert {v.field for v in invalid.value.violations} >= {"schedule.cron", "steps"}
        stats = await client.pipeline_stats("waits", runs=5)
        assert (stats.pipeline, list(stats.runs), stats.slowest_step) == ("waits", [], "")
        with pytest.raises(legato.NotFound):
            await client.pipeline_stats("nope")


async def test_a_run_waited_for_cancelled_and_read(plane: LocalControlPlane) -> None:
    plane.client().apply(NO_AGENT)
    async with AsyncClient(connection=connection(plane, "operator")) as client:
        run = await client.run("waits", params={"rows": 5})
        assert run.created
        with pytest.raises(legato.RunWaitTimeout) as caught:
            await run.wait(timeout=0.5)
        assert caught.value.run.id == run.id
        assert caught.value.run.status in (RunStatus.QUEUED, RunStatus.RUNNING)
        assert "after 0.5s" in str(caught.value)

        await run.cancel("not today")
        finished = await run.wait(timeout=10)
        assert finished.status == RunStatus.CANCELLED
        assert finished.params == {"rows": 5}
        with pytest.raises(legato.RunFailed, match=f"run {run.id} of pipeline 'waits' cancelled"):
            finished.check()
        lines = [line async for line in run.logs()]
        assert lines and all(line.stream == LogStream.SYSTEM for line in lines)
        assert [line.seq async for line in run.logs(follow=True)] == [line.seq for line in lines]
        events = [event async for event in run.events()]
        assert [e.run.status for e in events if e.HasField("run")][-1] == RunStatus.CANCELLED
        assert [e.log.seq for e in events if e.HasField("log")] == [line.seq for line in lines]

        cancelled = [r.id async for r in client.list_runs(statuses=[RunStatus.CANCELLED])]
        assert cancelled == [run.id]
        assert [r.id async for r in client.list_runs(statuses=[RunStatus.SUCCEEDED])] == []

        again = await client.run("waits", request_id="same-request")
        repeated = await client.run("waits", request_id="same-request")
        assert repeated.id == again.id and repeated.created is False

    # The sync client, with the same request id, gets the same run: the same request.
    with Client(connection=connection(plane, "operator")) as sync:
        assert sync.run("waits", request_id="same-request").id == again.id
        assert sync.run_handle(run.id).get() == finished


def _unavailable(context: grpc.ServicerContext) -> None:
    info = any_pb2.Any()
    info.Pack(error_details_pb2.ErrorInfo(reason="DATABASE_UNAVAILABLE", domain="legato.dev"))
    status = status_pb2.Status(code=grpc.StatusCode.UNAVAILABLE.value[0], message="restarting")
    status.details.append(info)

    class Status(grpc.Status):
        code = grpc.StatusCode.UNAVAILABLE
        details = "restarting"
        trailing_metadata = (("grpc-status-details-bin", status.SerializeToString()),)

    context.abort_with_status(Status())


async def test_it_rides_out_a_database_restart_with_one_request_id() -> None:
    request_ids: list[str] = []

    def trigger(
        request: run_service_pb2.TriggerRunRequest, context: grpc.ServicerContext
    ) -> run_service_pb2.TriggerRunResponse:
        request_ids.append(request.request_id)
        if len(request_ids) <= 2:
            _unavailable(context)
        return run_service_pb2.TriggerRunResponse(run=run_pb2.Run(id="r1"), created=True)

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    handler = grpc.unary_unary_rpc_method_handler(
        trigger,
        request_deserializer=run_service_pb2.TriggerRunRequest.FromString,
        response_serializer=run_service_pb2.TriggerRunResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler("legato.v1.RunService", {"TriggerRun": handler})]
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        async with AsyncClient(f"127.0.0.1:{port}", token="t") as client:
            handle = await client.run("etl")
    finally:
        server.stop(None)
    assert handle.id == "r1"
    assert len(request_ids) == 3 and len(set(request_ids)) == 1
