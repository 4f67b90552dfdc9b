"""Attempts and their leases as plain data, read and written with Core statements.

Every write that ends an attempt is fenced: it names the attempt *and* the statuses it
may still have (leased or running), so a report for a lease that is no longer current
changes nothing, whatever raced it (the reaper, a cancellation, another replica)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.statuses import ACTIVE_ATTEMPT, AttemptStatus, StepStatus
from control_plane.store import steps as step_store
from control_plane.store.models import AttemptRow
from control_plane.store.steps import StepState

__all__ = [
    "TABLE",
    "AttemptState",
    "Started",
    "end",
    "insert_leased",
    "of_lease",
    "start",
    "stop_active",
]

TABLE = cast(Table, AttemptRow.__table__)
_C = TABLE.c
_ACTIVE = sorted(ACTIVE_ATTEMPT)


@dataclass(slots=True, eq=False)
class AttemptState:
    """One ``attempts`` row."""

    id: int
    step_run_id: int
    run_id: str
    number: int
    lease_id: str
    agent: str
    status: str
    lease_expire_time: datetime
    create_time: datetime
    start_time: datetime | None
    end_time: datetime | None
    records_in: int | None
    records_out: int | None
    error: str
    failure_kind: str
    peak_memory_bytes: int | None = None
    cpu_seconds: float | None = None
    memory_limit_bytes: int | None = None


_FIELDS = tuple(AttemptState.__dataclass_fields__)
_COLUMNS = tuple(_C[name] for name in _FIELDS)
_OF_LEASE = select(*_COLUMNS, *step_store.COLUMNS).join(
    step_store.TABLE, step_store.TABLE.c.id == _C.step_run_id
)


async def of_lease(session: AsyncSession, lease_id: str) -> tuple[AttemptState, StepState] | None:
    """The attempt of a lease and its step, in one statement (no lock: the caller locks
    the run, then ends the attempt with a fenced write)."""
    row = (await session.execute(_OF_LEASE.where(_C.lease_id == lease_id))).first()
    if row is None:
        return None
    attempt = AttemptState(*row[: len(_FIELDS)])
    return attempt, step_store.from_row(row[len(_FIELDS) :])


async def end(
    session: AsyncSession,
    attempt: AttemptState,
    *,
    expired_before: datetime | None = None,
    **values: Any,
) -> bool:
    """End the attempt with ``values`` if it is still leased or running (and, with
    ``expired_before``, its lease expired before then): one fenced ``UPDATE``; whether it
    was."""
    fence = [_C.id == attempt.id, _C.status.in_(_ACTIVE)]
    if expired_before is not None:
        fence.append(_C.lease_expire_time < expired_before)
    result = await session.execute(update(TABLE).where(*fence).values(**values).returning(_C.id))
    if result.first() is None:
        return False
    for key, value in values.items():
        setattr(attempt, key, value)
    return True


async def stop_active(
    session: AsyncSession, run_id: str, status: str, end_time: datetime, error: str
) -> list[tuple[str, str]]:
    """End the run's leased and running attempts (one set-based ``UPDATE``); returns
    their (agent, lease id), for the agents to be told to stop them."""
    rows = await session.execute(
        update(TABLE)
        .where(_C.run_id == run_id, _C.status.in_(_ACTIVE))
        .values(status=status, end_time=end_time, error=error)
        .returning(_C.agent, _C.lease_id)
    )
    return [(str(agent), str(lease)) for agent, lease in rows]


async def insert_leased(
    session: AsyncSession,
    *,
    step_run_id: int,
    run_id: str,
    number: int,
    lease_id: str,
    agent: str,
    expire: datetime,
    now: datetime,
) -> None:
    """A new attempt, leased to ``agent`` until ``expire``."""
    await session.execute(
        insert(TABLE).values(
            step_run_id=step_run_id,
            run_id=run_id,
            number=number,
            lease_id=lease_id,
            agent=agent,
            status=AttemptStatus.LEASED,
            lease_expire_time=expire,
            create_time=now,
            error="",
            failure_kind="",
        )
    )


@dataclass(frozen=True)
class Started:
    """What ``start`` found: the attempt moved to running (``run_id`` and ``step`` set),
    was running already (a repeated report), or its lease is not the agent's or not
    current (``owner``/``status`` say which)."""

    run_id: str = ""
    step: str = ""
    repeated: bool = False
    owner: str | None = None
    status: str | None = None


async def start(session: AsyncSession, lease_id: str, agent: str, started: datetime) -> Started:
    """Move a leased attempt, and its step, to running: two fenced ``UPDATE``s."""
    row = (
        await session.execute(
            update(TABLE)
            .where(_C.lease_id == lease_id, _C.status == AttemptStatus.LEASED, _C.agent == agent)
            .values(status=AttemptStatus.RUNNING, start_time=started)
            .returning(_C.step_run_id, _C.run_id)
        )
    ).first()
    if row is None:
        found = (
            await session.execute(select(_C.status, _C.agent).where(_C.lease_id == lease_id))
        ).first()
        if found is None:
            return Started()
        status, owner = str(found[0]), str(found[1])
        return Started(repeated=status == AttemptStatus.RUNNING, owner=owner, status=status)
    step_run_id, run_id = row
    steps = step_store.TABLE.c
    name = await session.scalar(
        update(step_store.TABLE)
        .where(steps.id == step_run_id, steps.status.in_(_ACTIVE))
        .values(status=StepStatus.RUNNING, start_time=func.coalesce(steps.start_time, started))
        .returning(steps.name)
    )
    return Started(run_id=str(run_id), step=str(name or ""))
