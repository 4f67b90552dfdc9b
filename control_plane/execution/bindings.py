"""What the control plane evaluates for a step before an agent runs it, and where it runs.

- ``resolved_values``: a query's ``parameters`` (expressions) and a Slack export's ``text``
  (a template), over the run's params, its upstream steps' results and the run itself —
  the names a ``when`` condition reads. A value that cannot be evaluated is reported as
  ``{"error": ...}``; the agent fails the attempt with it, so the user reads why.
- ``required_labels``: the agent labels a step needs besides its ``agent_selector``: one
  ``connection/<name>`` per connection or secret it names, so the step reaches only agents
  that hold them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from control_plane.execution.resolver import RunContext, StepFacts
from control_plane.pipelines.expressions import ExpressionError, parse_expression
from control_plane.pipelines.templates import TemplateError, parse_template
from control_plane.validation.conditions import STEP_ROOTS
from legato.spec.connections import connection_label, connections_of
from legato.v1 import spec_pb2

if TYPE_CHECKING:
    # Annotations only: legato.notebook evaluates a step's values with this module
    # without SQLAlchemy's asyncio extension installed.
    from control_plane.store.models import RunRow
    from control_plane.store.steps import Step

__all__ = [
    "UnresolvedError",
    "evaluate_all",
    "expression_names",
    "needs_resolution",
    "required_labels",
    "resolved_values",
    "run_context",
    "step_facts",
]


def required_labels(step: spec_pb2.Step) -> dict[str, str]:
    """The step's selector: its ``agent_selector`` and one label per connection it uses."""
    labels = dict(step.agent_selector)
    for name in connections_of(step):
        labels[connection_label(name)] = "true"
    return labels


def step_facts(steps: Mapping[str, Step]) -> dict[str, StepFacts]:
    """What expressions and the resolver know of a run's steps, from their rows."""
    return {
        name: StepFacts(
            status=row.status,
            records=row.records_out,
            outputs=dict((row.output or {}).get("values") or {}),
        )
        for name, row in steps.items()
    }


def run_context(run: RunRow) -> RunContext:
    """The run-wide names expressions read: ``params`` and ``run``."""
    return RunContext(
        params=dict(run.params or {}),
        run={
            "id": run.id,
            "trigger": run.trigger_kind,
            "pipeline": run.pipeline,
            "version": run.version,
            "logical_time": run.logical_time.isoformat() if run.logical_time else None,
        },
    )


def needs_resolution(step: spec_pb2.Step) -> bool:
    """Whether ``resolved_values`` has anything to evaluate for the step."""
    kind = step.WhichOneof("kind")
    if kind == "query":
        return bool(step.query.parameters)
    return kind == "export" and bool(step.export.slack.text)


def resolved_values(
    step: spec_pb2.Step, facts: Mapping[str, StepFacts], context: RunContext
) -> dict[str, Any]:
    kind = step.WhichOneof("kind")
    names = expression_names(facts, context)
    try:
        if kind == "query" and step.query.parameters:
            return {"parameters": evaluate_all(step.query.parameters, names, "query parameter")}
        if kind == "export" and step.export.WhichOneof("target") == "slack":
            text = step.export.slack.text
            if text:
                return {"text": _render(text, names)}
    except UnresolvedError as exc:
        return {"error": str(exc)}
    return {}


class UnresolvedError(Exception):
    """An expression or template of a step that could not be evaluated; says which."""


def expression_names(facts: Mapping[str, StepFacts], context: RunContext) -> dict[str, Any]:
    """The names a step's expressions read: ``params``, ``steps`` and ``run``."""
    steps = {
        name: {"status": fact.status, "records": fact.records, "outputs": dict(fact.outputs)}
        for name, fact in facts.items()
    }
    return {"params": dict(context.params), "steps": steps, "run": dict(context.run)}


def evaluate_all(
    expressions: Mapping[str, str], names: Mapping[str, Any], label: str
) -> dict[str, Any]:
    """Each of ``expressions`` (name → expression) evaluated; ``label`` names them in the
    error (``query parameter``, ``param``)."""
    values: dict[str, Any] = {}
    for name in sorted(expressions):
        text = expressions[name]
        try:
            values[name] = parse_expression(text, allowed_roots=STEP_ROOTS).evaluate(names)
        except ExpressionError as exc:
            raise UnresolvedError(
                f"{label} '{name}' ({text}) could not be evaluated: {exc}"
            ) from None
        except Exception as exc:  # a user's expression must not stop the bookkeeping
            raise UnresolvedError(
                f"{label} '{name}' ({text}) could not be evaluated: {type(exc).__name__}: {exc}"
            ) from None
    return values


def _render(text: str, names: dict[str, Any]) -> str:
    try:
        return parse_template(text, allowed_roots=STEP_ROOTS).render(names)
    except TemplateError as exc:
        raise UnresolvedError(f"the Slack text could not be filled in: {exc}") from None
