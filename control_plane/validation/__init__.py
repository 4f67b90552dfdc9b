"""Validation of a pipeline spec before the control plane saves it.

:func:`validate_spec` returns every problem it finds as a :class:`Violation`: a field path
in the syntax of :mod:`.violations` (``steps[2].needs[0]``, ``params.days.default``) and a
description that names the value and says what to do. Violations come in document order:
the spec's fields in proto field order (name, labels, params, schedule, triggers, limits,
retry, notifications, steps), list items by index, map entries by key, and the fields of
each message in proto field order. An empty list means the spec is valid.

The DAG helpers other parts of the control plane need live in :mod:`.dag`
(:func:`topological_order`, :func:`ancestors`, :func:`descendants`).
"""

from __future__ import annotations

from collections.abc import Iterator

from legato.v1 import spec_pb2

from .dag import CycleError, ancestors, descendants, topological_order
from .expectations import check_duration_expectation
from .fields import check_label_keys, check_pipeline_name
from .limits import check_limits, check_retry
from .notifications import check_notifications
from .params import check_params
from .schedule import check_schedule
from .steps import check_steps
from .triggers import check_triggers
from .violations import Violation

__all__ = [
    "CycleError",
    "Violation",
    "ancestors",
    "descendants",
    "topological_order",
    "validate_spec",
]


def validate_spec(spec: spec_pb2.PipelineSpec) -> list[Violation]:
    """Every violation in ``spec``, in document order; ``[]`` when it is valid."""
    return list(_violations(spec))


def _violations(spec: spec_pb2.PipelineSpec) -> Iterator[Violation]:
    yield from check_pipeline_name("name", spec.name)
    yield from check_label_keys("labels", spec.labels)
    yield from check_params(spec)
    if spec.HasField("schedule"):
        yield from check_schedule(spec)
    yield from check_triggers(spec)
    if spec.HasField("limits"):
        yield from check_limits("limits", spec.limits)
    if spec.HasField("retry"):
        yield from check_retry("retry", spec.retry)
    yield from check_notifications(spec)
    if spec.expect.HasField("duration"):
        yield from check_duration_expectation("expect.duration", spec.expect.duration)
    yield from check_steps(spec)
