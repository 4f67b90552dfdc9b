"""Expressions inside a step (``when``, query parameters, trigger params) and templates (a
Slack export's text): they must parse, and every ``steps.<name>`` they read must be a step
upstream of the one they belong to."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from control_plane.pipelines.expressions import ExpressionError, parse_expression
from control_plane.pipelines.templates import TemplateError, parse_template

from .dag import StepGraph
from .fields import did_you_mean, pipeline_label, quote_list
from .violations import Violation

__all__ = [
    "STEP_ROOTS",
    "StepScope",
    "check_step_expression",
    "check_step_template",
    "unknown_step",
]

STEP_ROOTS = ("params", "steps", "run")


@dataclass(frozen=True)
class StepScope:
    """What an expression of one step may refer to."""

    pipeline: str
    label: str  # the step, as messages name it: 'load' or steps[3]
    graph: StepGraph
    position: int

    @property
    def steps(self) -> tuple[str, ...]:
        """Every step name of the pipeline."""
        return self.graph.names

    def is_upstream(self, name: str) -> bool:
        """Whether this step needs step ``name``, directly or transitively."""
        return self.graph.is_upstream(name, self.position)


def unknown_step(name: str, steps: Sequence[str], pipeline: str) -> str:
    """The message for a reference to a step that does not exist."""
    hint = did_you_mean(name, steps)
    if not hint:
        hint = f"; its steps are {quote_list(step for step in steps if step)}"
    return f"'{name}' is not a step of {pipeline_label(pipeline)}{hint}"


def check_step_expression(path: str, text: str, scope: StepScope) -> Iterator[Violation]:
    try:
        expression = parse_expression(text, allowed_roots=STEP_ROOTS)
    except ExpressionError as exc:
        yield Violation(path, str(exc))
        return
    yield from _check_references(path, expression.step_references(), scope)


def check_step_template(path: str, text: str, scope: StepScope) -> Iterator[Violation]:
    try:
        template = parse_template(text, allowed_roots=STEP_ROOTS)
    except TemplateError as exc:
        yield Violation(path, str(exc))
        return
    yield from _check_references(path, template.step_references(), scope)


def _check_references(
    path: str, references: frozenset[str], scope: StepScope
) -> Iterator[Violation]:
    for name in sorted(references):
        if scope.is_upstream(name):
            continue
        if name not in scope.steps:
            yield Violation(path, unknown_step(name, scope.steps, scope.pipeline))
        else:
            yield Violation(
                path, f"'{name}' is not upstream of step {scope.label}; add it to needs"
            )
