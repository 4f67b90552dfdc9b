"""Test runs (RunService.TestStep): one step of a pipeline as the caller has it, run on
one named agent with that agent's connections, on inputs the caller gives — so a data
engineer tries a query against the real warehouse from a notebook without holding its
credentials — and kept apart from production.

How a test run is made
----------------------
- The spec is validated exactly as ApplyPipeline validates it (``Registry.validate``:
  every violation as a BadRequest field violation). A pipeline of that name must exist
  (runs belong to a pipeline row): FAILED_PRECONDITION otherwise, saying to apply it.
- The run's plan is a *hidden version* of the pipeline: a ``pipeline_versions`` row with
  a number below 0 holding the test spec — the tested step and the steps it needs, and
  nothing that acts on its own (no schedule, triggers, notifications, not even the
  server's default ones, run expectations, retries or run limit; the step's ``when``
  and trigger rule are dropped: it was asked for). The execution plane loads it like
  any version, by (pipeline, number), on any replica. Hidden versions are never latest
  (the head does not move), never listed or diffed (numbers from 1 only), never
  scheduled; one with the same content is reused.
- The run has trigger kind ``test``; the steps it needs are rows that already succeeded
  with the given outputs (tables stored as artifacts, values), as a rerun's reused steps,
  so the step's inputs reach it as TaskInputs the usual way. A needed step not given is
  INVALID_ARGUMENT naming it.
- The step goes to the named agent only: its selector holds the agent's name
  (:data:`control_plane.execution.dispatch.AGENT_NAME_KEY`) beside its labels. The agent
  must be connected (FAILED_PRECONDITION naming those that are) and must match the step's
  ``agent_selector`` and hold its connections (FAILED_PRECONDITION saying which it
  lacks): the test runs where production would be allowed to.
- Test runs are not listed unless asked for (``include_tests``, or ``triggers`` with
  TEST), send no notifications (their spec has none), are started whatever the
  pipeline's ``max_concurrent_runs`` and never counted by it or by overlap policies, and
  a paused schedule does not affect them.
- TestStep is a mutation: ``request_id`` makes a retried call return the same run, and
  the activity log records it."""

from __future__ import annotations

import difflib
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from google.protobuf import json_format, struct_pb2
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.access.actors import Actor
from control_plane.errors import FailedPrecondition, FieldViolation, InvalidArgument
from control_plane.execution.artifacts import ArtifactStore
from control_plane.execution.bindings import required_labels
from control_plane.execution.dispatch import AGENT_NAME_KEY
from control_plane.execution.effects import Effects
from control_plane.execution.plans import PlanCache
from control_plane.execution.runs import Runs, RunView, TriggerSpec
from control_plane.execution.transitions import Transitions
from control_plane.pipelines import versioning
from control_plane.pipelines.registry import Registry
from control_plane.statuses import TEST_TRIGGER
from control_plane.store import audit, requests
from control_plane.store import pipelines as pipeline_queries
from control_plane.store.models import AgentRow
from legato.spec.connections import CONNECTION_LABEL
from legato.v1 import spec_pb2

__all__ = ["GivenInput", "TestRuns", "spec_of_test"]

GIVEN_ARTIFACT = "input.arrow"
TEST_MESSAGE = "test run (RunService.TestStep)"


@dataclass(frozen=True)
class GivenInput:
    """What one upstream step would have produced: an Arrow IPC stream (empty for no
    table) and values."""

    step: str
    table: bytes = b""
    values: dict[str, Any] = field(default_factory=dict)


def spec_of_test(spec: spec_pb2.PipelineSpec, step: str) -> spec_pb2.PipelineSpec:
    """The spec of a test of ``step``: it and the steps it needs (as given steps, without
    needs of their own), none of the pipeline's schedule, triggers, notifications,
    expectations, retries or run limit."""
    by_name = {s.name: s for s in spec.steps}
    tested = by_name[step]
    reduced = spec_pb2.PipelineSpec()
    reduced.CopyFrom(spec)
    reduced.ClearField("schedule")
    reduced.ClearField("retry")
    reduced.ClearField("expect")
    del reduced.triggers[:]
    del reduced.notifications[:]
    reduced.default_notifications = False  # nor the server's default notifications
    reduced.limits.max_concurrent_runs = 0
    del reduced.steps[:]
    for parent in tested.needs:
        given = reduced.steps.add()
        given.CopyFrom(by_name[parent])
        del given.needs[:]
        _unconditional(given)
    copy = reduced.steps.add()
    copy.CopyFrom(tested)
    _unconditional(copy)
    return versioning.canonicalize(reduced)


def _unconditional(step: spec_pb2.Step) -> None:
    step.ClearField("when")
    step.ClearField("trigger_rule")
    step.ClearField("retry")


def _table_facts(data: bytes, where: str) -> tuple[int, list[dict[str, str]]]:
    """Rows and columns of an Arrow IPC stream (or file), or INVALID_ARGUMENT."""
    import pyarrow as pa  # type: ignore[import-untyped]
    import pyarrow.ipc as ipc  # type: ignore[import-untyped]

    try:
        try:
            table = ipc.open_stream(pa.py_buffer(data)).read_all()
        except pa.ArrowInvalid:
            table = ipc.open_file(pa.py_buffer(data)).read_all()
    except (pa.ArrowInvalid, OSError) as exc:
        raise InvalidArgument(
            f"{where} is not an Arrow IPC stream ({exc}); send the table as "
            "pyarrow.ipc.new_stream writes it, or leave it empty for none",
            reason="INVALID_TEST_INPUT",
            violations=[FieldViolation(where, "not an Arrow IPC stream")],
        ) from None
    columns = [{"name": f.name, "type": str(f.type)} for f in table.schema]
    return int(table.num_rows), columns


class TestRuns:
    __test__ = False  # not a pytest test class

    def __init__(
        self,
        runs: Runs,
        plans: PlanCache,
        transitions: Transitions,
        registry: Registry,
        artifacts: ArtifactStore,
        *,
        lease_seconds: float,
        clock: Callable[[], datetime],
    ) -> None:
        self._runs = runs
        self._plans = plans
        self._transitions = transitions
        self._registry = registry
        self._artifacts = artifacts
        self._lease = timedelta(seconds=lease_seconds)
        self._clock = clock

    async def test_step(
        self,
        spec: spec_pb2.PipelineSpec,
        step: str,
        *,
        params: struct_pb2.Struct,
        agent: str,
        inputs: Sequence[GivenInput],
        actor: Actor,
    ) -> RunView:
        """Start a test run of ``step`` on ``agent`` (see the module docstring)."""
        valid = self._registry.validate(spec)
        names = [s.name for s in valid.spec.steps]
        if step not in names:
            close = difflib.get_close_matches(step, names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise InvalidArgument(
                f"pipeline {spec.name!r} has no step {step!r}{hint}; its steps: "
                + ", ".join(names),
                reason="UNKNOWN_STEP",
                violations=[FieldViolation("step", f"no step {step!r} in the spec")],
            )
        tested = next(s for s in valid.spec.steps if s.name == step)
        if tested.WhichOneof("kind") == "trigger":
            raise InvalidArgument(
                f"step {step!r} is a trigger step: it starts another pipeline on the control "
                "plane and runs nothing on an agent, so there is nothing to test",
                reason="TRIGGER_STEP_NOT_TESTABLE",
                violations=[FieldViolation("step", "a trigger step")],
            )
        given = _check_inputs(tested, inputs)
        if not agent:
            raise InvalidArgument(
                "agent is required: the name of the connected agent to run the step on "
                "(`legato agents` lists them)",
                reason="AGENT_REQUIRED",
                violations=[FieldViolation("agent", "required")],
            )
        reduced = spec_of_test(valid.spec, step)
        text = versioning.canonical_json(reduced)
        digest = versioning.content_hash(text)
        request = requests.Fingerprint.of(
            spec=valid.content_hash,
            step=step,
            params=json_format.MessageToDict(params),
            agent=agent,
            inputs=[
                {"step": g.step, "table": hashlib.sha256(g.table).hexdigest(), "v": g.values}
                for g in inputs
            ],
        )

        async def create(session: AsyncSession, effects: Effects) -> str:
            replay = await requests.find_result(session, "TestStep", actor.request_id, request)
            if replay is not None:
                return str(replay["run_id"])
            now = self._clock()
            pipeline = await pipeline_queries.find_pipeline(session, spec.name, for_update=True)
            if pipeline is None:
                raise FailedPrecondition(
                    f"pipeline {spec.name!r} does not exist on this server; a test run "
                    "belongs to a pipeline, so apply it once (`legato apply -f FILE`) and "
                    "test again: the test runs the spec you send, not the applied one",
                    reason="PIPELINE_NOT_APPLIED",
                    metadata={"pipeline": spec.name},
                )
            if pipeline.archived:
                raise FailedPrecondition(
                    f"pipeline {spec.name!r} is archived; restore it to test its steps "
                    f"(legato restore {spec.name})",
                    reason="PIPELINE_ARCHIVED",
                    metadata={"pipeline": spec.name},
                )
            await self._check_agent(session, agent, tested, now)
            number = await pipeline_queries.find_test_version(session, pipeline.id, digest)
            if number is None:
                number = await pipeline_queries.lowest_version(session, pipeline.id) - 1
                await pipeline_queries.insert_version(
                    session,
                    pipeline_id=pipeline.id,
                    number=number,
                    spec=text,
                    content_hash=digest,
                    author=actor.name,
                    message=TEST_MESSAGE,
                    now=now,
                    rollback_of=None,
                )
            plan = await self._plans.get(session, pipeline.id, pipeline.name, number)
            trigger = TriggerSpec(kind=TEST_TRIGGER, details={"agent": agent, "step": step})
            run, steps = self._runs.add_run(session, plan, params, trigger, actor)
            for item in given:
                row = steps[item.step]
                output: dict[str, Any] = {"values": dict(item.values), "columns": item.columns}
                if item.table:
                    stored = await self._artifacts.put_given(
                        session, run_id=run.id, step=item.step, name=GIVEN_ARTIFACT, data=item.table
                    )
                    output["artifact_id"] = stored.id
                    output["rows"] = item.rows
                row.status = "succeeded"
                row.records_out = item.rows
                row.output = output
                row.start_time = row.end_time = now
                row.waiting_reason = "given by the test"
            steps[step].selector = {**required_labels(tested), AGENT_NAME_KEY: agent}
            await self._transitions.start_run(session, run, plan, effects, steps=steps)
            await requests.record_result(
                session, "TestStep", actor.request_id, {"run_id": run.id}, now, request
            )
            audit.record(
                session,
                now=now,
                actor=actor,
                action="TestStep",
                resource=f"runs/{run.id}",
                pipeline=pipeline.name,
                details={"pipeline": pipeline.name, "step": step, "agent": agent},
            )
            return run.id

        run_id = await requests.once(actor.request_id, lambda: self._runs.in_transaction(create))
        return await self._runs.get(run_id)

    async def _check_agent(
        self, session: AsyncSession, name: str, step: spec_pb2.Step, now: datetime
    ) -> None:
        cutoff = now - self._lease
        rows = (
            (
                await session.execute(
                    select(AgentRow).where(
                        AgentRow.state != "disconnected", AgentRow.last_seen_time >= cutoff
                    )
                )
            )
            .scalars()
            .all()
        )
        connected = {row.name: row for row in rows}
        row = connected.get(name)
        if row is None:
            shown = ", ".join(sorted(connected)) or "none"
            raise FailedPrecondition(
                f"agent {name!r} is not connected; connected agents: {shown}",
                reason="AGENT_NOT_CONNECTED",
                metadata={"agent": name},
            )
        if row.state == "draining":
            raise FailedPrecondition(
                f"agent {name!r} is draining and takes no new steps; pick another agent",
                reason="AGENT_DRAINING",
                metadata={"agent": name},
            )
        labels = dict(row.labels or {})
        missing = [
            (key, value)
            for key, value in sorted(required_labels(step).items())
            if labels.get(key) != value
        ]
        if missing:
            connections = [
                k.removeprefix(CONNECTION_LABEL)
                for k, _ in missing
                if k.startswith(CONNECTION_LABEL)
            ]
            other = [f"{k}={v}" for k, v in missing if not k.startswith(CONNECTION_LABEL)]
            why = []
            if connections:
                why.append("it has no connection " + ", ".join(repr(c) for c in connections))
            if other:
                why.append("it lacks the labels " + ", ".join(other) + " of agent_selector")
            raise FailedPrecondition(
                f"agent {name!r} cannot run step {step.name!r}: {'; '.join(why)}; a test "
                "runs only where the step could run in production",
                reason="AGENT_DOES_NOT_MATCH",
                metadata={"agent": name, "step": step.name},
            )


@dataclass(frozen=True)
class _Given:
    step: str
    table: bytes
    values: dict[str, Any]
    rows: int | None
    columns: list[dict[str, str]]


def _check_inputs(step: spec_pb2.Step, inputs: Sequence[GivenInput]) -> list[_Given]:
    needs = list(step.needs)
    seen: set[str] = set()
    checked: list[_Given] = []
    for index, item in enumerate(inputs):
        where = f"inputs[{index}]"
        if item.step not in needs:
            raise InvalidArgument(
                f"{where} gives step {item.step!r}, which step {step.name!r} does not need "
                f"(it needs {', '.join(repr(n) for n in needs) or 'no step'})",
                reason="INVALID_TEST_INPUT",
                violations=[FieldViolation(f"{where}.step", "not a step the tested step needs")],
            )
        if item.step in seen:
            raise InvalidArgument(
                f"{where} gives step {item.step!r} a second time",
                reason="INVALID_TEST_INPUT",
                violations=[FieldViolation(f"{where}.step", "given twice")],
            )
        seen.add(item.step)
        rows: int | None = None
        columns: list[dict[str, str]] = []
        if item.table:
            rows, columns = _table_facts(item.table, f"{where}.table")
        checked.append(_Given(item.step, item.table, dict(item.values), rows, columns))
    missing = [name for name in needs if name not in seen]
    if missing:
        shown = ", ".join(repr(n) for n in missing)
        raise InvalidArgument(
            f"step {step.name!r} needs {shown}, which the test does not give: add an input "
            "for each step it needs (a table, values, or both)",
            reason="TEST_INPUT_MISSING",
            violations=[FieldViolation("inputs", f"no input for {n!r}") for n in missing],
        )
    return checked
