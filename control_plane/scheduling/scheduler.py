"""The scheduler: fires each schedule at its fire times, exactly once.

It reads only what is due: ``schedules.next_fire_time`` is indexed, and between fire times
the loop sleeps until the earliest one (or until a pipeline changes), so idle schedules
cost nothing. Each due schedule is fired in a transaction that locks its pipeline row,
re-reads its schedule row, creates the run(s) and moves ``next_fire_time`` on, all or
nothing: a crash before the commit leaves the fire time due (it fires after the restart), a
crash after it leaves it done (it does not fire again). Replicas sharing a PostgreSQL
database queue on the pipeline row, and the loser finds the fire time already moved on;
the unique index on (pipeline, logical time) of scheduled runs is the last word.

What fires when the scheduler finds several fire times due (after downtime):

- a fire time at most ``grace`` late is on time and always fires;
- the older ones were missed, and ``catchup`` decides: ``none`` skips them, ``latest`` (the
  default) runs the most recent one unless an on-time fire supersedes it, ``all`` runs each
  in order — the most recent :data:`MAX_CATCHUP` at most; what is skipped is logged and
  written to the audit log.

When a scheduled run fires while runs of the pipeline are active (running or queued),
``overlap`` decides, within ``limits.max_concurrent_runs`` (1 when unset, except for
``allow``): ``queue`` (the default) queues it until a slot frees, ``skip`` records it as a
skipped run that says which run blocked it, ``cancel_previous`` cancels the active runs
first, ``allow`` starts it at once up to ``max_concurrent_runs``. A failed run never blocks
the next one: only active runs count.
"""

from __future__ import annotations

import asyncio
import functools
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.errors import LegatoError
from control_plane.execution.effects import Effects
from control_plane.execution.plans import Plan, PlanCache
from control_plane.execution.runs import Runs, TriggerSpec
from control_plane.execution.signals import Signals
from control_plane.fire_times import FireTime, FireTimes
from control_plane.registry import Actor
from control_plane.store import audit
from control_plane.store.db import Database
from control_plane.store.models import PipelineRow, RunRow, ScheduleRow
from legato.v1 import spec_pb2

__all__ = ["MAX_CATCHUP", "Scheduler"]

log = structlog.get_logger("legato.scheduler")

MAX_CATCHUP = 100
"""The most missed fire times ``catchup: all`` runs after one downtime."""
MAX_SCAN = 100_000
"""The most missed fire times read after one downtime (the count is still reported)."""
BATCH = 50
"""Schedules fired per transaction."""
MAX_SLEEP = 30.0
SCHEDULER = Actor(name="scheduler")
_CATCHUP = {
    spec_pb2.CATCHUP_POLICY_UNSPECIFIED: "latest",
    spec_pb2.CATCHUP_POLICY_NONE: "none",
    spec_pb2.CATCHUP_POLICY_LATEST: "latest",
    spec_pb2.CATCHUP_POLICY_ALL: "all",
}
_OVERLAP = {
    spec_pb2.OVERLAP_POLICY_UNSPECIFIED: "queue",
    spec_pb2.OVERLAP_POLICY_QUEUE: "queue",
    spec_pb2.OVERLAP_POLICY_SKIP: "skip",
    spec_pb2.OVERLAP_POLICY_CANCEL_PREVIOUS: "cancel_previous",
    spec_pb2.OVERLAP_POLICY_ALLOW: "allow",
}


@dataclass(frozen=True)
class DueTimes:
    """What to do with the fire times found due: ``fire`` them, and how many were missed
    and are not run."""

    fire: list[FireTime]
    skipped: int
    catchup: str


def overlap_of(spec: spec_pb2.PipelineSpec) -> str:
    return _OVERLAP.get(spec.schedule.overlap, "queue")


def choose(
    due: list[FireTime], missed_total: int, now: datetime, grace: timedelta, catchup: str
) -> DueTimes:
    """Split due fire times into on time and missed, and apply the catch-up policy.
    ``missed_total`` counts missed fire times beyond those in ``due``."""
    on_time = [f for f in due if now - f.instant <= grace]
    missed = [f for f in due if now - f.instant > grace]
    total_missed = len(missed) + missed_total
    if catchup == "all":
        run = missed[-MAX_CATCHUP:]
    elif catchup == "latest" and missed and not on_time:
        run = missed[-1:]
    else:
        run = []
    return DueTimes(run + on_time, total_missed - len(run), catchup)


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
    ) -> None:
        self._db = db
        self._runs = runs
        self._plans = plans
        self._signals = signals
        self._clock = clock
        self._grace = grace

    async def run_forever(self) -> None:
        wake = self._signals.schedules
        while True:
            try:
                await self.tick()
                delay = await self._until_next()
            except Exception:
                log.exception("scheduler_failed")
                delay = 1.0
            try:
                async with asyncio.timeout(delay):
                    await wake.wait()
            except TimeoutError:
                pass
            wake.clear()

    async def tick(self, now: datetime | None = None) -> list[str]:
        """Fire everything due at ``now`` (default: the clock); returns the runs created."""
        now = now or self._clock()
        created: list[str] = []
        seen: set[int] = set()
        while True:
            due = [i for i in await self._due(now) if i not in seen]
            if not due:
                return created
            seen.update(due)
            await self._cancel_previous(due, now)
            created += await self._runs.in_transaction(
                functools.partial(self._fire_all, due=due, now=now)
            )

    async def _until_next(self) -> float:
        async with self._db.read() as session:
            earliest = (
                await session.execute(
                    select(ScheduleRow.next_fire_time)
                    .where(ScheduleRow.next_fire_time.is_not(None), ScheduleRow.paused.is_(False))
                    .order_by(ScheduleRow.next_fire_time)
                    .limit(1)
                )
            ).scalar_one_or_none()
        if earliest is None:
            return MAX_SLEEP
        return max(0.0, min(MAX_SLEEP, (earliest - self._clock()).total_seconds()))

    async def _due(self, now: datetime) -> list[int]:
        async with self._db.read() as session:
            rows = await session.execute(
                select(ScheduleRow.pipeline_id)
                .where(ScheduleRow.next_fire_time <= now, ScheduleRow.paused.is_(False))
                .order_by(ScheduleRow.pipeline_id)
                .limit(BATCH)
            )
            return list(rows.scalars())

    async def _cancel_previous(self, due: list[int], now: datetime) -> None:
        """``cancel_previous``: cancel the active runs in their own transactions first
        (runs are locked before pipelines everywhere), then fire."""
        async with self._db.read() as session:
            targets: list[tuple[str, str]] = []
            for pipeline_id in due:
                plan = await self._latest_plan(session, pipeline_id)
                if plan is None or overlap_of(plan.spec) != "cancel_previous":
                    continue
                active = await session.execute(
                    select(RunRow.id).where(
                        RunRow.pipeline_id == pipeline_id,
                        RunRow.status.in_(("running", "queued")),
                    )
                )
                targets += [(run_id, plan.pipeline) for run_id in active.scalars()]
        for run_id, _pipeline in targets:
            reason = "cancelled for the next scheduled run (overlap: cancel_previous)"
            await self._runs.cancel(run_id, reason, SCHEDULER)

    async def _latest_plan(self, session: AsyncSession, pipeline_id: int) -> Plan | None:
        pipeline = await session.get(PipelineRow, pipeline_id)
        if pipeline is None or pipeline.latest_version == 0:
            return None
        return await self._plans.get(session, pipeline.id, pipeline.name, pipeline.latest_version)

    async def _fire_all(
        self, session: AsyncSession, effects: Effects, due: list[int], now: datetime
    ) -> list[str]:
        created: list[str] = []
        for pipeline_id in due:
            try:
                async with session.begin_nested():
                    created += await self._fire(session, effects, pipeline_id, now)
            except IntegrityError:
                # Another replica made this fire time's run first: it is done.
                log.info("schedule_fired_elsewhere", pipeline_id=pipeline_id)
        return created

    async def _fire(
        self, session: AsyncSession, effects: Effects, pipeline_id: int, now: datetime
    ) -> list[str]:
        pipeline = (
            await session.execute(
                select(PipelineRow).where(PipelineRow.id == pipeline_id).with_for_update()
            )
        ).scalar_one_or_none()
        schedule = await session.get(
            ScheduleRow, pipeline_id, with_for_update=True, populate_existing=True
        )
        if pipeline is None or schedule is None:
            return []
        due_at = schedule.next_fire_time
        if due_at is None or due_at > now or schedule.paused:
            return []  # fired by another replica, or paused, since we looked
        plan = await self._plans.get(session, pipeline.id, pipeline.name, pipeline.latest_version)
        spec = plan.spec
        if pipeline.archived or not (spec.HasField("schedule") and spec.schedule.cron):
            schedule.next_fire_time = None
            return []
        times = FireTimes.of(spec.schedule)
        due, beyond = _due_times(times, due_at, now)
        decision = choose(due, beyond, now, self._grace, _CATCHUP[spec.schedule.catchup])
        schedule.last_fire_time = due[-1].instant if due else due_at
        schedule.next_fire_time = times.next_after(now).instant
        schedule.update_time = now
        if decision.skipped:
            self._record_missed(session, pipeline, decision, now)
        created: list[str] = []
        for fire in decision.fire:
            try:
                async with session.begin_nested():
                    created.append(await self._create(session, effects, plan, fire))
            except LegatoError as exc:
                # The schedule's params no longer fit (they were valid when applied): the
                # fire time is spent, the reason is in the log and the audit log.
                log.error("schedule_fire_failed", pipeline=pipeline.name, error=exc.message)
                audit.record(
                    session,
                    now=now,
                    actor=SCHEDULER.name,
                    action="ScheduledRunFailedToStart",
                    resource=f"pipelines/{pipeline.name}",
                    request_id="",
                    details={"logical_time": fire.instant.isoformat(), "error": exc.message},
                )
        return created

    async def _create(
        self, session: AsyncSession, effects: Effects, plan: Plan, fire: FireTime
    ) -> str:
        spec = plan.spec
        details = {"local_time": fire.local.isoformat()}
        if fire.dst:
            details["dst"] = fire.dst
        trigger = TriggerSpec(kind="schedule", logical_time=fire.instant, details=details)
        overlap = overlap_of(spec)
        limit = spec.limits.max_concurrent_runs
        capacity = limit if (limit or overlap == "allow") else 1
        active = await self._active(session, plan.pipeline_id)
        params = spec.schedule.params
        if not capacity or len(active) < capacity:
            run = await self._runs.create_scheduled(
                session, plan, params, trigger, SCHEDULER, effects, queue_reason=None
            )
            return run.id
        if overlap == "skip":
            reason = f"overlap policy skip: run {active[0]} is still active"
            skipped = await self._runs.record_skipped(
                session, plan, params, trigger, SCHEDULER, reason, effects
            )
            return skipped.id
        if limit:
            shown = ", ".join(active[:5]) + (" ..." if len(active) > 5 else "")
            why = f"waiting: limits.max_concurrent_runs ({limit}) reached; active runs: {shown}"
        else:
            why = f"waiting: overlap policy {overlap}; run {active[0]} is still active"
        run = await self._runs.create_scheduled(
            session, plan, params, trigger, SCHEDULER, effects, queue_reason=why
        )
        return run.id

    async def _active(self, session: AsyncSession, pipeline_id: int) -> list[str]:
        rows = await session.execute(
            select(RunRow.id)
            .where(RunRow.pipeline_id == pipeline_id, RunRow.status.in_(("running", "queued")))
            .order_by(RunRow.create_time)
        )
        return list(rows.scalars())

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
            actor=SCHEDULER.name,
            action="SkipMissedFireTimes",
            resource=f"pipelines/{pipeline.name}",
            request_id="",
            details={"missed": decision.skipped, "catchup": decision.catchup},
        )


def _due_times(times: FireTimes, due_at: datetime, now: datetime) -> tuple[list[FireTime], int]:
    """The fire times from ``due_at`` to ``now``: the last :data:`MAX_CATCHUP` + 1 of them,
    and how many more came before those."""
    window: deque[FireTime] = deque(maxlen=MAX_CATCHUP + 1)
    count = 0
    for fire in times.between(due_at - timedelta(microseconds=1), now, limit=MAX_SCAN):
        window.append(fire)
        count += 1
    kept = list(window)
    if count == len(kept) and (not kept or kept[0].instant != due_at):
        # The stored time is not a fire time of the current cron (a new version changed
        # it while it was due): it still fires, as the old version promised.
        zone = times.next_after(due_at).local.tzinfo
        local = due_at.astimezone(zone)
        kept.insert(0, FireTime(due_at, local.replace(tzinfo=None), local, ""))
        count += 1
    return kept, count - len(kept)
