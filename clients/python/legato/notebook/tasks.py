"""The task a notebook runs for one step: the same ``TaskAssignment`` the control plane
sends an agent (params checked and defaulted, query parameters and templates evaluated,
limits from the spec), turned into the runner's Task the way the agent turns it
(:func:`executor.tasks.to_task`).

The control plane's rules are reused, not copied: ``control_plane.execution.params``
(parameters), ``control_plane.execution.bindings`` (``resolved`` values) and
``control_plane.execution.plans`` (limits). They import without a database; like the
executor they are imported inside the functions, so ``import legato`` stays slim."""

from __future__ import annotations

import difflib
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from google.protobuf import json_format, struct_pb2

from legato.notebook.errors import NotebookError
from legato.spec.connections import connection_variable, connections_of
from legato.v1 import agent_pb2, run_pb2, spec_pb2

if TYPE_CHECKING:
    from executor.runner import Task

__all__ = [
    "Upstream",
    "build_task",
    "check_params",
    "limits_of",
    "step_connections",
    "upstream_of",
]

TEST_TRIGGER = "test"


@dataclass(frozen=True)
class Upstream:
    """What an upstream step produced, as the notebook gives it: a ``pyarrow.Table`` (or
    None) and its values."""

    step: str
    table: Any
    values: dict[str, Any]

    @property
    def rows(self) -> int | None:
        return None if self.table is None else int(self.table.num_rows)


def did_you_mean(value: str, options: list[str]) -> str:
    close = difflib.get_close_matches(value, options, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _as_output(value: Any, where: str) -> tuple[Any, dict[str, Any]]:
    """A DataFrame, a list of dicts or a dict of values as a step's output (table,
    values), with the rules a step's ``result`` follows."""
    from executor.kinds.base import StepError
    from executor.kinds.output import to_output

    if isinstance(value, Upstream):
        return value.table, dict(value.values)
    try:
        return to_output(value, source=where)
    except StepError as exc:
        raise NotebookError(exc.message) from None


def upstream_of(
    spec: spec_pb2.PipelineSpec,
    step: spec_pb2.Step,
    data: Any = None,
    inputs: Mapping[str, Any] | None = None,
) -> list[Upstream]:
    """The outputs of the steps ``step`` needs: ``data`` for its only one, or ``inputs``
    by name. Every step it needs must be given, and nothing else."""
    needs = list(step.needs)
    given = dict(inputs or {})
    if data is not None:
        if len(needs) != 1:
            what = "needs no step" if not needs else f"needs {len(needs)} steps ({needs})"
            raise NotebookError(
                f"step {step.name!r} {what}, so data= has no upstream to stand for; "
                + ("call run() without data" if not needs else "pass inputs={name: frame, ...}")
            )
        if needs[0] in given:
            raise NotebookError(f"data= and inputs[{needs[0]!r}] both give step {needs[0]!r}")
        given[needs[0]] = data
    steps = [s.name for s in spec.steps]
    for name in given:
        if name not in needs:
            if name not in steps:
                hint = did_you_mean(name, steps)
                raise NotebookError(
                    f"inputs names {name!r}, which is not a step of pipeline {spec.name!r}{hint}"
                )
            raise NotebookError(
                f"inputs names {name!r}, which step {step.name!r} does not need "
                f"(it needs {needs or 'no step'})"
            )
    missing = [name for name in needs if name not in given]
    if missing:
        raise NotebookError(
            f"step {step.name!r} needs {', '.join(repr(m) for m in missing)}: give "
            + (
                "its output as data=frame"
                if len(needs) == 1
                else "each upstream's output as inputs={name: frame or values, ...}"
            )
        )
    result = []
    for name in needs:
        table, values = _as_output(given[name], f"the input of {name!r}")
        result.append(Upstream(name, table, values))
    return result


def check_params(spec: spec_pb2.PipelineSpec, params: Mapping[str, Any] | None) -> dict[str, Any]:
    """``params`` checked against the spec's and defaulted, as the server does for a run."""
    from control_plane.errors import InvalidArgument
    from control_plane.execution.params import resolve_params

    given = struct_pb2.Struct()
    try:
        json_format.ParseDict(_jsonable(dict(params or {})), given)
    except json_format.ParseError as exc:
        raise NotebookError(f"params must be JSON values: {exc}") from None
    try:
        return resolve_params(spec, given)
    except InvalidArgument as exc:
        problems = "; ".join(f"{v.field}: {v.description}" for v in exc.violations)
        raise NotebookError(problems or exc.message) from None


def _jsonable(value: Any) -> Any:
    """Dates and times as the ISO strings the CLI and the SDK send."""
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    return value


def limits_of(
    spec: spec_pb2.PipelineSpec,
    step: str,
    timeout: float | str | None = None,
    memory: int | str | None = None,
) -> tuple[float | None, int | None]:
    """The step's timeout (seconds) and memory limit (bytes), from the spec as the control
    plane reads them, or as overridden (``"30s"``, ``90``, ``"256Mi"``, bytes)."""
    from control_plane.execution.plans import Plan
    from control_plane.execution.resolver import RunPlan
    from legato.spec.units import parse_duration, parse_memory

    plan = Plan(0, spec.name, 0, spec, RunPlan(spec), {s.name: s for s in spec.steps})
    seconds = plan.timeout(step)
    limit = plan.memory_bytes(step)
    try:
        if timeout is not None:
            seconds = parse_duration(timeout) if isinstance(timeout, str) else float(timeout)
        if memory is not None:
            limit = parse_memory(memory) if isinstance(memory, str) else int(memory)
    except ValueError as exc:
        raise NotebookError(f"timeout= or memory= cannot be used: {exc}") from None
    if seconds is not None and seconds <= 0:
        raise NotebookError(f"timeout={timeout!r} must be more than 0 seconds")
    if limit is not None and limit <= 0:
        raise NotebookError(f"memory={memory!r} must be more than 0 bytes")
    return seconds, limit


def step_connections(
    step: spec_pb2.Step, given: Mapping[str, str] | None, env: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The connections and secrets the step names: from ``given``, else from the
    ``LEGATO_CONNECTION_<NAME>`` variables an agent reads."""
    from executor.connections import ConnectionsError, load_connections

    try:
        configured = load_connections(None, env=os.environ if env is None else env)
    except ConnectionsError as exc:
        raise NotebookError(str(exc)) from None
    configured.update(given or {})
    found: dict[str, str] = {}
    for name in connections_of(step):
        if name not in configured:
            raise NotebookError(
                f"step {step.name!r} uses connection {name!r}, which this notebook does not "
                f"have: pass connections={{{name!r}: 'URL'}}, set {connection_variable(name)}, "
                "or run it on an agent that has it with run(on='AGENT')"
            )
        found[name] = configured[name]
    return found


def resolved_for(
    spec: spec_pb2.PipelineSpec,
    step: spec_pb2.Step,
    params: dict[str, Any],
    upstream: Mapping[str, Any],
    run_id: str,
) -> dict[str, Any]:
    """A query's parameters and a Slack text, evaluated as the control plane evaluates
    them; ``upstream`` maps step names to :class:`StepFacts`."""
    from control_plane.execution.bindings import needs_resolution, resolved_values

    if not needs_resolution(step):
        return {}
    return resolved_values(step, upstream, run_context(spec, params, run_id))


def run_context(spec: spec_pb2.PipelineSpec, params: Mapping[str, Any], run_id: str) -> Any:
    """The control plane's RunContext of a local test run (what ``when`` conditions and
    step parameters see as ``params`` and ``run``)."""
    from control_plane.execution.resolver import RunContext

    return RunContext(
        params=params,
        run={
            "id": run_id,
            "trigger": TEST_TRIGGER,
            "pipeline": spec.name,
            "version": 0,
            "logical_time": None,
        },
    )


def build_task(
    spec: spec_pb2.PipelineSpec,
    step: spec_pb2.Step,
    *,
    params: dict[str, Any],
    upstream: list[Upstream],
    resolved: dict[str, Any],
    timeout: float | None,
    memory_bytes: int | None,
    connections: dict[str, str],
    workdir: Path,
    run_id: str,
) -> Task:
    """The runner's Task, through the same conversion the agent applies to the control
    plane's assignment; the upstream tables are written to ``workdir/inputs/``."""
    from executor.kinds.tables import write_table
    from executor.tasks import to_task

    assignment = agent_pb2.TaskAssignment(
        lease_id=f"notebook-{uuid.uuid4().hex[:12]}",
        run_id=run_id,
        pipeline=spec.name,
        step_name=step.name,
        attempt=1,
        step=step,
        memory_bytes=memory_bytes or 0,
    )
    json_format.ParseDict(params, assignment.params)
    json_format.ParseDict(resolved, assignment.resolved)
    json_format.ParseDict(
        {"run_id": run_id, "pipeline": spec.name, "trigger": TEST_TRIGGER}, assignment.run_context
    )
    if timeout is not None:
        assignment.timeout.FromNanoseconds(int(timeout * 1e9))
    tables: dict[str, Path] = {}
    for item in upstream:
        message = assignment.inputs.add(step=item.step, status=run_pb2.STEP_STATUS_SUCCEEDED)
        json_format.ParseDict(item.values, message.values)
        if item.table is not None:
            message.rows = item.rows or 0
            inputs = workdir / "inputs"
            inputs.mkdir(parents=True, exist_ok=True)
            path = inputs / f"{item.step}.arrow"
            write_table(item.table, path)
            tables[item.step] = path
    return to_task(assignment, workdir, tables, connections)


def new_run_id() -> str:
    return f"notebook-{uuid.uuid4().hex[:12]}"
