"""The step graph of one run as a state machine: which pending steps become ready, which are
skipped, and which cannot run because of what happened upstream.

:class:`RunPlan` is compiled once per pipeline version and holds no run state, so one plan
serves every run of that version. The caller loads the facts of a run's steps
(:class:`StepFacts`), asks the plan for :class:`Decision` s and stores them.

Step statuses: ``pending → ready → leased → running → succeeded | failed | timed_out``, or,
decided here without running, ``skipped``, ``upstream_failed`` and ``failed`` (a ``when``
that cannot be evaluated). ``cancelled`` comes from cancelling the run. Terminal:
succeeded, failed, skipped, upstream_failed, cancelled, timed_out. A step waiting for a
retry is not terminal: its status goes back to pending or ready, never failed, until the
last attempt has failed.

Trigger rules
-------------
A step's ``trigger_rule`` decides from the statuses of the steps it ``needs`` (its parents)
whether it is a candidate to run. "Failed" below means failed, timed_out, upstream_failed or
cancelled. A step without needs is always a candidate.

============= ================================= =======================================
rule          candidate when                    otherwise
============= ================================= =======================================
all_success   every parent succeeded            upstream_failed as soon as one parent
(default)                                       failed; skipped once every parent has
                                                ended, some skipped, none failed
all_done      every parent has ended, whatever  (waits)
              its outcome
none_failed   every parent has ended and none   upstream_failed as soon as one parent
              failed (succeeded or skipped)     failed
one_success   one parent succeeded (does not    once every parent has ended without a
              wait for the others)              success: upstream_failed when one
                                                failed, else skipped
============= ================================= =======================================

A candidate with a ``when`` condition then evaluates it (see
:mod:`control_plane.pipelines.expressions`) over ``params``, ``run`` (``id``, ``trigger``,
``pipeline``, ``version``, ``logical_time``) and ``steps.<name>`` with ``status``,
``records`` (``None`` until known) and ``outputs``: a true value makes the step ready, a
false one skips it (``when 'steps.findings.records > 0' was false``), and an error fails it
(``when could not be evaluated: ...``), which fails the run like any failed step.

Skipped and failed steps decide their own children in the same call, so one call can
cascade through many levels: with the default rule a skip propagates down the whole
branch, while ``all_done`` and ``none_failed`` children still run after a skipped parent.

Using the plan
--------------
``facts`` must hold every step of the run, or for :meth:`RunPlan.after` at least
:meth:`RunPlan.facts_needed` (a step's children and their parents), so that a transition
reads a handful of rows whatever the run's size; a decision that needs more raises
:class:`MissingFactsError` naming them. Only pending steps get decisions, each at most
once per call; decisions come in topological order and each takes the earlier ones into
account, so store all of them. Call :meth:`RunPlan.after` with the steps that just reached
a terminal status; it examines only their children (and the children of what it skips or
fails). To cancel or time out a run, end its remaining steps directly instead: ``after``
would make their ``all_done`` children ready.

The run
-------
:meth:`RunPlan.outcome` is ``None`` while any step has not ended. Then the run is
``failed`` when any step failed or timed out (also when a step downstream of it ran
and succeeded, e.g. an ``all_done`` clean-up step), else ``cancelled`` when any step was
cancelled, else ``succeeded`` — also when every step was skipped.

For Airflow users
-----------------
The rules mean what Airflow's rules of the same names mean, with these differences:

- Airflow's ``all_success`` skips a task as soon as one upstream task is skipped; Legato
  waits until every parent has ended, so that a failure in another parent wins and the
  step ends upstream_failed rather than skipped.
- ``timed_out`` and ``cancelled`` parents count as failures (Airflow has neither state;
  its timeouts end tasks failed).
- Airflow derives the DAG run's state from its leaf tasks, so a failed task followed by a
  successful ``all_done`` leaf makes a successful run. In Legato any failed or timed-out
  step fails the run.
- ``when`` plays the part of a ShortCircuitOperator placed just before the step, with
  ``ignore_downstream_trigger_rules=False``: steps below follow their own trigger rules.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from control_plane.pipelines.expressions import Expression, ExpressionError, parse_expression
from control_plane.statuses import STEP_TERMINAL, StepStatus
from control_plane.validation.conditions import STEP_ROOTS
from control_plane.validation.dag import StepGraph
from legato.v1 import spec_pb2

__all__ = [
    "CANCELLED",
    "FAILED",
    "LEASED",
    "PENDING",
    "READY",
    "RUNNING",
    "SKIPPED",
    "SUCCEEDED",
    "TERMINAL",
    "TIMED_OUT",
    "UPSTREAM_FAILED",
    "Decision",
    "MissingFactsError",
    "RunContext",
    "RunPlan",
    "StepFacts",
    "run_outcome",
]

PENDING = StepStatus.PENDING
READY = StepStatus.READY
LEASED = StepStatus.LEASED
RUNNING = StepStatus.RUNNING
SUCCEEDED = StepStatus.SUCCEEDED
FAILED = StepStatus.FAILED
SKIPPED = StepStatus.SKIPPED
UPSTREAM_FAILED = StepStatus.UPSTREAM_FAILED
CANCELLED = StepStatus.CANCELLED
TIMED_OUT = StepStatus.TIMED_OUT

TERMINAL = STEP_TERMINAL
# Parent statuses that keep all_success and none_failed children from running.
_FAILURES = frozenset({FAILED, TIMED_OUT, UPSTREAM_FAILED, CANCELLED})
_WHEN_SHOWN = 200  # characters of a `when` expression quoted in a reason

_ALL_SUCCESS = spec_pb2.TRIGGER_RULE_ALL_SUCCESS
_ALL_DONE = spec_pb2.TRIGGER_RULE_ALL_DONE
_NONE_FAILED = spec_pb2.TRIGGER_RULE_NONE_FAILED
_ONE_SUCCESS = spec_pb2.TRIGGER_RULE_ONE_SUCCESS


class MissingFactsError(KeyError):
    """The facts given lack steps the decision needs: ``names`` (``None``: every step).
    Callers that load only :meth:`RunPlan.facts_needed` load these and ask again."""

    def __init__(self, names: frozenset[str] | None) -> None:
        shown = ", ".join(f"'{name}'" for name in sorted(names or ()))
        super().__init__(
            "facts must hold every step (a when condition may read any)"
            if names is None
            else f"no facts for step{'s' if len(names) > 1 else ''} {shown}"
        )
        self.names = names


@dataclass(frozen=True)
class StepFacts:
    """What the resolver needs to know about one step of the run."""

    status: str
    records: int | None = None  # records_out of the step
    outputs: Mapping[str, Any] = field(default_factory=dict)  # the step's values


@dataclass(frozen=True)
class RunContext:
    """The run-wide names a ``when`` condition reads."""

    params: Mapping[str, Any]
    run: Mapping[str, Any]  # id, trigger, pipeline, version, logical_time


@dataclass(frozen=True)
class Decision:
    """A new status for a pending step, and why (shown to users)."""

    step: str
    status: str  # ready | skipped | upstream_failed | failed
    reason: str


@dataclass(frozen=True)
class _Verdict:
    """What a trigger rule says: ``status`` is ``None`` for a candidate."""

    status: str | None
    reason: str = ""


_CANDIDATE = _Verdict(None)


@dataclass(frozen=True)
class _When:
    text: str
    expression: Expression | None
    error: ExpressionError | None


class RunPlan:
    """The compiled step graph of one pipeline version: order, parents and children, trigger
    rules and ``when`` conditions. Holds no run state; share it between runs."""

    def __init__(self, spec: spec_pb2.PipelineSpec) -> None:
        graph = StepGraph.of(spec)
        ranks = graph.order()  # positions in topological order, ties in spec order
        rank_of = {position: rank for rank, position in enumerate(ranks)}
        self.order: list[str] = [graph.names[position] for position in ranks]
        self._rank: dict[str, int] = {name: rank for rank, name in enumerate(self.order)}
        self._parents: list[tuple[int, ...]] = []
        children: list[list[int]] = [[] for _ in ranks]
        self._rules: list[int] = []
        self._when: list[_When | None] = []
        for rank, position in enumerate(ranks):
            step = spec.steps[position]
            parents = tuple(rank_of[target] for _, target in graph.edges[position])
            self._parents.append(parents)
            for parent in parents:
                children[parent].append(rank)
            self._rules.append(step.trigger_rule or _ALL_SUCCESS)
            self._when.append(_compile_when(step.when) if step.when.strip() else None)
        self._children: list[tuple[int, ...]] = [tuple(found) for found in children]

    def position(self, step: str) -> int:
        """The step's 1-based place in :attr:`order`, as in ``Step 2: transform``."""
        return self._rank[step] + 1

    def parents(self, step: str) -> tuple[str, ...]:
        """The steps ``step`` needs, in the order of its ``needs``."""
        return tuple(self.order[rank] for rank in self._parents[self._rank[step]])

    def children(self, step: str) -> tuple[str, ...]:
        """The steps that need ``step``, in :attr:`order`."""
        return tuple(self.order[rank] for rank in self._children[self._rank[step]])

    def start(self, facts: Mapping[str, StepFacts], context: RunContext) -> list[Decision]:
        """Decisions for the steps that can be decided when a run starts: steps without
        needs, and what their decisions cascade to.

        Every pending step is examined (once per run, O(steps + needs)), so a rerun whose
        facts keep earlier successes also gets decisions for the steps below them.
        """
        return self._resolve(range(len(self.order)), facts, context)

    def after(
        self, finished: Iterable[str], facts: Mapping[str, StepFacts], context: RunContext
    ) -> list[Decision]:
        """Decisions after the steps in ``finished`` ended: only their children, and the
        children of any child this call skips or fails, are examined."""
        seeds = {child for name in finished for child in self._children[self._rank[name]]}
        return self._resolve(seeds, facts, context)

    def facts_needed(self, finished: Iterable[str]) -> frozenset[str] | None:
        """The steps whose facts :meth:`after` reads for ``finished``: their children and
        the children's parents; ``None`` (every step) when a child has a ``when``, which
        may read any step. A cascade (a child skipped or failed) may need more: then
        ``after`` raises :class:`MissingFactsError`."""
        needed: set[str] = set(finished)
        for name in finished:
            for child in self._children[self._rank[name]]:
                if self._when[child] is not None:
                    return None
                needed.add(self.order[child])
                needed.update(self.order[parent] for parent in self._parents[child])
        return frozenset(needed)

    def outcome(self, facts: Mapping[str, StepFacts]) -> str | None:
        """``None`` while a step has not ended; then ``failed``, ``cancelled`` or
        ``succeeded`` (see the module docstring)."""
        return run_outcome({facts[name].status for name in self.order})

    def _resolve(
        self, seeds: Iterable[int], facts: Mapping[str, StepFacts], context: RunContext
    ) -> list[Decision]:
        """Decide ``seeds`` and the children of every terminal decision, in topological
        order, so that each step is looked at once, after every decision above it."""
        decided: dict[str, str] = {}

        def status_of(rank: int) -> str:
            name = self.order[rank]
            return decided.get(name) or _facts_of(facts, name).status

        queue = list(seeds)
        heapq.heapify(queue)
        queued = set(queue)
        decisions: list[Decision] = []
        while queue:
            rank = heapq.heappop(queue)
            if status_of(rank) != PENDING:
                continue
            decision = self._decide(rank, status_of, facts, decided, context)
            if decision is None:
                continue
            decided[decision.step] = decision.status
            decisions.append(decision)
            if decision.status in TERMINAL:
                for child in self._children[rank]:
                    if child not in queued:
                        queued.add(child)
                        heapq.heappush(queue, child)
        return decisions

    def _decide(
        self,
        rank: int,
        status_of: Callable[[int], str],
        facts: Mapping[str, StepFacts],
        decided: Mapping[str, str],
        context: RunContext,
    ) -> Decision | None:
        name = self.order[rank]
        parents = self._parents[rank]
        verdict = (
            _apply_rule(self._rules[rank], [(self.order[p], status_of(p)) for p in parents])
            if parents
            else _CANDIDATE
        )
        if verdict is None:
            return None
        if verdict.status is not None:
            return Decision(name, verdict.status, verdict.reason)
        when = self._when[rank]
        if when is None:
            return Decision(name, READY, "")
        if len(facts) < len(self.order):
            raise MissingFactsError(None)  # the condition may read any step
        if when.expression is None:
            return Decision(name, FAILED, f"when could not be evaluated: {when.error}")
        steps = _StepsView(self.order, facts, decided)
        names = {"params": context.params, "steps": steps, "run": context.run}
        try:
            value = when.expression.evaluate(names)
            truthy = bool(value)
        except ExpressionError as exc:
            return Decision(name, FAILED, f"when could not be evaluated: {exc}")
        except Exception as exc:  # a user's expression must never stop the run's bookkeeping
            return Decision(
                name, FAILED, f"when could not be evaluated: {type(exc).__name__}: {exc}"
            )
        if truthy:
            return Decision(name, READY, "")
        return Decision(name, SKIPPED, f"when '{when.text}' was false")


def run_outcome(statuses: Collection[str]) -> str | None:
    """The run's outcome from the statuses its steps have (each at least once): see
    :meth:`RunPlan.outcome`."""
    found = set(statuses)
    if not found <= TERMINAL:
        return None
    if found & {FAILED, TIMED_OUT}:
        return FAILED
    if CANCELLED in found:
        return CANCELLED
    if UPSTREAM_FAILED in found:  # only after one of the above, unless facts are edited
        return FAILED
    return SUCCEEDED


def _compile_when(text: str) -> _When:
    shown = " ".join(text.split())
    if len(shown) > _WHEN_SHOWN:
        shown = shown[: _WHEN_SHOWN - 1] + "…"
    try:
        return _When(shown, parse_expression(text, allowed_roots=STEP_ROOTS), None)
    except ExpressionError as exc:  # validated specs parse; keep a run going if one does not
        return _When(shown, None, exc)


def _apply_rule(rule: int, parents: Sequence[tuple[str, str]]) -> _Verdict | None:
    """The verdict of ``rule`` over (name, status) of the parents; ``None``: wait."""
    first_failure: tuple[str, str] | None = None
    first_skip: tuple[str, str] | None = None
    all_ended = all_succeeded = True
    any_succeeded = False
    for name, status in parents:
        if status == SUCCEEDED:
            any_succeeded = True
            continue
        all_succeeded = False
        if status not in TERMINAL:
            all_ended = False
        elif status in _FAILURES:
            first_failure = first_failure or (name, status)
        elif status == SKIPPED:
            first_skip = first_skip or (name, status)
    if rule == _ONE_SUCCESS:
        if any_succeeded:
            return _CANDIDATE
        if not all_ended:
            return None
        cause = first_failure or first_skip
        assert cause is not None  # ended, not succeeded: failed or skipped
        status = UPSTREAM_FAILED if first_failure else SKIPPED
        return _Verdict(status, f"no upstream step succeeded ({_upstream(*cause)})")
    if rule == _ALL_DONE:
        return _CANDIDATE if all_ended else None
    if first_failure is not None:
        return _Verdict(UPSTREAM_FAILED, _upstream(*first_failure))
    if not all_ended:
        return None
    if rule == _NONE_FAILED or all_succeeded:
        return _CANDIDATE
    assert first_skip is not None
    return _Verdict(SKIPPED, _upstream(*first_skip))


_UPSTREAM_PHRASES: dict[str, str] = {
    FAILED: "failed",
    TIMED_OUT: "timed out",
    CANCELLED: "was cancelled",
    UPSTREAM_FAILED: "did not run because its own upstream failed",
    SKIPPED: "was skipped",
}


def _upstream(name: str, status: str) -> str:
    return f"upstream step '{name}' {_UPSTREAM_PHRASES[status]}"


def _facts_of(facts: Mapping[str, StepFacts], name: str) -> StepFacts:
    try:
        return facts[name]
    except KeyError:
        raise MissingFactsError(frozenset({name})) from None


class _StepsView(Mapping[str, Mapping[str, Any]]):
    """``steps`` as a ``when`` condition sees it, built for the names it reads."""

    def __init__(
        self, names: Sequence[str], facts: Mapping[str, StepFacts], decided: Mapping[str, str]
    ) -> None:
        self._names = names
        self._facts = facts
        self._decided = decided

    def __getitem__(self, name: str) -> Mapping[str, Any]:
        found = self._facts.get(name)
        if found is None:
            raise KeyError(name)
        return {
            "status": self._decided.get(name) or found.status,
            "records": found.records,
            "outputs": found.outputs,
        }

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)
