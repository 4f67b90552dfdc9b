"""The live state of schedules, kept in step with pipelines.

Each pipeline whose latest version has a ``schedule`` has a row in ``schedules`` with its
next fire time. :class:`ScheduleSync` is told (inside the registry's transaction) when a
pipeline gets a new latest version or is archived or restored:

- a new version recomputes the next fire time from now, so a new cron takes effect at its
  next fire time; a fire time that was already due under the old version still fires;
- a version without a schedule, or archiving, clears the next fire time (never fires);
- restoring computes the next fire time from now: the archived period is not caught up.

Pause state (``paused``, ``pause_reason``) and the failure count survive all of these.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.scheduling.fire_times import FireTimes
from control_plane.store.models import PipelineRow, RunRow, ScheduleRow
from legato.v1 import spec_pb2

__all__ = ["ScheduleSync", "has_schedule", "next_fire_time", "record_outcome"]


def has_schedule(spec: spec_pb2.PipelineSpec) -> bool:
    return spec.HasField("schedule") and bool(spec.schedule.cron)


def next_fire_time(spec: spec_pb2.PipelineSpec, after: datetime) -> datetime | None:
    if not has_schedule(spec):
        return None
    return FireTimes.of(spec.schedule).next_after(after).instant


class ScheduleSync:
    def __init__(self, on_commit: Callable[[], Awaitable[None]]) -> None:
        self._on_commit = on_commit

    async def pipeline_changed(
        self,
        session: AsyncSession,
        pipeline: PipelineRow,
        spec: spec_pb2.PipelineSpec,
        now: datetime,
    ) -> None:
        row = await session.get(ScheduleRow, pipeline.id, with_for_update=True)
        upcoming = None if pipeline.archived else next_fire_time(spec, now)
        if row is None:
            if upcoming is None:
                return
            row = ScheduleRow(
                pipeline_id=pipeline.id,
                version=pipeline.latest_version,
                paused=False,
                pause_reason="",
                consecutive_failures=0,
                update_time=now,
            )
            session.add(row)
        due = row.next_fire_time is not None and row.next_fire_time <= now
        if due and upcoming is not None and not pipeline.archived:
            upcoming = row.next_fire_time  # due under the old version: it still fires
        row.next_fire_time = upcoming
        row.version = pipeline.latest_version
        row.update_time = now

    async def committed(self) -> None:
        await self._on_commit()


async def record_outcome(
    session: AsyncSession, run: RunRow, spec: spec_pb2.PipelineSpec, now: datetime
) -> str | None:
    """Count a finished scheduled run toward ``pause_after_failures``: a success resets the
    count, a failure or time-out adds one (cancelled and skipped runs do not count). Returns
    the run log's line when this run paused the schedule. Call with the pipeline row locked
    (the execution's ``RunFinished`` hook)."""
    if run.trigger_kind != "schedule" or run.status not in ("succeeded", "failed", "timed_out"):
        return None
    row = await session.get(ScheduleRow, run.pipeline_id, with_for_update=True)
    if row is None:
        return None
    if run.status == "succeeded":
        row.consecutive_failures = 0
        return None
    row.consecutive_failures += 1
    limit = spec.schedule.pause_after_failures
    if not limit or row.consecutive_failures < limit or row.paused:
        return None
    row.paused = True
    row.pause_time = now
    row.pause_reason = (
        f"paused after {row.consecutive_failures} consecutive failed runs "
        f"(schedule.pause_after_failures: {limit}); the last, run {run.id}, {run.status}"
        + (f": {run.error[:300]}" if run.error else "")
    )
    row.update_time = now
    return f"Schedule paused: {row.pause_reason}"
