"""A step's isolation: accepted on agent steps, refused (with the path and what to do) on
a trigger step and for a number the enum does not know."""

from __future__ import annotations

import pytest

from control_plane.validation import Violation, validate_spec
from legato.v1 import spec_pb2


def _spec(step: spec_pb2.Step) -> spec_pb2.PipelineSpec:
    return spec_pb2.PipelineSpec(name="tiny", steps=[step])


@pytest.mark.parametrize("isolation", [spec_pb2.ISOLATION_PROCESS, spec_pb2.ISOLATION_POOLED])
@pytest.mark.parametrize(
    "kind",
    [
        {"transform": spec_pb2.TransformStep(code="result = 1")},
        {"function": spec_pb2.FunctionStep(function="pkg.mod:run")},
        {"query": spec_pb2.QueryStep(connection="warehouse", sql="select 1")},
    ],
)
def test_agent_steps_may_choose_their_isolation(kind: dict[str, object], isolation: int) -> None:
    step = spec_pb2.Step(name="s", isolation=isolation, memory="64Mi", **kind)  # type: ignore[arg-type]
    assert validate_spec(_spec(step)) == []


def test_a_trigger_step_refuses_an_isolation() -> None:
    step = spec_pb2.Step(
        name="kick",
        trigger=spec_pb2.TriggerStep(pipeline="other"),
        isolation=spec_pb2.ISOLATION_POOLED,
    )
    assert validate_spec(_spec(step)) == [
        Violation(
            "steps[0].isolation",
            "step 'kick' is a trigger step, which runs on the control plane, so isolation "
            "pooled does not apply; remove isolation (it chooses the agent process of "
            "query, transform, function and export steps)",
        )
    ]


def test_an_unknown_isolation_number_is_refused() -> None:
    step = spec_pb2.Step(name="s", transform=spec_pb2.TransformStep(code="pass"))
    step.isolation = 7  # type: ignore[assignment]  # proto3 keeps numbers it does not know
    assert validate_spec(_spec(step)) == [
        Violation("steps[0].isolation", "7 is not a known isolation; use one of process, pooled")
    ]
