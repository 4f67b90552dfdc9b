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
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.access.actors import SCHEDULER
from control_plane.errors import LegatoError
from control_plane.execution.effects import Effects
from control_plane.execution.plans import Plan, PlanCache
from control_plane.execution.runs import Runs, TriggerSpec
from control_plane.execution.signals import Signals
from control_plane.scheduling.fire_times import FireTime, FireTimes
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
BATCH = 100
"""Schedules fired per transaction."""
MAX_SLEEP = 30.0
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


@functools.lru_cache(maxsize=4096)
def _fire_times(cron: str, timezone: str, skipped: int, repeated: int) -> FireTimes:
    schedule = spec_pb2.Schedule(cron=cron, timezone=timezone)
    schedule.dst.skipped = skipped  # type: ignore[assignment]
    schedule.dst.repeated = repeated  # type: ignore[assignment]
    return FireTimes.of(schedule)


def fire_times_of(schedule: spec_pb2.Schedule) -> FireTimes:
    """The schedule's fire times, built once per distinct schedule."""
    return _fire_times(
        schedule.cron, schedule.timezone, schedule.dst.skipped, schedule.dst.repeated
    )


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
            # cancel_previous: the new runs are queued behind these; cancelling them (in
            # their own transactions: runs are locked before pipelines everywhere) lets
            # the new ones start.
            for run_id in cancels:
                reason = "cancelled for the next scheduled run (overlap: cancel_previous)"
                await self._runs.cancel(run_id, reason, SCHEDULER)

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
                # Raises (InvalidArgument) before it writes anything.
                run_id = await self._create(session, effects, plan, fire, active, cancels)
                created.append(run_id)
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
        details = {"local_time": fire.local.isoformat()}
        if fire.dst:
            details["dst"] = fire.dst
        trigger = TriggerSpec(kind="schedule", logical_time=fire.instant, details=details)
        overlap = overlap_of(spec)
        limit = spec.limits.max_concurrent_runs
        capacity = limit if (limit or overlap == "allow") else 1
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
