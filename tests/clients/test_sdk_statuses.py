"""Statuses as readable enums: str-valued (what `legato runs` prints), equal to their proto
numbers, convertible both ways, and in step with the protos."""

from __future__ import annotations

import json

import pytest

from legato import FailureKind, LogStream, RunStatus, StepStatus, TriggerKind
from legato.statuses import ProtoEnum
from legato.v1 import run_pb2, spec_pb2


def test_a_status_is_its_word_and_its_proto_number() -> None:
    status = RunStatus.SUCCEEDED
    assert status == "succeeded"
    assert str(status) == "succeeded" and f"{status}" == "succeeded"
    assert status == run_pb2.RUN_STATUS_SUCCEEDED
    assert run_pb2.RUN_STATUS_SUCCEEDED == status  # noqa: SIM300 - the reflected comparison
    assert status != run_pb2.RUN_STATUS_FAILED
    assert status != "failed"
    assert status.proto == 3
    assert repr(status) == "RunStatus.SUCCEEDED"
    assert json.dumps({"status": status}) == '{"status": "succeeded"}'
    by_word: dict[str, int] = {RunStatus.FAILED: 1}
    assert by_word["failed"] == 1


def test_it_converts_from_numbers_and_names() -> None:
    assert RunStatus(run_pb2.RUN_STATUS_TIMED_OUT) is RunStatus.TIMED_OUT  # type: ignore[arg-type]
    assert RunStatus.from_proto(run_pb2.RUN_STATUS_QUEUED) is RunStatus.QUEUED
    assert RunStatus("RUN_STATUS_CANCELLED") is RunStatus.CANCELLED
    assert StepStatus("upstream_failed") is StepStatus.UPSTREAM_FAILED
    with pytest.raises(ValueError, match="99 is not a RunStatus this SDK knows"):
        RunStatus.from_proto(99)
    with pytest.raises(ValueError):
        RunStatus("done")


def test_ended_is_the_end_of_the_lifecycle() -> None:
    active = {RunStatus.UNSPECIFIED, RunStatus.QUEUED, RunStatus.RUNNING}
    assert {s for s in RunStatus if not s.ended} == active
    assert {s for s in StepStatus if not s.ended} == {
        StepStatus.UNSPECIFIED,
        StepStatus.PENDING,
        StepStatus.READY,
        StepStatus.LEASED,
        StepStatus.RUNNING,
    }


@pytest.mark.parametrize(
    ("enum", "proto", "prefix"),
    [
        (RunStatus, run_pb2.RunStatus, "RUN_STATUS_"),
        (StepStatus, run_pb2.StepStatus, "STEP_STATUS_"),
        (TriggerKind, run_pb2.TriggerKind, "TRIGGER_KIND_"),
        (LogStream, run_pb2.LogStream, "LOG_STREAM_"),
        (FailureKind, spec_pb2.FailureKind, "FAILURE_KIND_"),
    ],
)
def test_every_proto_value_has_a_member(enum: type[ProtoEnum], proto: object, prefix: str) -> None:
    values = proto.DESCRIPTOR.values  # type: ignore[attr-defined]
    assert [member.proto for member in enum] == [value.number for value in values]
    assert [member.value for member in enum] == [
        value.name.removeprefix(prefix).lower() for value in values
    ]


def test_the_package_exports_each_name_once_from_where_it_lives() -> None:
    """``legato/__init__.py`` names its exports three times (for type checkers, for the
    lazy import, for ``__all__``): they must agree, and each must import."""
    import importlib

    import legato

    lazy = legato._MODULE_OF
    assert set(legato.__all__) == set(lazy)
    for name, module in lazy.items():
        assert getattr(legato, name) is getattr(importlib.import_module(module), name), name
