"""What users do with a schedule: preview its fire times (and why it is not firing), pause
it, resume it. Resuming clears the failure count and starts again from the next fire time:
the paused period is not caught up (a backfill does that, on purpose)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.access.actors import Actor
from control_plane.errors import FailedPrecondition, InvalidArgument, pipeline_not_found
from control_plane.pipelines.versioning import spec_from_json
from control_plane.scheduling.fire_times import FireTime, FireTimes
from control_plane.scheduling.schedules import has_schedule, next_fire_time
from control_plane.store import audit
from control_plane.store import pipelines as repo
from control_plane.store.db import Database
from control_plane.store.models import PipelineRow, ScheduleRow
from legato.v1 import spec_pb2

__all__ = ["MAX_PREVIEW", "Preview", "ScheduleControl"]

MAX_PREVIEW = 1000


@dataclass(frozen=True)
class Preview:
    schedule: spec_pb2.Schedule
    fire_times: list[FireTime]
    state: ScheduleRow | None
    waiting_reason: str


class ScheduleControl:
    def __init__(
        self,
        db: Database,
        *,
        clock: Callable[[], datetime],
        on_change: Callable[[], Awaitable[None]],
    ) -> None:
        self._db = db
        self._clock = clock
        self._on_change = on_change

    async def preview(self, name: str, count: int, start: datetime | None) -> Preview:
        if count > MAX_PREVIEW:
            raise InvalidArgument(
                f"count {count} is more than {MAX_PREVIEW} fire times",
                reason="COUNT_TOO_LARGE",
            )
        async with self._db.read() as session:
            pipeline, spec = await self._pipeline(session, name)
            state = await session.get(ScheduleRow, pipeline.id)
        times = FireTimes.of(spec.schedule)
        moment = start or self._clock()
        fires: list[FireTime] = []
        for _ in range(count or 10):
            fire = times.next_after(moment)
            fires.append(fire)
            moment = fire.instant
        return Preview(spec.schedule, fires, state, _waiting(pipeline, state))

    async def pause(self, name: str, reason: str, actor: Actor) -> None:
        async def change(session: AsyncSession, pipeline: PipelineRow, row: ScheduleRow) -> None:
            now = self._clock()
            if not row.paused:
                row.paused = True
                row.pause_time = now
            row.pause_reason = reason or f"paused by {actor.name}"
            row.update_time = now

        await self._change(name, actor, "PauseSchedule", change)

    async def resume(self, name: str, actor: Actor) -> None:
        async def change(session: AsyncSession, pipeline: PipelineRow, row: ScheduleRow) -> None:
            now = self._clock()
            _, spec = await self._pipeline(session, pipeline.name)
            row.paused = False
            row.pause_reason = ""
            row.pause_time = None
            row.consecutive_failures = 0
            row.next_fire_time = None if pipeline.archived else next_fire_time(spec, now)
            row.update_time = now

        await self._change(name, actor, "ResumeSchedule", change)

    async def _change(
        self,
        name: str,
        actor: Actor,
        action: str,
        change: Callable[[AsyncSession, PipelineRow, ScheduleRow], Awaitable[None]],
    ) -> None:
        async with self._db.write() as session:
            pipeline, _ = await self._pipeline(session, name, for_update=True)
            row = await session.get(ScheduleRow, pipeline.id, with_for_update=True)
            if row is None:
                raise FailedPrecondition(
                    f"pipeline {name!r} has no schedule state yet; apply a version with a schedule",
                    reason="NO_SCHEDULE",
                )
            await change(session, pipeline, row)
            audit.record(
                session,
                now=self._clock(),
                actor=actor,
                action=action,
                resource=f"pipelines/{name}",
                details={"reason": row.pause_reason} if row.paused else {},
            )
        await self._on_change()

    async def _pipeline(
        self, session: AsyncSession, name: str, *, for_update: bool = False
    ) -> tuple[PipelineRow, spec_pb2.PipelineSpec]:
        pipeline = await repo.find_pipeline(session, name, for_update=for_update)
        if pipeline is None:
            raise pipeline_not_found(name)
        version = await repo.find_version(session, pipeline.id, pipeline.latest_version)
        spec = spec_from_json(version.spec) if version else spec_pb2.PipelineSpec()
        if not has_schedule(spec):
            raise FailedPrecondition(
                f"pipeline {name!r} has no schedule (version {pipeline.latest_version}); "
                "add one under schedule: and apply it",
                reason="NO_SCHEDULE",
                metadata={"pipeline": name},
            )
        return pipeline, spec


def _waiting(pipeline: PipelineRow, state: ScheduleRow | None) -> str:
    if pipeline.archived:
        return "not firing: the pipeline is archived (legato restore to schedule it again)"
    if state is not None and state.paused:
        return f"not firing: paused — {state.pause_reason}"
    return ""
