"""A step's ``isolation``: what process its attempts run in on the agent.

``pooled`` (a reused worker) and ``process`` (a fresh fork per attempt, the default) both
apply to the kinds that run on an agent; a ``trigger`` step runs on the control plane, so
it has no process to choose and a set ``isolation`` is refused rather than ignored.
"""

from __future__ import annotations

from collections.abc import Iterator

from legato.v1 import spec_pb2

from .fields import check_enum, enum_name
from .violations import Violation

__all__ = ["check_isolation"]


def check_isolation(path: str, step: spec_pb2.Step) -> Iterator[Violation]:
    """Violations of ``step.isolation``, reported at ``path``."""
    if step.isolation == spec_pb2.ISOLATION_UNSPECIFIED:
        return
    problems = list(check_enum(path, spec_pb2.Isolation.DESCRIPTOR, step.isolation))
    if problems:
        yield from problems
        return
    if step.WhichOneof("kind") == "trigger":
        shown = enum_name(spec_pb2.Isolation.DESCRIPTOR, step.isolation)
        label = f"step '{step.name}'" if step.name else "this step"
        yield Violation(
            path,
            f"{label} is a trigger step, which runs on the control plane, so isolation "
            f"{shown} does not apply; remove isolation (it chooses the agent process of "
            "query, transform, function and export steps)",
        )
