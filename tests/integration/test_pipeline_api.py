"""PipelineService over real gRPC on both backends, driven through the SDK."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from legato import RpcError
from legato.testing import LocalControlPlane
from legato.v1 import spec_pb2

Spec = Callable[..., spec_pb2.PipelineSpec]


def test_apply_versions_diff_rollback_round_trip(plane: LocalControlPlane, make_spec: Spec) -> None:
    client = plane.client(user="alice")
    first = client.apply_pipeline(make_spec(), message="first cut")
    # The author is the authenticated token's name, not the user the client claims.
    assert (first.created, first.version.number, first.version.author) == (True, 1, "tester")
    assert not client.apply_pipeline(make_spec()).created
    second = client.apply_pipeline(make_spec(code="result = data.head()"), message="tweak")
    assert second.version.number == 2

    diff = client.diff_pipeline_versions("etl", 1, 2)
    assert [(c.step, list(c.fields)) for c in diff.steps_changed] == [("clean", ["transform.code"])]
    assert not diff.identical

    rolled = client.rollback_pipeline("etl", 1, message="bad deploy")
    assert (rolled.created, rolled.version.number, rolled.version.rollback_of) == (True, 3, 1)
    assert client.diff_pipeline_versions("etl", 1, 3).identical
    assert [v.number for v in client.list_pipeline_versions("etl", page_size=2)] == [3, 2, 1]
    assert client.get_pipeline_version("etl", 2).message == "tweak"
    assert client.get_pipeline("etl").latest_version == 3


def test_invalid_spec_gets_field_violations(plane: LocalControlPlane, make_spec: Spec) -> None:
    spec = make_spec()
    spec.steps[2].needs[:] = ["claen"]
    spec.schedule.cron = "61 * * * *"
    with pytest.raises(RpcError) as caught:
        plane.client().validate_pipeline(spec)
    error = caught.value
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.reason == "INVALID_PIPELINE_SPEC"
    by_field = {v.field: v.description for v in error.field_violations}
    assert "did you mean 'clean'" in by_field["steps[2].needs[0]"]
    assert "minute" in by_field["schedule.cron"] and "61" in by_field["schedule.cron"]


def test_errors_carry_codes_and_reasons(plane: LocalControlPlane, make_spec: Spec) -> None:
    client = plane.client()
    with pytest.raises(RpcError) as missing:
        client.get_pipeline("nope")
    assert (missing.value.code, missing.value.reason) == (
        grpc.StatusCode.NOT_FOUND,
        "PIPELINE_NOT_FOUND",
    )
    assert missing.value.metadata == {"pipeline": "nope"}

    client.apply_pipeline(make_spec())
    client.archive_pipeline("etl")
    with pytest.raises(RpcError) as archived:
        client.apply_pipeline(make_spec(code="result = 2"))
    assert archived.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert archived.value.reason == "PIPELINE_ARCHIVED"
    assert [p.name for p in client.list_pipelines()] == []
    assert [p.name for p in client.list_pipelines(show_archived=True)] == ["etl"]
    client.restore_pipeline("etl")
    assert [p.name for p in client.list_pipelines()] == ["etl"]


def test_concurrent_clients_get_distinct_version_numbers(
    plane: LocalControlPlane, make_spec: Spec
) -> None:
    plane.client().apply_pipeline(make_spec())

    def apply(i: int) -> int:
        client = plane.client(user=f"user{i}")
        return client.apply_pipeline(make_spec(code=f"result = data.head({i})")).version.number

    with ThreadPoolExecutor(max_workers=6) as pool:
        numbers = sorted(pool.map(apply, range(12)))
    assert numbers == list(range(2, 14))


def test_request_id_retry_returns_the_same_version(
    plane: LocalControlPlane, make_spec: Spec
) -> None:
    client = plane.client()
    first = client.apply_pipeline(make_spec(), request_id="deploy-42")
    client.apply_pipeline(make_spec(code="result = 3"))
    retry = client.apply_pipeline(make_spec(), request_id="deploy-42")
    assert retry.version.number == first.version.number == 1


def test_health_and_reflection(plane: LocalControlPlane) -> None:
    """Health checks need no credential (load balancers probe them); reflection needs a
    viewer's token."""
    with grpc.insecure_channel(plane.address) as channel:
        # The typeshed stubs of these generated stubs declare no methods.
        health: Any = health_pb2_grpc.HealthStub(channel)
        for service in ["", "legato.v1.PipelineService", "legato.v1.AgentService"]:
            reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        stub: Any = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        with pytest.raises(grpc.RpcError) as refused:
            next(iter(stub.ServerReflectionInfo(iter([request]), timeout=5)))
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        viewer = (("authorization", f"Bearer {plane.token('viewer')}"),)
        reply = next(iter(stub.ServerReflectionInfo(iter([request]), timeout=5, metadata=viewer)))
        names = {s.name for s in reply.list_services_response.service}
        assert {
            "legato.v1.PipelineService",
            "legato.v1.RunService",
            "legato.v1.EventService",
            "legato.v1.AgentService",
            "legato.v1.AccessService",
            "legato.v1.AuditService",
            "grpc.health.v1.Health",
        } <= names


def test_sqlite_store_survives_a_restart(tmp_path: object, make_spec: Spec) -> None:
    url = f"sqlite:///{tmp_path}/legato.db"
    with LocalControlPlane(db=url) as first:
        first.client().apply_pipeline(make_spec(), message="kept")
    with LocalControlPlane(db=url) as second:
        assert second.client().get_pipeline_version("etl", 1).message == "kept"
