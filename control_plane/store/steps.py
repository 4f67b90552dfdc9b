"""A run's steps as plain data, read and written with Core statements.

:class:`StepState` holds a ``step_runs`` row's columns; the functions here read them
(``named``, ``all_of``) and write them (``write``: one ``UPDATE`` of the columns given;
``cancel_unfinished``: one set-based ``UPDATE … RETURNING``). No identity map, no flush.

The exception is a run created in the same transaction: its rows are ORM objects the
session inserts when it flushes (with many runs at once, for the scheduler), so the state
its start decides is written by that insert; ``write`` and ``defer`` set their attributes.

**Deferred writes.** A step its transaction makes ready is usually leased in the same
transaction (``UnitOfWork``): ``defer`` keeps its new values in the session, ``claimed``
writes them with the lease's in a single ``UPDATE`` (the row is written once: ``leased``),
and whatever is left is written by ``flush_deferred`` — called by the unit of work after
its claim, and in any case when the transaction commits. Reads made here see the
deferred values; a set-based write flushes them first."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, event, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from control_plane.store.models import StepRunRow

__all__ = [
    "COLUMNS",
    "TABLE",
    "Step",
    "StepState",
    "all_of",
    "any_with_status",
    "cancel_unfinished",
    "claimed",
    "defer",
    "first_with_status",
    "flush_deferred",
    "from_row",
    "named",
    "statuses_of",
    "write",
]

TABLE = cast(Table, StepRunRow.__table__)
_C = TABLE.c
# Reading more than this many names at once reads the run's steps instead.
_MANY = 200
_DEFERRED = "legato.deferred_steps"


@dataclass(slots=True, eq=False)
class StepState:
    """One ``step_runs`` row."""

    id: int
    run_id: str
    name: str
    position: int
    kind: str
    status: str
    attempt: int
    not_before: datetime | None
    selector: dict[str, Any]
    agent: str
    records_in: int | None
    records_out: int | None
    output: dict[str, Any]
    error: str
    failure_kind: str
    start_time: datetime | None
    end_time: datetime | None
    waiting_reason: str
    child_run_id: str | None
    peak_memory_bytes: int | None = None
    cpu_seconds: float | None = None
    memory_limit_bytes: int | None = None
    lineage: dict[str, Any] | None = None
    """What the latest finished attempt read and wrote (StepLineage as JSON)."""


Step = StepState | StepRunRow
"""A step as the transitions see it: a stored row, or a new run's row not yet inserted."""

_FIELDS = tuple(StepState.__dataclass_fields__)
COLUMNS = tuple(_C[name] for name in _FIELDS)
"""A step's columns, in the order of :class:`StepState`'s fields."""
_SELECT = select(*COLUMNS)


def _state(row: Any) -> StepState:
    return StepState(*row)


def _deferred(session: AsyncSession | Session) -> dict[int, tuple[StepState, dict[str, Any]]]:
    found: dict[int, tuple[StepState, dict[str, Any]]] = session.info.setdefault(_DEFERRED, {})
    return found


def _overlay(session: AsyncSession, states: Iterable[StepState]) -> None:
    deferred = session.info.get(_DEFERRED)
    if deferred:
        for state in states:
            pending = deferred.get(state.id)
            if pending is not None:
                for key, value in pending[1].items():
                    setattr(state, key, value)


async def named(session: AsyncSession, run_id: str, names: Collection[str]) -> dict[str, StepState]:
    """The run's steps of ``names`` (those that exist), by name."""
    if len(names) > _MANY:
        found = await all_of(session, run_id)
        return {name: state for name, state in found.items() if name in names}
    rows = await session.execute(_SELECT.where(_C.run_id == run_id, _C.name.in_(sorted(names))))
    states = [_state(row) for row in rows]
    _overlay(session, states)
    return {state.name: state for state in states}


async def all_of(session: AsyncSession, run_id: str) -> dict[str, StepState]:
    """Every step of the run, by name, in the order of their positions."""
    rows = await session.execute(_SELECT.where(_C.run_id == run_id).order_by(_C.position))
    states = [_state(row) for row in rows]
    _overlay(session, states)
    return {state.name: state for state in states}


def from_row(row: Any) -> StepState:
    """A state from a row whose first values are ``COLUMNS`` (a query reading steps with
    other tables' columns after them)."""
    return StepState(*row[: len(_FIELDS)])


async def write(session: AsyncSession, step: Step, **values: Any) -> None:
    """Set ``values`` on the step and write them: one ``UPDATE`` (merged into its deferred
    values when it has some; nothing for a new run's row, whose insert carries them)."""
    for key, value in values.items():
        setattr(step, key, value)
    if isinstance(step, StepRunRow):
        return
    deferred = session.info.get(_DEFERRED)
    if deferred and step.id in deferred:
        deferred[step.id][1].update(values)
        return
    await session.execute(update(TABLE).where(_C.id == step.id).values(**values))


def defer(session: AsyncSession, step: Step, **values: Any) -> None:
    """Set ``values`` on the step, to be written by ``claimed`` or ``flush_deferred``."""
    for key, value in values.items():
        setattr(step, key, value)
    if isinstance(step, StepState):
        _deferred(session).setdefault(step.id, (step, {}))[1].update(values)


async def claimed(session: AsyncSession, step: Step, **values: Any) -> None:
    """Write the step's deferred values and ``values`` (its lease) in one ``UPDATE``."""
    if isinstance(step, StepState):
        deferred = session.info.get(_DEFERRED)
        pending = deferred.pop(step.id, None) if deferred else None
        if pending is not None:
            values = {**pending[1], **values}
    await write(session, step, **values)


async def flush_deferred(session: AsyncSession) -> None:
    """Write the deferred values now: one ``UPDATE`` per distinct set of values."""
    for ids, values in _groups(session.info.pop(_DEFERRED, None)):
        await session.execute(update(TABLE).where(_C.id.in_(ids)).values(**values))


def _groups(
    deferred: dict[int, tuple[StepState, dict[str, Any]]] | None,
) -> list[tuple[list[int], dict[str, Any]]]:
    groups: dict[tuple[tuple[str, Any], ...], list[int]] = {}
    for step_id, (_, values) in (deferred or {}).items():
        key = tuple(sorted(values.items(), key=lambda item: item[0]))
        groups.setdefault(key, []).append(step_id)
    return [(ids, dict(key)) for key, ids in groups.items()]


async def cancel_unfinished(
    session: AsyncSession, run_id: str, unfinished: Collection[str], **values: Any
) -> list[StepState]:
    """End the run's steps whose status is in ``unfinished`` with ``values``, in one
    set-based statement (it waits for a claim another transaction holds on one of them,
    then sees it); returns them as they are now, by position."""
    await flush_deferred(session)
    rows = await session.execute(
        update(TABLE)
        .where(_C.run_id == run_id, _C.status.in_(sorted(unfinished)))
        .values(**values)
        .returning(*COLUMNS)
    )
    return sorted((_state(row) for row in rows), key=lambda state: state.position)


@event.listens_for(Session, "before_commit")
def _flush_deferred_at_commit(session: Session) -> None:
    for ids, values in _groups(session.info.pop(_DEFERRED, None)):
        session.execute(update(TABLE).where(_C.id.in_(ids)).values(**values))


@event.listens_for(Session, "after_rollback")
def _drop_deferred(session: Session) -> None:
    session.info.pop(_DEFERRED, None)


async def any_with_status(session: AsyncSession, run_id: str, statuses: Collection[str]) -> bool:
    """Whether a step of the run has one of ``statuses`` (an index probe)."""
    found = await session.execute(
        select(_C.id).where(_C.run_id == run_id, _C.status.in_(sorted(statuses))).limit(1)
    )
    return found.first() is not None


async def statuses_of(session: AsyncSession, run_id: str) -> set[str]:
    """The distinct statuses of the run's steps."""
    rows = await session.execute(select(_C.status).where(_C.run_id == run_id).distinct())
    return {str(status) for status in rows.scalars()}


async def first_with_status(
    session: AsyncSession, run_id: str, statuses: Collection[str]
) -> StepState | None:
    """The run's first step (by position) with one of ``statuses``."""
    rows = await session.execute(
        _SELECT.where(_C.run_id == run_id, _C.status.in_(sorted(statuses)))
        .order_by(_C.position)
        .limit(1)
    )
    row = rows.first()
    return None if row is None else _state(row)
