"""Fire instants prepared ahead: each batch is built before its instant and committed at it.

Firing a schedule makes a run: params resolved, the run row, its step rows, its first log
line, the first steps' decisions. A thousand schedules due at the same minute are a second
of that work, and done at the fire time the last of them is created a second late. So the
scheduler builds an instant's batch ``lead`` before it (2 s, more when the last batch took
longer to build) and only commits it at the instant:

- **Before the instant** the schedules whose next fire time is the instant are read, with
  their pipelines and plans. Those whose fire is plain — the instant is a fire time of the
  current cron and the only one due (no catch-up), no step has a ``when`` (a run that
  could end as it starts runs the end-of-run hooks, which read) and the params fit — get
  their run built through ``Runs.create_scheduled``, as a run that starts at once. The
  rows wait, unflushed, in a write transaction that has not touched the database yet: it
  holds no lock, and on SQLite no connection, so other writers are not held up (on
  PostgreSQL it checks a pooled connection out once the rows are built).
- **At the instant** (on PostgreSQL :data:`LOCK_AHEAD` before it: a change that comes in
  between then waits for the commit, as if it came after the instant; on SQLite that lock
  would hold up every writer) the transaction locks the batch's pipelines and schedules,
  in id order like every fire, and checks each prepared run against what is there: the
  pipeline's latest version is still the run's, it is not archived, the schedule is not
  paused and its next fire time is still the instant (another replica may have fired
  it), and where the overlap policy can hold a run back
  (everything but ``allow`` without ``max_concurrent_runs``) the pipeline has room: one
  query counts the active runs of those pipelines. (A release later than the grace, or
  past a schedule's next fire time, drops the whole batch.) A run that passes is kept:
  the clock readings on its rows, taken while it was built, become one reading taken at
  the instant, after the checks (the run
  is created, and started, at the instant; its deadline moves with its start), and the
  schedules move on, one UPDATE per next fire time. A run that fails is dropped (its rows
  leave the session unwritten) and its schedule is fired afresh in the same transaction,
  exactly as if nothing had been prepared. The commit then writes the runs, steps and log
  lines as multi-row INSERTs.

So a prepared batch never decides anything a fire at the instant would not; exactly-once
still rests on the pipeline locks, the next fire time re-read under them and the unique
index on (pipeline, logical time) of scheduled runs. Schedules that are not plain, and
any that become due during the lead (applied, resumed), fire at the instant by the
ordinary path, right after the batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import BigInteger, DateTime, any_, bindparam, func, select, update
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapper
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import TypeDecorator

from control_plane.access.actors import SCHEDULER
from control_plane.errors import LegatoError
from control_plane.execution.effects import Effects
from control_plane.execution.plans import Plan, PlanCache
from control_plane.execution.runs import Runs
from control_plane.scheduling.fire_times import FireTime
from control_plane.scheduling.firing import capacity_of, due_times, fire_times_of, trigger_of
from control_plane.statuses import TEST_TRIGGER
from control_plane.store import log_lines
from control_plane.store.db import Database
from control_plane.store.models import PipelineRow, RunRow, ScheduleRow

__all__ = ["LEAD", "LOCK_AHEAD", "MAX_LEAD", "MAX_PREPARED", "Batch", "Lookahead"]

log = structlog.get_logger("legato.scheduler")

LEAD = 2.0
"""Seconds before a fire instant its batch starts being built (at least)."""
MAX_LEAD = 20.0
"""The most seconds ahead a batch is built, however long the last one took."""
MAX_PREPARED = 5_000
"""Schedules prepared for one instant; the rest fire at the instant by the ordinary path."""
LOCK_AHEAD = 0.25
"""On PostgreSQL, seconds before the instant a batch takes its locks and checks."""
YIELD_EVERY = 50
"""Runs built between two yields to the event loop, so RPCs are served during a build."""

FireAnew = Callable[[AsyncSession, Effects, list[int], datetime, list[str]], Awaitable[list[str]]]
"""Fire the due schedules of these pipelines at ``now`` in the caller's transaction
(``Scheduler._fire_all``)."""


@dataclass(frozen=True)
class _Plain:
    """A schedule whose fire at the instant is plain, read before the instant."""

    plan: Plan
    fire: FireTime
    next_at: datetime
    capacity: int


@dataclass(frozen=True)
class _Prepared:
    """One schedule's run, built before its instant."""

    pipeline_id: int
    version: int
    next_at: datetime
    capacity: int
    run: RunRow
    effects: Effects


@dataclass(eq=False)
class Batch:
    """One instant's runs, built in a write transaction (``task``) that waits for
    :meth:`release`."""

    instant: datetime
    size: int = 0
    build_seconds: float = 0.0
    cancels: list[str] = field(default_factory=list)
    task: asyncio.Task[list[str]] | None = None
    _built: asyncio.Event = field(default_factory=asyncio.Event)
    _go: asyncio.Event = field(default_factory=asyncio.Event)
    _now: datetime | None = None

    def release(self, now: datetime) -> None:
        """Commit at ``now`` (at or after the instant)."""
        self._now = now
        self._go.set()

    async def cancel(self) -> None:
        """Drop the batch unwritten."""
        if self.task is not None and not self.task.done():
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)


class _AbandonedError(Exception):
    """The batch cannot be trimmed (a dropped run's rows cannot all be told apart):
    it rolls back whole, and its schedules fire by the ordinary path."""


class Lookahead:
    def __init__(
        self,
        db: Database,
        runs: Runs,
        plans: PlanCache,
        *,
        clock: Callable[[], datetime],
        grace: timedelta,
        fire_anew: FireAnew,
        fired: Callable[[Effects, datetime], None] | None = None,
    ) -> None:
        """``fired``: called with a prepared run's effects and its fire time (the fire-lag
        metric; recorded only if the run is kept and committed)."""
        self._db = db
        self._fired = fired
        self._runs = runs
        self._plans = plans
        self._clock = clock
        self._grace = grace
        self._fire_anew = fire_anew

    async def prepare(self, instant: datetime) -> Batch | None:
        """Build the runs of the plain fires at ``instant``; ``None`` when there are none.
        Returns once they are built, the batch waiting for its release."""
        started = self._clock()
        plain = await self._plain_fires(instant)
        if not plain:
            return None
        batch = Batch(instant)
        batch.task = asyncio.create_task(
            self._runs.in_transaction(functools.partial(self._run, batch=batch, plain=plain)),
            name="legato-scheduler-batch",
        )
        waiting = asyncio.ensure_future(batch._built.wait())
        await asyncio.wait({batch.task, waiting}, return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()
        if batch.task.done() and not batch.size:
            await batch.task  # the build failed: raise what it raised
            return None
        batch.build_seconds = (self._clock() - started).total_seconds()
        return batch

    async def commit(self, batch: Batch, now: datetime) -> list[str]:
        """Release ``batch`` at ``now``; returns the runs created (prepared, or fired afresh
        in their place). An abandoned batch creates nothing: its schedules are still due."""
        batch.release(now)
        assert batch.task is not None
        try:
            return await batch.task
        except _AbandonedError:
            log.warning("schedule_batch_abandoned", instant=batch.instant.isoformat())
            return []

    async def _plain_fires(self, instant: datetime) -> list[_Plain]:
        async with self._db.read() as session:
            rows = (
                await session.execute(
                    select(
                        ScheduleRow.pipeline_id,
                        ScheduleRow.next_fire_time,
                        PipelineRow.name,
                        PipelineRow.latest_version,
                    )
                    .join(PipelineRow, PipelineRow.id == ScheduleRow.pipeline_id)
                    .where(
                        ScheduleRow.next_fire_time <= instant,
                        ScheduleRow.paused.is_(False),
                        PipelineRow.archived.is_(False),
                    )
                    .order_by(ScheduleRow.pipeline_id)
                    .limit(MAX_PREPARED)
                )
            ).all()
            wanted = [(pid, name, version) for pid, due, name, version in rows if due == instant]
            await self._plans.load(session, wanted)
            plans = [await self._plans.get(session, *key) for key in wanted]
        found = (_plain(plan, instant) for plan in plans)
        return [fire for fire in found if fire is not None]

    async def _run(
        self, session: AsyncSession, effects: Effects, batch: Batch, plain: list[_Plain]
    ) -> list[str]:
        """The batch's transaction: build, wait for the release, then check and commit."""
        try:
            with session.no_autoflush:
                start = self._clock()
                prepared = await self._build(session, plain)
                window = (start, self._clock())
                stamps = _clock_readings(session.new, window) + _pending_readings(session, window)
                combined = Effects()
                for item in prepared:
                    _merge(combined, item.effects)
            batch.size = len(prepared)
        finally:
            batch._built.set()
        if not prepared:
            return []
        postgres = self._db.is_postgres
        checked: tuple[list[_Prepared], list[_Prepared]] | None = None
        if postgres:
            # Locked a moment before the instant: a change that comes in between waits
            # for the commit, as if it came after the instant. Not on SQLite, where
            # the lock would hold up every writer.
            await session.connection()
            await _released(batch, self._clock, LOCK_AHEAD)
            with session.no_autoflush:
                checked = await self._check(session, batch.instant, prepared)
        await batch._go.wait()
        now = batch._now
        assert now is not None
        with session.no_autoflush:
            if checked is None:
                checked = await self._check(session, batch.instant, prepared)
            keep, drop = checked
            if now - batch.instant > self._grace or any(now >= i.next_at for i in keep):
                keep, drop = [], prepared  # released too late: the instant's plans are stale
            if drop:
                _discard(session, {item.run.id for item in drop})
            stamp = self._clock()
            _restamp(stamps, stamp, [item.run for item in keep])
            await self._move_schedules(session, batch.instant, keep, stamp)
            if drop:
                for item in keep:
                    _merge(effects, item.effects)
            else:
                _merge(effects, combined)
        created = [item.run.id for item in keep]
        if drop:
            ids = sorted(item.pipeline_id for item in drop)
            created += await self._fire_anew(session, effects, ids, now, batch.cancels)
        return created

    async def _build(self, session: AsyncSession, plain: list[_Plain]) -> list[_Prepared]:
        prepared: list[_Prepared] = []
        for index, fire in enumerate(plain):
            if index and index % YIELD_EVERY == 0:
                await asyncio.sleep(0)
            plan, item_effects = fire.plan, Effects()
            try:
                run = await self._runs.create_scheduled(
                    session,
                    plan,
                    plan.spec.schedule.params,
                    trigger_of(fire.fire),
                    SCHEDULER,
                    item_effects,
                    queue_reason=None,
                )
            except LegatoError:
                continue  # the params no longer fit: the fire at the instant reports it
            if self._fired is not None:
                self._fired(item_effects, fire.fire.instant)
            prepared.append(
                _Prepared(
                    plan.pipeline_id, plan.version, fire.next_at, fire.capacity, run, item_effects
                )
            )
        return prepared

    async def _check(
        self, session: AsyncSession, instant: datetime, prepared: list[_Prepared]
    ) -> tuple[list[_Prepared], list[_Prepared]]:
        """Lock the batch's pipelines and schedules; split the prepared runs into those
        the database still agrees with and those to drop."""
        ids = [item.pipeline_id for item in prepared]
        postgres = self._db.is_postgres
        pipelines = await _lock(
            session, postgres, PipelineRow.id, ids, PipelineRow.latest_version, PipelineRow.archived
        )
        schedules = await _lock(
            session,
            postgres,
            ScheduleRow.pipeline_id,
            ids,
            ScheduleRow.next_fire_time,
            ScheduleRow.paused,
        )
        held = [item.pipeline_id for item in prepared if item.capacity]
        active: Counter[int] = Counter()
        if held:
            rows = await session.execute(
                select(RunRow.pipeline_id, func.count())
                .where(
                    among(RunRow.pipeline_id, held, postgres),
                    RunRow.status.in_(("running", "queued")),
                    RunRow.trigger_kind != TEST_TRIGGER,  # test runs do not overlap
                )
                .group_by(RunRow.pipeline_id)
            )
            active.update({pid: count for pid, count in rows.all()})
        keep: list[_Prepared] = []
        drop: list[_Prepared] = []
        for item in prepared:
            pid = item.pipeline_id
            still = (
                pipelines.get(pid) == (item.version, False)
                and schedules.get(pid) == (instant, False)
                and (not item.capacity or active[pid] < item.capacity)
            )
            (keep if still else drop).append(item)
        return keep, drop

    async def _move_schedules(
        self, session: AsyncSession, instant: datetime, keep: list[_Prepared], stamp: datetime
    ) -> None:
        by_next: dict[datetime, list[int]] = {}
        for item in keep:
            by_next.setdefault(item.next_at, []).append(item.pipeline_id)
        for next_at, ids in by_next.items():
            await session.execute(
                update(ScheduleRow)
                .where(among(ScheduleRow.pipeline_id, ids, self._db.is_postgres))
                .values(last_fire_time=instant, next_fire_time=next_at, update_time=stamp)
                .execution_options(synchronize_session=False)
            )


def among(column: Any, ids: list[int], postgres: bool) -> ColumnElement[bool]:
    """``column`` is one of ``ids``: one array parameter on PostgreSQL (one plan, however
    many ids), an IN list elsewhere."""
    matched: ColumnElement[bool] = (
        column == any_(bindparam(None, ids, type_=ARRAY(BigInteger)))
        if postgres
        else column.in_(ids)
    )
    return matched


async def _released(batch: Batch, clock: Callable[[], datetime], ahead: float) -> None:
    """Return ``ahead`` seconds before the batch's instant, or at its release if sooner."""
    delay = (batch.instant - clock()).total_seconds() - ahead
    if delay > 0:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await batch._go.wait()


async def _lock(
    session: AsyncSession, postgres: bool, key: Any, ids: list[int], *columns: Any
) -> dict[int, tuple[Any, ...]]:
    """Lock the rows of ``ids`` in id order; their ``columns`` by id."""
    rows = await session.execute(
        select(key, *columns).where(among(key, ids, postgres)).order_by(key).with_for_update()
    )
    return {row[0]: tuple(row[1:]) for row in rows.all()}


def _plain(plan: Plan, instant: datetime) -> _Plain | None:
    """The fire of ``plan``'s schedule at ``instant`` if it is plain (see the module
    docstring), else ``None``."""
    spec = plan.spec
    if not (spec.HasField("schedule") and spec.schedule.cron):
        return None
    if any(step.when for step in spec.steps):
        return None
    times = fire_times_of(spec.schedule)
    due, beyond = due_times(times, instant, instant)
    if beyond or len(due) != 1 or due[0].instant != instant:
        return None
    return _Plain(plan, due[0], times.next_after(instant).instant, capacity_of(spec))


_CLOCK_COLUMNS: dict[type, tuple[str, ...]] = {}


def _clock_columns(cls: type) -> tuple[str, ...]:
    """The time columns of a table that can hold a clock reading (the logical time is a
    fire time, never one)."""
    keys = _CLOCK_COLUMNS.get(cls)
    if keys is None:
        found = []
        mapper: Mapper[Any] = sa_inspect(cls)
        for attr in mapper.column_attrs:
            kind = attr.columns[0].type
            stored = kind.impl if isinstance(kind, TypeDecorator) else kind
            if isinstance(stored, DateTime) and attr.key != "logical_time":
                found.append(attr.key)
        keys = _CLOCK_COLUMNS[cls] = tuple(found)
    return keys


def _clock_readings(
    objects: Iterable[Any], window: tuple[datetime, datetime]
) -> list[tuple[Any, str]]:
    """(row, column) for every time on the new rows that the clock gave while they were
    built (it lies within ``window``)."""
    start, end = window
    found = []
    for obj in objects:
        values = obj.__dict__
        for key in _clock_columns(type(obj)):
            value = values.get(key)
            if value is not None and start <= value <= end:
                found.append((obj, key))
    return found


def _pending(session: AsyncSession) -> list[list[dict[str, Any]]]:
    """The rows the store keeps in the session to write at the commit in one statement
    (``store/log_lines.py``): lists of dicts of columns."""
    return [log_lines.pending(session)]


def _pending_readings(
    session: AsyncSession, window: tuple[datetime, datetime]
) -> list[tuple[Any, str]]:
    """(row, column) for the clock readings on the rows pending in the session."""
    start, end = window
    return [
        (row, key)
        for rows in _pending(session)
        for row in rows
        if isinstance(row, dict)
        for key, value in row.items()
        if isinstance(value, datetime) and key != "logical_time" and start <= value <= end
    ]


def _restamp(stamps: list[tuple[Any, str]], stamp: datetime, runs: list[RunRow]) -> None:
    """Move the build's clock readings to ``stamp``; a run's deadline moves with its
    start."""
    starts = {run.id: run.start_time for run in runs}
    for obj, key in stamps:
        if isinstance(obj, dict):
            obj[key] = stamp
        else:
            setattr(obj, key, stamp)
    for run in runs:
        start = starts[run.id]
        if run.deadline_time is not None and start is not None:
            run.deadline_time += stamp - start


def _discard(session: AsyncSession, run_ids: set[str]) -> None:
    """Take the dropped runs' rows out of the session, unwritten; abandon the batch when
    a new row belongs to no run or a dropped run is no longer only in the session."""
    pending = list(session.new)
    owners = [
        obj.id if isinstance(obj, RunRow) else getattr(obj, "run_id", None) for obj in pending
    ]
    if not all(isinstance(owner, str) for owner in owners):
        raise _AbandonedError("a new row belongs to no run")
    unwritten = sum(1 for obj in pending if isinstance(obj, RunRow) and obj.id in run_ids)
    if unwritten != len(run_ids):
        raise _AbandonedError("a dropped run was already written")
    for rows in _pending(session):
        if not all(isinstance(row, dict) and isinstance(row.get("run_id"), str) for row in rows):
            raise _AbandonedError("a row pending in the session belongs to no run")
        rows[:] = [row for row in rows if row["run_id"] not in run_ids]
    for obj, owner in zip(pending, owners, strict=True):
        if owner in run_ids:
            session.expunge(obj)


def _merge(into: Effects, part: Effects) -> None:
    """Add ``part``'s effects to ``into`` (the runs of one batch are distinct, so are the
    keys of their maps)."""
    for item in dataclasses.fields(Effects):
        value, target = getattr(part, item.name), getattr(into, item.name)
        if isinstance(value, bool):
            setattr(into, item.name, target or value)
        elif isinstance(value, list):
            target.extend(value)
        elif isinstance(value, set | dict):
            target.update(value)
        else:
            raise TypeError(f"Effects.{item.name} ({type(value).__name__}) cannot be merged")
