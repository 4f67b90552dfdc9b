"""Steps run here: one (``step.run()``) or the whole DAG (``p.test()``).

``p.test()`` decides the steps as the control plane decides a run's: the resolver
(:class:`control_plane.execution.resolver.RunPlan`) takes each step's trigger rule and
``when`` over the params, the ``run`` and the upstream results, and says which steps are
ready, skipped or upstream_failed. Ready steps run one at a time, in dependency order,
each in its own child process under its limits. Beyond that:

- ``inputs`` stand for the outputs of the steps they name: those steps do not run
  (status ``given``; e.g. the extract query, fed a small frame);
- ``trigger`` steps are not run (they start another pipeline on the control plane):
  ``skipped``, with the reason;
- a step that names a connection or secret this notebook does not have (``connections=``
  or ``LEGATO_CONNECTION_<NAME>``) — an export to a warehouse, a webhook, Slack — is
  ``skipped`` with the reason, so a test never writes to an external system unless the
  connection is given on purpose; what is downstream follows its trigger rule;
- a failed step does not stop the test: it is recorded with the agent's message, and
  its children are decided by their trigger rules (upstream_failed by default)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from legato.notebook.errors import NotebookError
from legato.notebook.local import LocalRunner, workdir
from legato.notebook.results import StepResult, TestResult
from legato.notebook.tasks import (
    Upstream,
    build_task,
    check_params,
    did_you_mean,
    limits_of,
    new_run_id,
    resolved_for,
    run_context,
    step_connections,
    upstream_of,
)

if TYPE_CHECKING:
    from control_plane.execution.resolver import StepFacts
    from legato.notebook.pipelines import Pipeline, Step

__all__ = ["run_dag", "run_one"]

GIVEN = "given"


def _facts(upstream: list[Upstream]) -> dict[str, StepFacts]:
    from control_plane.execution.resolver import StepFacts

    return {
        item.step: StepFacts(status="succeeded", records=item.rows, outputs=item.values)
        for item in upstream
    }


def run_one(
    step: Step,
    *,
    data: Any,
    inputs: Mapping[str, Any] | None,
    params: Mapping[str, Any] | None,
    connections: Mapping[str, str] | None,
    timeout: float | str | None,
    memory: int | str | None,
) -> StepResult:
    pipeline = step.pipeline
    spec = pipeline.spec
    upstream = upstream_of(spec, step.spec, data, inputs)
    values = check_params(spec, params)
    seconds, limit = limits_of(spec, step.name, timeout, memory)
    named = step_connections(step.spec, connections)
    run_id = new_run_id()
    resolved = resolved_for(spec, step.spec, values, _facts(upstream), run_id)
    with LocalRunner(module_path=pipeline.module_path()) as runner:
        return _run_task(
            runner, spec, step.spec, values, upstream, resolved, (seconds, limit), named, run_id
        )


def run_dag(
    pipeline: Pipeline,
    *,
    inputs: Mapping[str, Any] | None,
    params: Mapping[str, Any] | None,
    connections: Mapping[str, str] | None,
) -> TestResult:
    from control_plane.execution.resolver import RunPlan, StepFacts, run_outcome

    spec = pipeline.spec
    given = dict(inputs or {})
    for name in given:
        if name not in pipeline.steps:
            raise NotebookError(
                f"inputs names {name!r}, which is not a step of pipeline {pipeline.name!r}"
                f"{did_you_mean(name, pipeline.steps)}"
            )
    values = check_params(spec, params)
    run_id = new_run_id()
    plan = RunPlan(spec)
    context = run_context(spec, values, run_id)
    facts: dict[str, StepFacts] = {name: StepFacts(status="pending") for name in plan.order}
    results: dict[str, StepResult] = {}
    outputs: dict[str, Upstream] = {}
    for name, value in given.items():
        item = upstream_of(spec, _fed(name), None, {name: value})[0]
        outputs[name] = item
        facts[name] = StepFacts(status="succeeded", records=item.rows, outputs=item.values)
        results[name] = StepResult(
            step=name,
            status=GIVEN,
            data=None if item.table is None else item.table.to_pandas(),
            values=dict(item.values),
            records_out=item.rows,
        )
    steps = {s.name: s for s in spec.steps}
    ready: list[str] = []

    def apply(decisions: list[Any]) -> None:
        for decision in decisions:
            if decision.status == "ready":
                ready.append(decision.step)
                continue
            facts[decision.step] = StepFacts(status=decision.status)
            results[decision.step] = StepResult(
                step=decision.step, status=decision.status, error=decision.reason
            )

    apply(plan.start(facts, context))
    with LocalRunner(module_path=pipeline.module_path()) as runner:
        while ready:
            ready.sort(key=plan.position)
            name = ready.pop(0)
            result = _run_in_dag(
                runner, pipeline, steps[name], values, outputs, facts, connections, run_id
            )
            results[name] = result
            if result.status == "succeeded":
                table = None
                if result.data is not None:
                    from executor.kinds.output import to_output

                    table, _ = to_output(result.data, source=f"the output of {name!r}")
                outputs[name] = Upstream(name, table, dict(result.values))
            facts[name] = StepFacts(
                status=result.status, records=result.records_out, outputs=dict(result.values)
            )
            apply(plan.after([name], facts, context))
    ordered = {name: results[name] for name in plan.order if name in results}
    return TestResult(
        pipeline=spec.name,
        status=run_outcome({f.status for f in facts.values()}) or "failed",
        steps=ordered,
    )


def _fed(name: str) -> Any:
    """A stand-in step that needs ``name``, to read a given output with the rules of
    ``upstream_of``."""
    from legato.v1 import spec_pb2

    return spec_pb2.Step(name=f"<inputs[{name!r}]>", needs=[name])


def _run_in_dag(
    runner: LocalRunner,
    pipeline: Pipeline,
    step: Any,
    params: dict[str, Any],
    outputs: Mapping[str, Upstream],
    facts: Mapping[str, StepFacts],
    connections: Mapping[str, str] | None,
    run_id: str,
) -> StepResult:
    name = step.name
    kind = step.WhichOneof("kind") or ""
    if kind == "trigger":
        return StepResult(
            step=name,
            status="skipped",
            error=f"trigger steps are not run in a test (it would start pipeline "
            f"{step.trigger.pipeline!r} on the control plane)",
        )
    try:
        named = step_connections(step, connections)
    except NotebookError as exc:
        return StepResult(step=name, status="skipped", error=f"not run: {exc}")
    spec = pipeline.spec
    upstream = [outputs[parent] for parent in step.needs if parent in outputs]
    resolved = resolved_for(spec, step, params, facts, run_id)
    limits = limits_of(spec, name)
    return _run_task(runner, spec, step, params, upstream, resolved, limits, named, run_id)


def _run_task(
    runner: LocalRunner,
    spec: Any,
    step: Any,
    params: dict[str, Any],
    upstream: list[Upstream],
    resolved: dict[str, Any],
    limits: tuple[float | None, int | None],
    connections: dict[str, str],
    run_id: str,
) -> StepResult:
    """Build the agent's task for ``step`` in a work directory of its own and run it."""
    seconds, limit = limits
    with workdir() as directory:
        task = build_task(
            spec,
            step,
            params=params,
            upstream=upstream,
            resolved=resolved,
            timeout=seconds,
            memory_bytes=limit,
            connections=connections,
            workdir=Path(directory),
            run_id=run_id,
        )
        return runner.run(task)
