"""Datasets' and nodes' text forms.

A dataset is written ``namespace.name``: the namespace is everything before the first
dot (a connection's name, ``webhook``, ``slack``, ``s3``, ...) and the name the rest
(``public.orders``, ``bucket/path``, ``https://hooks.example.com/in``). In the lineage
graph a dataset is the node ``dataset:<namespace>.<name>`` and a pipeline the node
``pipeline:<name>``."""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "DATASET_PREFIX",
    "EXAMPLE",
    "MAX_DATASET",
    "PIPELINE_PREFIX",
    "Dataset",
    "DatasetNameError",
    "dataset_node",
    "node_of",
    "parse_dataset",
    "pipeline_node",
]

DATASET_PREFIX = "dataset:"
PIPELINE_PREFIX = "pipeline:"
EXAMPLE = "warehouse.public.orders"
MAX_DATASET = 1000
"""Characters of a dataset's text form, at most."""

_NAMESPACE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_\-]*")
_BAD = re.compile(r"[\x00-\x1f\x7f]")


class DatasetNameError(ValueError):
    """A text that is not a dataset name; the message says why and how to write one."""


@dataclass(frozen=True, order=True)
class Dataset:
    namespace: str
    name: str

    @property
    def text(self) -> str:
        return f"{self.namespace}.{self.name}"

    @property
    def node(self) -> str:
        return dataset_node(self.namespace, self.name)


def parse_dataset(text: str) -> Dataset:
    """``warehouse.public.orders`` → Dataset("warehouse", "public.orders");
    DatasetNameError when ``text`` is not ``namespace.name``."""
    how = f"write it as namespace.name, e.g. {EXAMPLE}"
    if len(text) > MAX_DATASET:
        raise DatasetNameError(
            f"is longer than {MAX_DATASET} characters ({len(text)}); a dataset name is "
            f"namespace.name, e.g. {EXAMPLE}"
        )
    if _BAD.search(text) or text != text.strip():
        raise DatasetNameError(f"{text!r} has control characters or spaces around it; {how}")
    namespace, dot, name = text.partition(".")
    if not dot or not name or not namespace:
        raise DatasetNameError(f"{text!r} is not a dataset name: {how}")
    if not _NAMESPACE.fullmatch(namespace):
        raise DatasetNameError(
            f"{text!r} has the namespace {namespace!r}, which is not a name (letters, "
            f"digits, '_' and '-', starting with a letter or digit); {how}"
        )
    return Dataset(namespace, name)


def dataset_node(namespace: str, name: str) -> str:
    return f"{DATASET_PREFIX}{namespace}.{name}"


def pipeline_node(pipeline: str) -> str:
    return f"{PIPELINE_PREFIX}{pipeline}"


def node_of(node: str) -> tuple[str, str]:
    """``("dataset", "ns.name")`` or ``("pipeline", "name")`` of a node id."""
    if node.startswith(PIPELINE_PREFIX):
        return "pipeline", node.removeprefix(PIPELINE_PREFIX)
    return "dataset", node.removeprefix(DATASET_PREFIX)
