"""Backfills: a run for each fire time of a schedule in a past range.

``create`` lists the fire times in ``[start, end)`` (with ``only_missing``, those without a
succeeded run of that logical time), and — unless it is a dry run — creates all their runs
at once, queued, in one transaction: nothing is half-created. Queued backfill runs start in
logical-time order behind every live run of the pipeline (``promote_queued`` takes live
runs first) and within ``limits.max_concurrent_runs`` (1 when unset), so a backfill never
crowds out the schedule. ``cancel`` stops the backfill as a whole: its queued runs first,
so none is promoted meanwhile, then its running ones.

A backfill's status is read from its runs: running while any is active, else failed when
any failed or timed out, else succeeded — or cancelled, once cancelled.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.access.actors import Actor
from control_plane.errors import FailedPrecondition, InvalidArgument, NotFound, pipeline_not_found
from control_plane.execution.effects import Effects
from control_plane.execution.ids import new_run_id
from control_plane.execution.plans import PlanCache
from control_plane.execution.runs import Runs, TriggerSpec
from control_plane.execution.transitions import Transitions
from control_plane.quoting import quote
from control_plane.scheduling.fire_times import FireTime, FireTimes
from control_plane.scheduling.schedules import has_schedule
from control_plane.statuses import RUN_TERMINAL
from control_plane.store import audit, requests
from control_plane.store import pipelines as repo
from control_plane.store.db import Database
from control_plane.store.models import BackfillRow, RunRow

__all__ = ["MAX_BACKFILL", "BackfillView", "Backfills"]

MAX_BACKFILL = 10_000
"""The most fire times one backfill may cover."""


@dataclass(frozen=True)
class BackfillView:
    row: BackfillRow
    status: str
    runs_done: int
    runs_failed: int


class Backfills:
    def __init__(
        self,
        db: Database,
        runs: Runs,
        plans: PlanCache,
        transitions: Transitions,
        *,
        clock: Callable[[], datetime],
    ) -> None:
        self._db = db
        self._runs = runs
        self._plans = plans
        self._transitions = transitions
        self._clock = clock

    async def create(
        self,
        pipeline: str,
        start: datetime,
        end: datetime,
        *,
        dry_run: bool,
        only_missing: bool,
        actor: Actor,
    ) -> tuple[BackfillView | None, list[FireTime]]:
        if start >= end:
            raise InvalidArgument(
                f"start_time {start.isoformat()} is not before end_time {end.isoformat()}; "
                "a backfill covers [start, end)",
                reason="INVALID_RANGE",
            )
        if dry_run:
            async with self._db.read() as session:
                return None, await self._fire_times(session, pipeline, start, end, only_missing)
        request = requests.Fingerprint.of(
            pipeline=pipeline,
            start_time=start.isoformat(),
            end_time=end.isoformat(),
            only_missing=only_missing,
        )
        work = functools.partial(
            self._create,
            pipeline=pipeline,
            start=start,
            end=end,
            only_missing=only_missing,
            actor=actor,
            request=request,
        )
        return await requests.once(actor.request_id, lambda: self._runs.in_transaction(work))

    async def _create(
        self,
        session: AsyncSession,
        effects: Effects,
        *,
        pipeline: str,
        start: datetime,
        end: datetime,
        only_missing: bool,
        actor: Actor,
        request: requests.Fingerprint,
    ) -> tuple[BackfillView | None, list[FireTime]]:
        replay = await requests.find_result(session, "CreateBackfill", actor.request_id, request)
        if replay is not None:
            view = await self._view(session, str(replay["backfill_id"]))
            return view, []
        times = await self._fire_times(session, pipeline, start, end, only_missing)
        row = await repo.find_pipeline(session, pipeline, for_update=True)
        assert row is not None  # _fire_times checked it
        plan = await self._plans.get(session, row.id, row.name, row.latest_version)
        now = self._clock()
        backfill = BackfillRow(
            id=new_run_id(),
            pipeline_id=row.id,
            pipeline=row.name,
            start_time=start,
            end_time=end,
            only_missing=only_missing,
            status="running",
            runs_total=len(times),
            actor=actor.name,
            create_time=now,
        )
        session.add(backfill)
        why = f"waiting: backfill {backfill.id} runs behind live runs, oldest first"
        for fire in times:
            trigger = TriggerSpec(
                kind="backfill",
                logical_time=fire.instant,
                details={"backfill_id": backfill.id, "local_time": fire.local.isoformat()},
            )
            await self._runs.create_scheduled(
                session,
                plan,
                plan.spec.schedule.params,
                trigger,
                actor,
                effects,
                queue_reason=why,
                backfill_id=backfill.id,
            )
        await self._transitions.promote_queued(session, row.id, plan, effects)
        await requests.record_result(
            session, "CreateBackfill", actor.request_id, {"backfill_id": backfill.id}, now, request
        )
        audit.record(
            session,
            now=now,
            actor=actor,
            action="CreateBackfill",
            resource=f"backfills/{backfill.id}",
            pipeline=row.name,
            details={
                "pipeline": row.name,
                "start_time": start.isoformat(),
                "end_time": end.isoformat(),
                "runs": len(times),
                "only_missing": only_missing,
            },
        )
        return await self._view(session, backfill.id), times

    async def cancel(self, backfill_id: str, actor: Actor) -> BackfillView:
        return await self._runs.in_transaction(
            functools.partial(self._cancel, backfill_id=backfill_id, actor=actor)
        )

    async def _cancel(
        self, session: AsyncSession, effects: Effects, *, backfill_id: str, actor: Actor
    ) -> BackfillView:
        backfill = await self._row(session, backfill_id)
        if backfill.status != "cancelled":
            backfill.status = "cancelled"
            backfill.finish_time = self._clock()
            why = f"backfill {backfill_id} cancelled by {actor.name}"
            for status in ("queued", "running"):
                ids = await session.execute(
                    select(RunRow.id)
                    .where(RunRow.backfill_id == backfill_id, RunRow.status == status)
                    .order_by(RunRow.id)
                )
                for run_id in ids.scalars():
                    run = await self._transitions.lock_run(session, run_id)
                    await self._transitions.stop_run(session, run, "cancelled", why, effects)
            audit.record(
                session,
                now=self._clock(),
                actor=actor,
                action="CancelBackfill",
                resource=f"backfills/{backfill_id}",
                pipeline=backfill.pipeline,
            )
        return await self._view(session, backfill_id)

    async def get(self, backfill_id: str) -> BackfillView:
        async with self._db.read() as session:
            return await self._view(session, backfill_id)

    async def _fire_times(
        self,
        session: AsyncSession,
        pipeline: str,
        start: datetime,
        end: datetime,
        only_missing: bool,
    ) -> list[FireTime]:
        row = await repo.find_pipeline(session, pipeline)
        if row is None:
            raise pipeline_not_found(pipeline)
        if row.archived:
            raise FailedPrecondition(
                f"pipeline {pipeline!r} is archived; restore it to backfill it",
                reason="PIPELINE_ARCHIVED",
            )
        plan = await self._plans.get(session, row.id, row.name, row.latest_version)
        if not has_schedule(plan.spec):
            raise FailedPrecondition(
                f"pipeline {pipeline!r} has no schedule, so no fire times to backfill",
                reason="NO_SCHEDULE",
            )
        times = list(
            FireTimes.of(plan.spec.schedule).between(
                start - timedelta(microseconds=1), end, limit=MAX_BACKFILL + 1
            )
        )
        times = [t for t in times if t.instant < end]
        if len(times) > MAX_BACKFILL:
            raise InvalidArgument(
                f"the range has more than {MAX_BACKFILL} fire times; split it into "
                "smaller backfills",
                reason="BACKFILL_TOO_LARGE",
            )
        if only_missing and times:
            done = await session.execute(
                select(RunRow.logical_time).where(
                    RunRow.pipeline_id == row.id,
                    RunRow.status == "succeeded",
                    RunRow.logical_time >= times[0].instant,
                    RunRow.logical_time <= times[-1].instant,
                )
            )
            succeeded = set(done.scalars())
            times = [t for t in times if t.instant not in succeeded]
        return times

    async def _row(self, session: AsyncSession, backfill_id: str) -> BackfillRow:
        row = await session.get(BackfillRow, backfill_id, with_for_update=True)
        if row is None:
            raise NotFound(
                f"backfill {quote(backfill_id)} does not exist",
                reason="BACKFILL_NOT_FOUND",
                metadata={"backfill_id": backfill_id},
            )
        return row

    async def _view(self, session: AsyncSession, backfill_id: str) -> BackfillView:
        row = await session.get(BackfillRow, backfill_id, populate_existing=True)
        if row is None:
            raise NotFound(
                f"backfill {quote(backfill_id)} does not exist", reason="BACKFILL_NOT_FOUND"
            )
        counts = dict(
            (
                await session.execute(
                    select(RunRow.status, func.count())
                    .where(RunRow.backfill_id == backfill_id)
                    .group_by(RunRow.status)
                )
            ).all()
        )
        done = sum(n for status, n in counts.items() if status in RUN_TERMINAL)
        failed = counts.get("failed", 0) + counts.get("timed_out", 0)
        if row.status == "cancelled":
            status = "cancelled"
        elif done < sum(counts.values()):
            status = "running"
        else:
            status = "failed" if failed else "succeeded"
        return BackfillView(row, status, done, failed)
