"""GetLineage's answer: the node asked about (a dataset's text form or a pipeline's name),
checked against what runs recorded, and the walk around it."""

from __future__ import annotations

import difflib
from collections.abc import Collection

from control_plane.errors import FieldViolation, InvalidArgument, NotFound
from control_plane.lineage.names import (
    DATASET_PREFIX,
    DatasetNameError,
    node_of,
    parse_dataset,
    pipeline_node,
)
from control_plane.lineage.walk import Graph, depth_of, walk
from control_plane.quoting import quote
from control_plane.store import lineage as store
from control_plane.store.db import Database
from control_plane.store.lineage import EdgeRow

__all__ = ["Lineage"]


class Lineage:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def around(
        self,
        *,
        dataset: str = "",
        pipeline: str = "",
        upstream: bool = True,
        downstream: bool = True,
        depth: int = 0,
    ) -> Graph:
        """The graph around ``dataset`` (``namespace.name``) or ``pipeline``: one read per
        hop level each way. InvalidArgument for a malformed dataset or neither given;
        NotFound, with the closest known names, for one that no run recorded."""
        async with self._db.read() as session:
            if dataset:
                try:
                    start = parse_dataset(dataset).node
                except DatasetNameError as error:
                    raise InvalidArgument(
                        f"dataset {error}",
                        violations=[FieldViolation("dataset", str(error))],
                        reason="INVALID_DATASET",
                    ) from None
                if not await store.node_exists(session, start):
                    namespace = dataset.partition(".")[0]
                    known = await store.known_nodes(session, f"{DATASET_PREFIX}{namespace}.")
                    if not known:
                        known = await store.known_nodes(session, DATASET_PREFIX)
                    names = [node_of(node)[1] for node in known]
                    raise NotFound(
                        f"no run recorded the dataset {quote(dataset)}{_hint(dataset, names)}",
                        reason="DATASET_NOT_FOUND",
                        metadata={"dataset": dataset},
                    )
            elif pipeline:
                start = pipeline_node(pipeline)
                if not await store.pipeline_exists(session, pipeline):
                    names = await store.pipeline_names(session)
                    raise NotFound(
                        f"pipeline {quote(pipeline)} does not exist{_hint(pipeline, names)}",
                        reason="PIPELINE_NOT_FOUND",
                        metadata={"pipeline": pipeline},
                    )
            else:
                raise InvalidArgument(
                    "give a dataset (namespace.name, e.g. warehouse.public.orders) or a pipeline",
                    violations=[
                        FieldViolation("target", "one of dataset and pipeline is required")
                    ],
                )

            async def fetch(nodes: Collection[str], going_up: bool) -> list[EdgeRow]:
                return await store.edges_at(session, nodes, upstream=going_up)

            return await walk(
                start, fetch, upstream=upstream, downstream=downstream, depth=depth_of(depth)
            )


def _hint(asked: str, known: list[str]) -> str:
    close = difflib.get_close_matches(asked, known, n=1, cutoff=0.6)
    if close:
        return f" — did you mean {quote(close[0], 200)}?"
    if known:
        return "; `legato lineage --pipeline NAME` shows what a pipeline's runs recorded"
    return (
        "; no run has recorded lineage yet: it is recorded as runs end (query, export "
        "and trigger steps, and steps that declare inputs/outputs)"
    )
