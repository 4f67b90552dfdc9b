"""Typed exceptions from a real control plane: each common failure raises its own
subclass, which is still a ``legato.RpcError`` with the status, the server's reason and
every field violation, so code written against ``RpcError`` keeps working."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

import legato
from legato import Client
from legato.connection import Connection
from legato.errors import error_class
from legato.spec import load_spec_text
from legato.testing import LocalControlPlane
from legato.v1 import access_pb2


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalControlPlane]:
    db = tmp_path_factory.mktemp("errors") / "legato.db"
    with LocalControlPlane(db=f"sqlite:///{db}") as running:
        running.client().apply_pipeline(
            load_spec_text("name: etl\nschedule: {cron: '0 2 * * *'}\nsteps:\n"
                           "  - {name: a, transform: {code: result = None}}\n").spec
        )  # fmt: skip
        yield running


def raised(call: Callable[[], object]) -> legato.RpcError:
    with pytest.raises(legato.RpcError) as caught:
        call()
    return caught.value


def test_a_missing_pipeline_or_run_is_not_found(plane: LocalControlPlane) -> None:
    client = plane.client(role="viewer")
    for call in (lambda: client.get_pipeline("nope"), lambda: client.get_run("01nope")):
        error = raised(call)
        assert type(error) is legato.NotFound
        assert error.code == grpc.StatusCode.NOT_FOUND
        assert error.reason.endswith("_NOT_FOUND")
        assert "nope" in error.message


def test_a_role_without_the_right_is_permission_denied(plane: LocalControlPlane) -> None:
    error = raised(lambda: plane.client(role="viewer").trigger_run("etl"))
    assert type(error) is legato.PermissionDenied
    assert error.code == grpc.StatusCode.PERMISSION_DENIED
    assert "operator" in error.message


def test_an_unknown_token_is_unauthenticated(plane: LocalControlPlane) -> None:
    error = raised(lambda: plane.client(token="lgt_not_a_real_token").get_pipeline("etl"))
    assert type(error) is legato.Unauthenticated
    assert error.code == grpc.StatusCode.UNAUTHENTICATED


def test_a_token_name_taken_is_already_exists(plane: LocalControlPlane) -> None:
    client = plane.client()
    client.create_token("ci-bot", access_pb2.ROLE_OPERATOR)
    error = raised(lambda: client.create_token("ci-bot", access_pb2.ROLE_OPERATOR))
    assert type(error) is legato.AlreadyExists
    assert error.reason == "TOKEN_EXISTS"


def test_acting_on_something_in_the_wrong_state_is_failed_precondition(
    plane: LocalControlPlane,
) -> None:
    client = plane.client()
    client.apply_pipeline(
        load_spec_text("name: manual\nsteps:\n  - {name: a, transform: {code: x = 1}}\n").spec
    )
    error = raised(lambda: client.pause_schedule("manual"))
    assert type(error) is legato.FailedPrecondition
    assert error.reason == "NO_SCHEDULE"


def test_an_invalid_spec_lists_every_violation(plane: LocalControlPlane) -> None:
    spec = load_spec_text(
        """
        name: broken
        schedule: {cron: "0 25 * * *", timezone: Mars/Olympus}
        steps:
          - {name: a, needs: [b], transform: {code: result = None}}
          - {name: a, transform: {code: result = None}}
        """.replace("\n        ", "\n")
    ).spec
    error = raised(lambda: plane.client().apply(spec))
    assert type(error) is legato.InvalidSpec
    assert isinstance(error, legato.InvalidArgument)
    assert error.reason == "INVALID_PIPELINE_SPEC"
    fields = [violation.field for violation in error.violations]
    assert {"schedule.cron", "schedule.timezone", "steps[0].needs[0]"} <= set(fields), fields
    assert any(field.startswith("steps[1]") for field in fields), fields
    assert all(violation.description for violation in error.violations)
    assert str(error.violations[0]) == f"{fields[0]}: {error.violations[0].description}"
    # validate() says the same, and saves nothing.
    same = raised(lambda: plane.client().validate(spec))
    assert same.violations == error.violations
    assert raised(lambda: plane.client().get_pipeline("broken")).code == grpc.StatusCode.NOT_FOUND


def test_bad_params_are_invalid_argument_with_a_violation_each(plane: LocalControlPlane) -> None:
    client = plane.client()
    client.apply(
        load_spec_text(
            "name: sized\nparams: {rows: {type: integer}}\n"
            "steps:\n  - {name: a, transform: {code: x = 1}}\n"
        ).spec
    )
    error = raised(lambda: client.run("sized", params={"rows": "many", "other": 1}))
    assert type(error) is legato.InvalidArgument
    assert error.reason == "INVALID_PARAMS"
    assert {v.field: v.description for v in error.violations} == {
        "params.other": "'other' is not a parameter of pipeline 'sized' (declared: rows)",
        "params.rows": "'many' is not an integer; parameter 'rows' has type integer",
    }


def test_no_server_is_unavailable_and_says_what_to_do(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with Client(connection=Connection(server=f"127.0.0.1:{port}", token="t"), timeout=5) as client:
        error = raised(lambda: client.get_pipeline("etl"))
    assert type(error) is legato.Unavailable
    assert error.message.startswith(f"cannot reach the Legato server at 127.0.0.1:{port}")
    assert "legato up" in error.message


def test_every_status_code_has_its_class() -> None:
    expected = {
        grpc.StatusCode.INVALID_ARGUMENT: legato.InvalidArgument,
        grpc.StatusCode.NOT_FOUND: legato.NotFound,
        grpc.StatusCode.ALREADY_EXISTS: legato.AlreadyExists,
        grpc.StatusCode.ABORTED: legato.Conflict,
        grpc.StatusCode.FAILED_PRECONDITION: legato.FailedPrecondition,
        grpc.StatusCode.RESOURCE_EXHAUSTED: legato.LimitExceeded,
        grpc.StatusCode.UNAUTHENTICATED: legato.Unauthenticated,
        grpc.StatusCode.PERMISSION_DENIED: legato.PermissionDenied,
        grpc.StatusCode.UNAVAILABLE: legato.Unavailable,
        grpc.StatusCode.DEADLINE_EXCEEDED: legato.DeadlineExceeded,
        grpc.StatusCode.UNIMPLEMENTED: legato.Unimplemented,
        grpc.StatusCode.CANCELLED: legato.Cancelled,
        grpc.StatusCode.INTERNAL: legato.InternalError,
    }
    for code, kind in expected.items():
        assert error_class(code, code.name) is kind
        assert issubclass(kind, legato.RpcError)
    assert error_class(grpc.StatusCode.INVALID_ARGUMENT, "INVALID_PIPELINE_SPEC") is (
        legato.InvalidSpec
    )
    assert error_class(grpc.StatusCode.OK, "OK") is legato.RpcError
