"""The scheduler: fires each schedule at its fire times, exactly once.

It reads only what is due: ``schedules.next_fire_time`` is indexed, and between fire times
the loop sleeps until the earliest one (or until a pipeline changes), so idle schedules
cost nothing. Due schedules are fired in batches, each in a transaction that locks their
pipeline rows (in id order), re-reads their schedule rows, creates the runs and moves each
``next_fire_time`` on, all or nothing: a crash before the commit leaves the fire times due
(they fire after the restart), a crash after it leaves them done (they do not fire again).
Replicas sharing a PostgreSQL database queue on the pipeline rows, and the one that comes
second finds the fire times already moved on; the unique index on (pipeline, logical time)
of scheduled runs is the last word (a violation rolls the batch back; the next pass finds
nothing due).

The loop wakes ``lead`` (2 s) before the earliest next fire time and builds that instant's
batch ahead, then wakes at the instant and commits it (``lookahead.py``: what is built
ahead, and what is checked again at the instant); whatever the batch does not cover fires
here, right after it, at the instant.

What fires when the scheduler finds several fire times due (after downtime):

- a fire time at most ``grace`` late is on time and always fires;
- the older ones were missed, and ``catchup`` decides: ``none`` skips them, ``latest`` (the
  default) runs the most recent one unless an on-time fire supersedes it, ``all`` runs each
  in order — the most recent :data:`MAX_CATCHUP` at most; what is skipped is logged and
  written to the audit log.

When a scheduled run fires while runs of the pipeline are active (running or queued),
``overlap`` decides, within ``limits.max_concurrent_runs`` (1 when unset, except for
``allow``): ``queue`` (the default) queues it until a slot frees, ``skip`` records it as a
skipped run that says which run blocked it, ``cancel_previous`` queues it and, once the
transaction has committed, cancels the active runs (which starts it), ``allow`` starts it at
once up to ``max_concurrent_runs``. A failed run never blocks
the next one: only active runs count.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from datetime import datetime, timedelta

import structlog
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.access.actors import SCHEDULER
from control_plane.errors import LegatoError
from control_plane.execution.effects import Effects
from control_plane.execution.plans import Plan, PlanCache
from control_plane.execution.runs import Runs
from control_plane.execution.signals import Signals
from control_plane.scheduling.fire_times import FireTime
from control_plane.scheduling.firing import (
    MAX_CATCHUP,
    DueTimes,
    capacity_of,
    catchup_of,
    choose,
    due_times,
    fire_times_of,
    overlap_of,
    trigger_of,
)
from control_plane.scheduling.lookahead import LEAD, MAX_LEAD, Batch, Lookahead
from control_plane.statuses import TEST_TRIGGER
from control_plane.store import audit
from control_plane.store.db import Database
from control_plane.store.models import PipelineRow, RunRow, ScheduleRow

__all__ = ["MAX_CATCHUP", "Scheduler"]

log = structlog.get_logger("legato.scheduler")

BATCH = 100
"""Schedules fired per transaction by the ordinary path."""
MAX_SLEEP = 30.0


class Scheduler:
    def __init__(
        self,
        db: Database,
        runs: Runs,
        plans: PlanCache,
        signals: Signals,
        *,
        clock: Callable[[], datetime],
        grace: timedelta = timedelta(minutes=1),
        lead: float = LEAD,
        on_fired: Callable[[float], None] | None = None,
    ) -> None:
        """``on_fired``: told each fire's lag, in seconds from its fire time to the
        commit of its run (the metrics' histogram; in memory)."""
        self._db = db
        self._on_fired = on_fired
        self._runs = runs
        self._plans = plans
        self._signals = signals
        self._clock = clock
        self._grace = grace
        self._min_lead = self._lead = lead
        self._lookahead = Lookahead(
            db, runs, plans, clock=clock, grace=grace, fire_anew=self._fire_all, fired=self._fired
        )
        self._batch: Batch | None = None
        self._next: datetime | None = None  # the earliest next fire time, as last read
        self._prepared_for: datetime | None = None  # the instant last prepared

    async def run_forever(self) -> None:
        wake = self._signals.schedules
        try:
            while True:
                try:
                    await self.tick()
                    delay = self._until_next()
                except Exception:
                    log.exception("scheduler_failed")
                    delay = 1.0
                try:
                    async with asyncio.timeout(delay):
                        await wake.wait()
                except TimeoutError:
                    pass
                wake.clear()
        finally:
            await self.discard()

    async def discard(self) -> None:
        """Drop the batch prepared for the next instant, unwritten (the scheduler stops)."""
        batch, self._batch = self._batch, None
        if batch is not None:
            await batch.cancel()

    async def tick(self, now: datetime | None = None) -> list[str]:
        """Fire everything due at ``now`` (default: the clock) — the batch prepared for
        it first — and prepare the next instant's batch when it is less than the lead
        away. Returns the runs created."""
        now = now or self._clock()
        created: list[str] = []
        batch = self._batch
        if batch is not None and now >= batch.instant:
            self._batch = None
            created += await self._commit(batch, now)
        created += await self._fire_due(now)
        self._next = await self._earliest()
        upcoming = self._next
        if (
            self._batch is None
            and upcoming is not None
            and upcoming != self._prepared_for
            and now < upcoming <= now + timedelta(seconds=self._lead)
        ):
            self._prepared_for = upcoming
            self._batch = await self._lookahead.prepare(upcoming)
            if self._batch is not None:
                self._lead = min(MAX_LEAD, max(self._min_lead, 2 * self._batch.build_seconds))
        return created

    async def _commit(self, batch: Batch, now: datetime) -> list[str]:
        try:
            created = await self._lookahead.commit(batch, now)
        except IntegrityError:
            log.warning("schedule_batch_fired_elsewhere", instant=batch.instant.isoformat())
            return []
        await self._cancel_previous(batch.cancels)
        return created

    async def _fire_due(self, now: datetime) -> list[str]:
        created: list[str] = []
        seen: set[int] = set()
        while True:
            due = [i for i in await self._due(now) if i not in seen]
            if not due:
                return created
            seen.update(due)
            cancels: list[str] = []
            try:
                created += await self._runs.in_transaction(
                    functools.partial(self._fire_all, due=due, now=now, cancels=cancels)
                )
            except IntegrityError:
                # Another replica made one of these fire times' runs first (the pipeline
                # locks make this all but impossible): the batch rolled back, and the next
                # tick fires whatever is still due.
                log.warning("schedule_batch_fired_elsewhere", pipelines=due)
            await self._cancel_previous(cancels)

    async def _cancel_previous(self, cancels: list[str]) -> None:
        # cancel_previous: the new runs are queued behind these; cancelling them (in
        # their own transactions: runs are locked before pipelines everywhere) lets
        # the new ones start.
        for run_id in cancels:
            reason = "cancelled for the next scheduled run (overlap: cancel_previous)"
            await self._runs.cancel(run_id, reason, SCHEDULER)

    def _until_next(self) -> float:
        """Seconds to sleep: until the prepared batch's instant or the next fire time,
        whichever comes first, or until the next fire time's batch is to be prepared."""
        targets = [] if self._batch is None else [self._batch.instant]
        upcoming = self._next
        if upcoming is not None:
            if self._batch is None and upcoming != self._prepared_for:
                upcoming -= timedelta(seconds=self._lead)
            targets.append(upcoming)
        if not targets:
            return MAX_SLEEP
        return max(0.0, min(MAX_SLEEP, (min(targets) - self._clock()).total_seconds()))

    async def _earliest(self) -> datetime | None:
        async with self._db.read() as session:
            earliest: datetime | None = (
                await session.execute(
                    select(ScheduleRow.next_fire_time)
                    .where(ScheduleRow.next_fire_time.is_not(None), ScheduleRow.paused.is_(False))
                    .order_by(ScheduleRow.next_fire_time)
                    .limit(1)
                )
            ).scalar_one_or_none()
        return earliest

    async def _due(self, now: datetime) -> list[int]:
        async with self._db.read() as session:
            rows = await session.execute(
                select(ScheduleRow.pipeline_id)
                .where(ScheduleRow.next_fire_time <= now, ScheduleRow.paused.is_(False))
                .order_by(ScheduleRow.pipeline_id)
                .limit(BATCH)
            )
            return list(rows.scalars())

    async def _fire_all(
        self,
        session: AsyncSession,
        effects: Effects,
        due: list[int],
        now: datetime,
        cancels: list[str],
    ) -> list[str]:
        """Fire a batch of due schedules: their pipelines locked in id order (replicas
        queue on them), schedules and active runs read in one query each."""
        pipelines = {
            row.id: row
            for row in (
                await session.execute(
                    select(PipelineRow)
                    .where(PipelineRow.id.in_(due))
                    .order_by(PipelineRow.id)
                    .with_for_update()
                )
            ).scalars()
        }
        schedules = {
            row.pipeline_id: row
            for row in (
                await session.execute(
                    select(ScheduleRow)
                    .where(ScheduleRow.pipeline_id.in_(due))
                    .with_for_update()
                    .execution_options(populate_existing=True)
                )
            ).scalars()
        }
        active: dict[int, list[str]] = {pipeline_id: [] for pipeline_id in due}
        rows = await session.execute(
            select(RunRow.pipeline_id, RunRow.id)
            .where(RunRow.pipeline_id.in_(due), RunRow.status.in_(("running", "queued")))
            .where(RunRow.trigger_kind != TEST_TRIGGER)  # test runs (TestStep) do not overlap
            .order_by(RunRow.create_time)
        )
        for pipeline_id, run_id in rows.all():
            active[pipeline_id].append(run_id)
        await self._plans.load(
            session, [(row.id, row.name, row.latest_version) for row in pipelines.values()]
        )
        # From here on nothing is read: the runs and steps are inserted in bulk at the
        # commit (the unit of work batches them), not one flush per run.
        created: list[str] = []
        for pipeline_id in due:
            pipeline, schedule = pipelines.get(pipeline_id), schedules.get(pipeline_id)
            if pipeline is not None and schedule is not None:
                created += await self._fire(
                    session, effects, pipeline, schedule, active[pipeline_id], now, cancels
                )
        return created

    async def _fire(
        self,
        session: AsyncSession,
        effects: Effects,
        pipeline: PipelineRow,
        schedule: ScheduleRow,
        active: list[str],
        now: datetime,
        cancels: list[str],
    ) -> list[str]:
        due_at = schedule.next_fire_time
        if due_at is None or due_at > now or schedule.paused:
            return []  # fired by another replica, or paused, since we looked
        plan = await self._plans.get(session, pipeline.id, pipeline.name, pipeline.latest_version)
        spec = plan.spec
        if pipeline.archived or not (spec.HasField("schedule") and spec.schedule.cron):
            schedule.next_fire_time = None
            return []
        times = fire_times_of(spec.schedule)
        due, beyond = due_times(times, due_at, now)
        decision = choose(due, beyond, now, self._grace, catchup_of(spec))
        schedule.last_fire_time = due[-1].instant if due else due_at
        schedule.next_fire_time = times.next_after(now).instant
        schedule.update_time = now
        if decision.skipped:
            self._record_missed(session, pipeline, decision, now)
        created: list[str] = []
        for fire in decision.fire:
            try:
                # Raises (InvalidArgument) before it writes anything.
                run_id = await self._create(session, effects, plan, fire, active, cancels)
                created.append(run_id)
                self._fired(effects, fire.instant)
            except LegatoError as exc:
                # The schedule's params no longer fit (they were valid when applied): the
                # fire time is spent, the reason is in the log and the audit log.
                log.error("schedule_fire_failed", pipeline=pipeline.name, error=exc.message)
                audit.record(
                    session,
                    now=now,
                    actor=SCHEDULER,
                    action="ScheduledRunFailedToStart",
                    resource=f"pipelines/{pipeline.name}",
                    details={"logical_time": fire.instant.isoformat(), "error": exc.message},
                )
        return created

    async def _create(
        self,
        session: AsyncSession,
        effects: Effects,
        plan: Plan,
        fire: FireTime,
        active: list[str],
        cancels: list[str],
    ) -> str:
        """Create the run of one fire time by the overlap policy; ``active`` (the
        pipeline's running and queued runs) gains it unless it was skipped."""
        spec = plan.spec
        trigger = trigger_of(fire)
        overlap = overlap_of(spec)
        limit = spec.limits.max_concurrent_runs
        capacity = capacity_of(spec)
        params = spec.schedule.params
        if not capacity or len(active) < capacity:
            run = await self._runs.create_scheduled(
                session, plan, params, trigger, SCHEDULER, effects, queue_reason=None
            )
            active.append(run.id)
            return run.id
        if overlap == "skip":
            reason = f"overlap policy skip: run {active[0]} is still active"
            skipped = await self._runs.record_skipped(
                session, plan, params, trigger, SCHEDULER, reason, effects
            )
            return skipped.id
        if overlap == "cancel_previous":
            why = f"waiting: overlap policy cancel_previous; cancelling {', '.join(active[:5])}"
            cancels.extend(r for r in active if r not in cancels)
        elif limit:
            shown = ", ".join(active[:5]) + (" ..." if len(active) > 5 else "")
            why = f"waiting: limits.max_concurrent_runs ({limit}) reached; active runs: {shown}"
        else:
            why = f"waiting: overlap policy {overlap}; run {active[0]} is still active"
        run = await self._runs.create_scheduled(
            session, plan, params, trigger, SCHEDULER, effects, queue_reason=why
        )
        active.append(run.id)
        return run.id

    def _fired(self, effects: Effects, instant: datetime) -> None:
        """Tell ``on_fired`` the lag of the fire at ``instant`` once its run is committed."""
        if self._on_fired is not None:
            hook, clock = self._on_fired, self._clock
            effects.observed.append(lambda: hook((clock() - instant).total_seconds()))

    def _record_missed(
        self, session: AsyncSession, pipeline: PipelineRow, decision: DueTimes, now: datetime
    ) -> None:
        log.warning(
            "schedule_fire_times_missed",
            pipeline=pipeline.name,
            missed=decision.skipped,
            catchup=decision.catchup,
        )
        audit.record(
            session,
            now=now,
            actor=SCHEDULER,
            action="SkipMissedFireTimes",
            resource=f"pipelines/{pipeline.name}",
            details={"missed": decision.skipped, "catchup": decision.catchup},
        )
