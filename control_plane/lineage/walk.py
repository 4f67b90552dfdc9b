"""The walk of the lineage graph from one node: breadth first, one read per hop level
(``WHERE target IN (frontier)`` upstream, ``source IN`` downstream), up to a depth.

Distances count hops from the node asked about, negative upstream. A node reached both
ways (a cycle through the start) keeps the nearer distance (upstream's on a tie). The
walk reads one level beyond ``depth`` to tell whether it was cut short (``truncated``)
and drops what it found there."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Iterable
from dataclasses import dataclass, field
from typing import Protocol

__all__ = ["DEFAULT_DEPTH", "MAX_DEPTH", "Graph", "depth_of", "walk"]

DEFAULT_DEPTH = 10
MAX_DEPTH = 50


class EdgeLike(Protocol):
    @property
    def source(self) -> str: ...
    @property
    def target(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def pipeline(self) -> str: ...
    @property
    def step(self) -> str: ...


Fetch = Callable[[Collection[str], bool], Awaitable[Iterable[EdgeLike]]]
"""``fetch(nodes, upstream)``: the edges into (upstream) or out of ``nodes``."""


@dataclass
class Graph:
    start: str
    distances: dict[str, int] = field(default_factory=dict)
    edges: list[EdgeLike] = field(default_factory=list)
    truncated: bool = False

    def nodes(self) -> list[tuple[str, int]]:
        """The start first, then by distance from it (upstream before downstream at the
        same distance), then by id."""
        return sorted(
            self.distances.items(),
            key=lambda item: (item[0] != self.start, abs(item[1]), item[1] > 0, item[0]),
        )


def depth_of(asked: int) -> int:
    """The proto's rule: 0 means 10, above 50 is read as 50."""
    if asked <= 0:
        return DEFAULT_DEPTH
    return min(asked, MAX_DEPTH)


async def walk(start: str, fetch: Fetch, *, upstream: bool, downstream: bool, depth: int) -> Graph:
    graph = Graph(start, {start: 0})
    seen: set[tuple[str, str, str, str, str]] = set()
    for going_up in [flag for flag, wanted in ((True, upstream), (False, downstream)) if wanted]:
        frontier = {start}
        visited = {start}
        sign = -1 if going_up else 1
        for level in range(1, depth + 2):
            if not frontier:
                break
            edges = list(await fetch(frontier, going_up))
            following: set[str] = set()
            for edge in edges:
                reached = edge.source if going_up else edge.target
                if level > depth and reached not in visited:
                    graph.truncated = True  # beyond the depth: left out
                    continue
                key = (edge.source, edge.target, edge.kind, edge.pipeline, edge.step)
                if key not in seen:
                    seen.add(key)
                    graph.edges.append(edge)
                if reached not in visited:
                    visited.add(reached)
                    following.add(reached)
                    known = graph.distances.get(reached)
                    if known is None or level < abs(known):
                        graph.distances[reached] = sign * level
            frontier = following
    return graph
