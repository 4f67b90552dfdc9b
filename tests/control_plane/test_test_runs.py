"""Test runs on plain data: the spec a test run keeps (the step, what it needs, nothing
that acts on its own), the checks of its inputs, the routing of its step to the named
agent only, and how its run log names its hidden version."""

from __future__ import annotations

import textwrap

import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.ipc as ipc  # type: ignore[import-untyped]
import pytest

from control_plane.errors import InvalidArgument
from control_plane.execution import runlog
from control_plane.execution.dispatch import AGENT_NAME_KEY, _no_agent_reason, _pick
from control_plane.execution.hub import AgentSession
from control_plane.execution.test_runs import GivenInput, _check_inputs, spec_of_test
from control_plane.validation import validate_spec
from legato.spec import load_spec_text
from legato.v1 import spec_pb2

SPEC = textwrap.dedent(
    """
    name: shop
    schedule: {cron: "0 2 * * *", timezone: UTC}
    retry: {max_retries: 3}
    limits: {max_concurrent_runs: 1, step_timeout: 5m}
    params:
      day: {type: date}
    notifications:
      - on: [failed]
        webhook: {url: "http://127.0.0.1:9/hook"}
    steps:
      - name: extract
        query: {connection: warehouse, sql: select 1}
      - name: prices
        when: params.day != null
        transform: {code: "result = None"}
      - name: join
        needs: [extract, prices]
        when: steps.extract.records > 0
        trigger_rule: all_done
        retry: {max_retries: 2}
        agent_selector: {region: eu}
        transform: {code: "result = data"}
      - name: load
        needs: [join]
        export: {table: {connection: lake, table: t}}
    """
)


def _spec() -> spec_pb2.PipelineSpec:
    return load_spec_text(SPEC).spec


def test_a_test_spec_holds_the_step_and_what_it_needs_and_nothing_that_acts() -> None:
    reduced = spec_of_test(_spec(), "join")
    assert [s.name for s in reduced.steps] == ["extract", "prices", "join"]
    extract, prices, join = reduced.steps
    assert list(join.needs) == ["extract", "prices"]
    assert not extract.needs and not prices.when
    assert not join.when and join.trigger_rule == spec_pb2.TRIGGER_RULE_UNSPECIFIED
    assert not join.HasField("retry")
    assert dict(join.agent_selector) == {"region": "eu"}  # where it may run is kept
    assert not reduced.HasField("schedule") and not reduced.HasField("retry")
    assert not reduced.notifications
    assert reduced.HasField("default_notifications") and not reduced.default_notifications
    assert reduced.limits.max_concurrent_runs == 0
    assert reduced.limits.step_timeout.seconds == 300  # limits of its steps are kept
    assert "day" in reduced.params
    assert validate_spec(reduced) == []
    # A step with no needs: only itself.
    assert [s.name for s in spec_of_test(_spec(), "extract").steps] == ["extract"]


def test_inputs_must_be_exactly_the_steps_the_step_needs() -> None:
    join = next(s for s in _spec().steps if s.name == "join")
    sink = pa.BufferOutputStream()
    table = pa.table({"id": [1, 2, 3]})
    with ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    inputs = [
        GivenInput("extract", sink.getvalue().to_pybytes()),
        GivenInput("prices", values={"a": 1}),
    ]
    given = _check_inputs(join, inputs)
    assert [(g.step, g.rows, g.columns, g.values) for g in given] == [
        ("extract", 3, [{"name": "id", "type": "int64"}], {}),
        ("prices", None, [], {"a": 1}),
    ]
    with pytest.raises(InvalidArgument) as broken:
        _check_inputs(join, [GivenInput("extract", b"x"), GivenInput("prices")])
    assert broken.value.reason == "INVALID_TEST_INPUT"
    assert [v.field for v in broken.value.violations] == ["inputs[0].table"]
    with pytest.raises(InvalidArgument) as missing:
        _check_inputs(join, [GivenInput("extract")])
    assert missing.value.reason == "TEST_INPUT_MISSING"
    assert "needs 'prices'" in missing.value.message
    with pytest.raises(InvalidArgument) as other:
        _check_inputs(join, [GivenInput("load"), GivenInput("prices"), GivenInput("extract")])
    assert "does not need" in other.value.message
    with pytest.raises(InvalidArgument, match="a second time"):
        _check_inputs(join, [GivenInput("extract"), GivenInput("extract")])


def _agent(name: str, labels: dict[str, str] | None = None) -> AgentSession:
    return AgentSession(name=name, instance_id=f"{name}-1", labels=labels or {}, slots=2, balance=2)


def test_a_test_step_goes_to_the_named_agent_only() -> None:
    near = _agent("near", {"region": "eu"})
    far = _agent("far", {"region": "eu"})
    far.balance = 2
    selector = {"region": "eu", AGENT_NAME_KEY: "near"}
    assert _pick([far, near], selector) is near
    assert _pick([far], selector) is None
    assert _pick([_agent("near", {"region": "us"})], selector) is None
    assert _pick([far, near], {"region": "eu"}) in (far, near)
    assert "agent 'near' (the agent this test runs on) is not connected" in _no_agent_reason(
        selector, [far]
    )
    assert "is busy or draining" in _no_agent_reason(selector, [near])


def test_the_run_log_names_a_test_runs_version_as_the_test_spec() -> None:
    assert runlog.pipeline_started("shop", -2, "test", None) == (
        "Pipeline started (shop test spec, trigger test)"
    )
    assert runlog.pipeline_started("shop", 3, "manual", None) == (
        "Pipeline started (shop v3, trigger manual)"
    )
