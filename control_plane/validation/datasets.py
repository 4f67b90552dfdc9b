"""A step's ``inputs``/``outputs``: the datasets a function or transform step declares it
reads and writes, for lineage, each ``namespace.name``. Query, export and trigger steps
may not declare any: their datasets come from their SQL, their target or the pipeline they
start, and a declaration beside those would be ignored or contradict them."""

from __future__ import annotations

from collections.abc import Iterator

from control_plane.lineage.names import DatasetNameError, parse_dataset
from legato.v1 import spec_pb2

from .violations import Violation, index, join

__all__ = ["MAX_DATASETS", "check_datasets"]

MAX_DATASETS = 100
"""Datasets one step may declare in each of ``inputs`` and ``outputs``."""
_DECLARING = ("function", "transform")
_WHY = {
    "query": "its SQL (the tables it reads and writes are parsed from it)",
    "export": "its target",
    "trigger": "the pipeline it starts",
}


def check_datasets(path: str, step: spec_pb2.Step) -> Iterator[Violation]:
    kind = step.WhichOneof("kind") or ""
    for name in ("inputs", "outputs"):
        declared = list(getattr(step, name))
        if not declared:
            continue
        field_path = join(path, name)
        if kind not in _DECLARING and kind:
            label = f"step '{step.name}'" if step.name else "this step"
            yield Violation(
                field_path,
                f"{label} is a {kind} step, whose datasets come from {_WHY[kind]}; remove "
                f"{name} (it declares the datasets of function and transform steps)",
            )
            continue
        if len(declared) > MAX_DATASETS:
            yield Violation(
                field_path,
                f"{len(declared)} datasets; a step declares at most {MAX_DATASETS} {name}",
            )
            continue
        seen: dict[str, int] = {}
        for position, text in enumerate(declared):
            item = index(field_path, position)
            try:
                parse_dataset(text)
            except DatasetNameError as error:
                yield Violation(item, str(error))
                continue
            if text in seen:
                yield Violation(
                    item,
                    f"{text!r} is already {index(name, seen[text])}; name each dataset once",
                )
            seen.setdefault(text, position)
