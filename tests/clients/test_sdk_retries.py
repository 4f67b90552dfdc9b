"""The SDK sends a call again while the control plane says its database is unavailable —
the same request, so the same request id — and gives up with the server's message after
its retry window; other failures are never retried. A real gRPC server on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

from legato import Client, client
from legato.errors import RpcError
from legato.v1 import run_pb2, run_service_pb2


def _abort(context: grpc.ServicerContext, code: grpc.StatusCode, reason: str) -> None:
    info = any_pb2.Any()
    info.Pack(error_details_pb2.ErrorInfo(reason=reason, domain="legato.dev"))
    status = status_pb2.Status(code=code.value[0], message=f"{reason} now", details=[info])
    context.abort_with_status(_Status(code, status))


class _Status(grpc.Status):
    def __init__(self, code: grpc.StatusCode, status: status_pb2.Status) -> None:
        self.code = code
        self.details = status.message
        self.trailing_metadata = (("grpc-status-details-bin", status.SerializeToString()),)


class Flaky:
    """TriggerRun fails ``failures`` times with ``reason``, then starts a run."""

    def __init__(self, failures: int, reason: str = "DATABASE_UNAVAILABLE") -> None:
        self.failures = failures
        self.reason = reason
        self.request_ids: list[str] = []

    def trigger_run(
        self, request: run_service_pb2.TriggerRunRequest, context: grpc.ServicerContext
    ) -> run_service_pb2.TriggerRunResponse:
        self.request_ids.append(request.request_id)
        if len(self.request_ids) <= self.failures:
            code = grpc.StatusCode.UNAVAILABLE
            if self.reason == "PIPELINE_NOT_FOUND":
                code = grpc.StatusCode.NOT_FOUND
            _abort(context, code, self.reason)
        return run_service_pb2.TriggerRunResponse(run=run_pb2.Run(id="r1"), created=True)


@pytest.fixture
def serve() -> Iterator[Any]:
    servers: list[grpc.Server] = []

    def start(servicer: Flaky) -> str:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        handler = grpc.unary_unary_rpc_method_handler(
            servicer.trigger_run,
            request_deserializer=run_service_pb2.TriggerRunRequest.FromString,
            response_serializer=run_service_pb2.TriggerRunResponse.SerializeToString,
        )
        server.add_generic_rpc_handlers(
            [grpc.method_handlers_generic_handler("legato.v1.RunService", {"TriggerRun": handler})]
        )
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        servers.append(server)
        return f"127.0.0.1:{port}"

    yield start
    for server in servers:
        server.stop(None)


def test_a_database_restart_is_ridden_out_with_one_request_id(serve: Any) -> None:
    flaky = Flaky(failures=3)
    with Client(serve(flaky), token="t") as sdk:
        assert sdk.trigger_run("etl").run.id == "r1"
    assert len(flaky.request_ids) == 4
    assert len(set(flaky.request_ids)) == 1


def test_it_gives_up_after_its_window(serve: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client, "DATABASE_RETRY_SECONDS", 0.5)
    flaky = Flaky(failures=1000)
    with Client(serve(flaky), token="t") as sdk, pytest.raises(RpcError) as caught:
        sdk.trigger_run("etl")
    assert caught.value.reason == "DATABASE_UNAVAILABLE"
    assert caught.value.message == "DATABASE_UNAVAILABLE now"
    assert 2 <= len(flaky.request_ids) <= 5


def test_other_failures_are_not_retried(serve: Any) -> None:
    flaky = Flaky(failures=1, reason="PIPELINE_NOT_FOUND")
    with Client(serve(flaky), token="t") as sdk, pytest.raises(RpcError) as caught:
        sdk.trigger_run("etl")
    assert caught.value.reason == "PIPELINE_NOT_FOUND"
    assert len(flaky.request_ids) == 1
