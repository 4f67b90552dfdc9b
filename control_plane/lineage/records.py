"""What a run records: each step's lineage (reported by its agent, declared in its spec,
or its trigger), and the graph edges a finished run adds.

- ``query`` and ``export`` steps: the StepLineage their agent reported (the SQL's tables,
  the export's target).
- ``function`` and ``transform`` steps: their spec's ``inputs:``/``outputs:``, when they
  succeed (kind ``DATASET_KIND_DECLARED``).
- ``trigger`` steps: an edge from their pipeline to the pipeline they start.

Only steps that succeeded add edges: an edge is a data flow that happened."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from google.protobuf import json_format

from control_plane.lineage.names import dataset_node, parse_dataset, pipeline_node
from legato.v1 import lineage_pb2, spec_pb2

__all__ = [
    "READ",
    "TRIGGER",
    "WRITE",
    "Edge",
    "StepRecord",
    "declared_json",
    "declared_lineage",
    "edges_of",
    "from_json",
    "to_json",
]

READ, WRITE, TRIGGER = "read", "write", "trigger"
_DECLARING = frozenset({"function", "transform"})


@dataclass(frozen=True, order=True)
class Edge:
    source: str
    target: str
    kind: str
    step: str


@dataclass(frozen=True)
class StepRecord:
    """What the end of a run reads of one of its steps."""

    name: str
    kind: str
    status: str
    lineage: dict[str, Any] | None
    child_pipeline: str = ""
    """For a trigger step: the pipeline it starts."""


def to_json(lineage: lineage_pb2.StepLineage) -> dict[str, Any]:
    return json_format.MessageToDict(lineage)


def from_json(value: dict[str, Any] | None) -> lineage_pb2.StepLineage:
    lineage = lineage_pb2.StepLineage()
    if value:
        json_format.ParseDict(value, lineage, ignore_unknown_fields=True)
    return lineage


def declared_lineage(step: spec_pb2.Step) -> lineage_pb2.StepLineage | None:
    """A function or transform step's declared ``inputs``/``outputs`` (validated when the
    spec was applied); None for other kinds, or when it declares none."""
    if step.WhichOneof("kind") not in _DECLARING or not (step.inputs or step.outputs):
        return None

    def refs(texts: Iterable[str]) -> list[lineage_pb2.DatasetRef]:
        found = []
        for text in dict.fromkeys(texts):
            dataset = parse_dataset(text)
            found.append(
                lineage_pb2.DatasetRef(
                    namespace=dataset.namespace,
                    name=dataset.name,
                    kind=lineage_pb2.DATASET_KIND_DECLARED,
                )
            )
        return found

    return lineage_pb2.StepLineage(inputs=refs(step.inputs), outputs=refs(step.outputs))


def declared_json(step: spec_pb2.Step) -> dict[str, Any] | None:
    """:func:`declared_lineage` as the ``step_runs.lineage`` column holds it."""
    lineage = declared_lineage(step)
    return None if lineage is None else to_json(lineage)


def edges_of(pipeline: str, steps: Iterable[StepRecord]) -> list[Edge]:
    """The edges a finished run of ``pipeline`` adds, sorted (the upsert's lock order)
    and without duplicates."""
    here = pipeline_node(pipeline)
    edges: set[Edge] = set()
    for step in steps:
        if step.status != "succeeded":
            continue
        if step.kind == "trigger" and step.child_pipeline:
            edges.add(Edge(here, pipeline_node(step.child_pipeline), TRIGGER, step.name))
        if not step.lineage:
            continue
        lineage = from_json(step.lineage)
        for ref in lineage.inputs:
            edges.add(Edge(dataset_node(ref.namespace, ref.name), here, READ, step.name))
        for ref in lineage.outputs:
            edges.add(Edge(here, dataset_node(ref.namespace, ref.name), WRITE, step.name))
    return sorted(edges)
