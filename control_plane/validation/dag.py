"""The step graph of a pipeline: needs edges, cycles, topological order, ancestors.

Steps are nodes by their position in ``spec.steps``; ``needs`` entries are edges from a
step to the steps it needs. Entries that name no step, name the step itself, or repeat an
earlier entry are not edges (validation reports them). When two steps share a name, needs
resolve to the first of them.

A cycle is reported once, at the ``needs`` entry that closes it in a depth-first walk that
visits steps and their needs in document order. It is named in dependency order (each step
before the steps that need it), starting and ending at the step that entry names:
``extract → load → extract`` when ``load`` needs ``extract`` and ``extract`` needs ``load``.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property

from legato.v1 import spec_pb2

__all__ = [
    "Cycle",
    "CycleError",
    "StepGraph",
    "ancestors",
    "descendants",
    "topological_order",
]

_WHITE, _GREY, _BLACK = 0, 1, 2
_CYCLE_SHOWN = 10  # names in a cycle's description, counting the repeated first one


class CycleError(ValueError):
    """The steps cannot be ordered because their needs form a cycle."""

    def __init__(self, cycle: Cycle) -> None:
        super().__init__(cycle.describe())
        self.cycle = cycle


@dataclass(frozen=True)
class Cycle:
    """A dependency cycle, closed by ``steps[step].needs[need]``."""

    step: int
    need: int
    names: tuple[str, ...]  # dependency order, first name repeated at the end

    def describe(self) -> str:
        """``dependency cycle: a → b → a``; long cycles show their first and last steps."""
        if len(self.names) <= _CYCLE_SHOWN:
            return "dependency cycle: " + " → ".join(self.names)
        shown = [*self.names[:4], "…", *self.names[-4:]]
        return f"dependency cycle: {' → '.join(shown)} ({len(self.names) - 1} steps)"


@dataclass(frozen=True)
class StepGraph:
    """Steps by position and, for each, its edges as (needs position, needed step)."""

    names: tuple[str, ...]
    edges: tuple[tuple[tuple[int, int], ...], ...]

    @classmethod
    def of(cls, spec: spec_pb2.PipelineSpec) -> StepGraph:
        names = tuple(step.name for step in spec.steps)
        first: dict[str, int] = {}
        for position, name in enumerate(names):
            first.setdefault(name, position)
        edges: list[tuple[tuple[int, int], ...]] = []
        for position, step in enumerate(spec.steps):
            seen: set[str] = set()
            step_edges = []
            for need_position, need in enumerate(step.needs):
                target = first.get(need)
                if target is None or target == position or need in seen:
                    continue
                seen.add(need)
                step_edges.append((need_position, target))
            edges.append(tuple(step_edges))
        return cls(names, tuple(edges))

    @cached_property
    def known(self) -> frozenset[str]:
        """Every step name."""
        return frozenset(self.names)

    @cached_property
    def first(self) -> dict[str, int]:
        """The position of each name's first step."""
        found: dict[str, int] = {}
        for position, name in enumerate(self.names):
            found.setdefault(name, position)
        return found

    @cached_property
    def _upstream_masks(self) -> tuple[int, ...]:
        return tuple(_upstream_masks(self.edges))

    def upstream(self, position: int) -> frozenset[int]:
        """Positions of the steps ``position`` needs, directly or through others."""
        bits = bin(self._upstream_masks[position])[:1:-1]
        return frozenset(p for p, bit in enumerate(bits) if bit == "1")

    def is_upstream(self, name: str, position: int) -> bool:
        """Whether step ``name`` is needed by step ``position``, directly or through others."""
        other = self.first.get(name)
        return other is not None and bool(self._upstream_masks[position] >> other & 1)

    @cached_property
    def cycles(self) -> tuple[Cycle, ...]:
        state = [_WHITE] * len(self.names)
        found: list[Cycle] = []
        for root in range(len(self.names)):
            if state[root] == _WHITE:
                found.extend(self._walk(root, state))
        return tuple(found)

    def _walk(self, root: int, state: list[int]) -> Iterator[Cycle]:
        """Depth-first walk from ``root`` without recursion; yields the back edges."""
        stack = [(root, 0)]
        on_path = {root: 0}
        state[root] = _GREY
        while stack:
            node, next_edge = stack[-1]
            if next_edge == len(self.edges[node]):
                state[node] = _BLACK
                del on_path[node]
                stack.pop()
                continue
            stack[-1] = (node, next_edge + 1)
            need_position, target = self.edges[node][next_edge]
            if state[target] == _GREY:
                path = [position for position, _ in stack[on_path[target] :]]
                yield self._cycle(node, need_position, path)
            elif state[target] == _WHITE:
                state[target] = _GREY
                on_path[target] = len(stack)
                stack.append((target, 0))

    def _cycle(self, node: int, need_position: int, path: list[int]) -> Cycle:
        # path[0] is the needed step; each step of path needs the next; node (last) needs path[0].
        order = [path[0], *reversed(path[1:]), path[0]]
        return Cycle(node, need_position, tuple(self.names[p] for p in order))

    def order(self) -> list[int]:
        """Positions in an order where every step comes after the steps it needs; among
        steps that are ready together, document order. Raises :class:`CycleError`."""
        if self.cycles:
            raise CycleError(self.cycles[0])
        waiting = [len(edges) for edges in self.edges]
        needed_by: list[list[int]] = [[] for _ in self.names]
        for position, edges in enumerate(self.edges):
            for _, target in edges:
                needed_by[target].append(position)
        ready = [position for position, count in enumerate(waiting) if count == 0]
        heapq.heapify(ready)
        result: list[int] = []
        while ready:
            position = heapq.heappop(ready)
            result.append(position)
            for follower in needed_by[position]:
                waiting[follower] -= 1
                if waiting[follower] == 0:
                    heapq.heappush(ready, follower)
        return result


def _upstream_masks(edges: tuple[tuple[tuple[int, int], ...], ...]) -> list[int]:
    """For each step, a bit mask of the steps upstream of it.

    Tarjan's strongly connected components, without recursion: a component is complete only
    after every component it reaches, so its mask is the union of finished masks. The steps
    of a cycle are upstream of each other (and of themselves).
    """
    count = len(edges)
    order = [-1] * count
    low = [0] * count
    on_stack = [False] * count
    stack: list[int] = []
    masks = [0] * count
    counter = 0
    for root in range(count):
        if order[root] != -1:
            continue
        order[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack[root] = True
        work = [(root, 0)]
        while work:
            node, next_edge = work[-1]
            if next_edge < len(edges[node]):
                work[-1] = (node, next_edge + 1)
                target = edges[node][next_edge][1]
                if order[target] == -1:
                    order[target] = low[target] = counter
                    counter += 1
                    stack.append(target)
                    on_stack[target] = True
                    work.append((target, 0))
                elif on_stack[target]:
                    low[node] = min(low[node], order[target])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == order[node]:
                _close_component(node, edges, stack, on_stack, masks)
    return masks


def _close_component(
    root: int,
    edges: tuple[tuple[tuple[int, int], ...], ...],
    stack: list[int],
    on_stack: list[bool],
    masks: list[int],
) -> None:
    members: list[int] = []
    while not members or members[-1] != root:
        member = stack.pop()
        on_stack[member] = False
        members.append(member)
    mask = 0
    for member in members:
        for _, target in edges[member]:
            mask |= masks[target] | 1 << target
    for member in members:
        masks[member] = mask


def topological_order(spec: spec_pb2.PipelineSpec) -> list[str]:
    """Step names, each after the steps it needs, ties in document order.

    Raises :class:`CycleError` when the needs form a cycle (validated specs have none).
    """
    graph = StepGraph.of(spec)
    return [graph.names[position] for position in graph.order()]


def ancestors(spec: spec_pb2.PipelineSpec) -> dict[str, frozenset[str]]:
    """For each step, the names of all steps it needs, directly or transitively (a step in a
    cycle is among its own ancestors)."""
    graph = StepGraph.of(spec)
    result: dict[str, frozenset[str]] = {}
    for position, name in enumerate(graph.names):
        result.setdefault(name, frozenset(graph.names[p] for p in graph.upstream(position)))
    return result


def descendants(spec: spec_pb2.PipelineSpec) -> dict[str, frozenset[str]]:
    """For each step, the names of all steps that need it, directly or transitively."""
    result: dict[str, set[str]] = {name: set() for name in (step.name for step in spec.steps)}
    for name, upstream in ancestors(spec).items():
        for ancestor in upstream:
            result[ancestor].add(name)
    return {name: frozenset(found) for name, found in result.items()}
