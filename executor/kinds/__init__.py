"""Step kinds that run on an agent, one module each, found by name in :data:`KINDS`.

A kind is a :class:`StepKind`: a ``name`` (the field name of its message in the step's
``kind`` oneof) and ``run(config, ctx) -> StepResult``, called in the attempt's child
process. Adding a kind is one module and one line below.
"""

from __future__ import annotations

from executor.kinds.base import StepContext, StepError, StepKind, StepResult, Upstream
from executor.kinds.export import ExportKind
from executor.kinds.function import FunctionKind
from executor.kinds.query import QueryKind
from executor.kinds.transform import TransformKind

__all__ = ["KINDS", "StepContext", "StepError", "StepKind", "StepResult", "Upstream"]

KINDS: dict[str, StepKind] = {
    kind.name: kind
    for kind in (
        QueryKind(),
        TransformKind(),
        FunctionKind(),
        ExportKind(),
    )
}
