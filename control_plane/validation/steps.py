"""Steps: names, kinds, needs (with cycles), conditions and per-step settings."""

from __future__ import annotations

import re
from collections.abc import Iterator

from legato.v1 import spec_pb2

from .conditions import StepScope, check_step_expression, unknown_step
from .dag import Cycle, StepGraph
from .datasets import check_datasets
from .expectations import check_step_expectations
from .fields import (
    check_duration,
    check_enum,
    check_label_keys,
    check_memory,
    pipeline_label,
)
from .isolation import check_isolation
from .limits import MAX_STEP_TIMEOUT, check_retry
from .step_kinds import check_kind
from .violations import Violation, index, join

__all__ = ["STEP_NAME", "check_steps"]

STEP_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,62}")


def check_steps(spec: spec_pb2.PipelineSpec) -> Iterator[Violation]:
    if not spec.steps:
        yield Violation("steps", f"{pipeline_label(spec.name)} has no steps; add at least one")
        return
    graph = StepGraph.of(spec)
    cycles = {(cycle.step, cycle.need): cycle for cycle in graph.cycles}
    first_use: dict[str, int] = {}
    for position, step in enumerate(spec.steps):
        path = index("steps", position)
        yield from _check_name(path, step.name, first_use.get(step.name))
        first_use.setdefault(step.name, position)
        scope = StepScope(
            pipeline=spec.name,
            label=f"'{step.name}'" if step.name else path,
            graph=graph,
            position=position,
        )
        yield from check_kind(path, step, scope)
        yield from _check_needs(path, step, scope, cycles)
        if step.when:
            yield from check_step_expression(join(path, "when"), step.when, scope)
        yield from check_enum(
            join(path, "trigger_rule"), spec_pb2.TriggerRule.DESCRIPTOR, step.trigger_rule
        )
        yield from check_label_keys(join(path, "agent_selector"), step.agent_selector)
        if step.HasField("retry"):
            yield from check_retry(join(path, "retry"), step.retry)
        if step.HasField("timeout"):
            yield from check_duration(join(path, "timeout"), step.timeout, maximum=MAX_STEP_TIMEOUT)
        yield from check_memory(join(path, "memory"), step.memory)
        yield from check_isolation(join(path, "isolation"), step)
        if step.HasField("expect"):
            yield from check_step_expectations(path, step)
        yield from check_datasets(path, step)


def _check_name(path: str, name: str, used_at: int | None) -> Iterator[Violation]:
    name_path = join(path, "name")
    if not name:
        yield Violation(name_path, "step has no name; set a name of letters, digits, '-' and '_'")
    elif not STEP_NAME.fullmatch(name):
        yield Violation(
            name_path,
            f"'{name}' is not a valid step name; use 1-63 letters, digits, '-' and '_', "
            "starting with a letter or '_'",
        )
    elif used_at is not None:
        yield Violation(
            name_path,
            f"step name '{name}' is already used by steps[{used_at}]; step names must be unique",
        )


def _check_needs(
    path: str, step: spec_pb2.Step, scope: StepScope, cycles: dict[tuple[int, int], Cycle]
) -> Iterator[Violation]:
    needs = list(step.needs)
    first: dict[str, int] = {}
    for need_position, need in enumerate(needs):
        need_path = index(join(path, "needs"), need_position)
        first.setdefault(need, need_position)
        cycle = cycles.get((scope.position, need_position))
        if not need:
            yield Violation(need_path, "needs entry is empty; name a step of the pipeline")
        elif need == step.name:
            yield Violation(
                need_path, f"dependency cycle: {need} → {need}; a step cannot need itself"
            )
        elif need not in scope.graph.known:
            yield Violation(need_path, unknown_step(need, scope.steps, scope.pipeline))
        elif first[need] != need_position:
            yield Violation(
                need_path,
                f"'{need}' is listed twice in needs (first at needs[{first[need]}]); "
                "remove the repeat",
            )
        elif cycle is not None:
            yield Violation(need_path, f"{cycle.describe()}; remove one of these needs to break it")
