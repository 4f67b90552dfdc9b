"""Late runs: a sweep, on every replica, that fires the ``late`` event once for each run
that is behind — a scheduled run that has not started ``schedule.late_after`` after its
fire time, or a run still going after ``limits.expected_duration``.

Each sweep reads the unfinished runs (an index probe on their status) and the notifications
they already have; a run is late at most once for each reason (the outbox's idempotency
key: ``<run>-late-start-…`` or ``<run>-late-duration-…``). Two replicas that find the same
late run at once both try to write the same keys; one transaction wins and the other rolls
back and finds the rows there next time."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from control_plane.notifications.events import RunEvents
from control_plane.pipelines.versioning import spec_from_json
from control_plane.statuses import StepStatus
from control_plane.store.db import Database
from control_plane.store.models import NotificationRow, PipelineVersionRow, RunRow, StepRunRow
from legato.v1 import spec_pb2

__all__ = ["LateRuns", "late_reasons", "start_overdue"]

log = structlog.get_logger("legato.notifications")

SWEEP_SECONDS = 15.0
_UNFINISHED = ("queued", "running")
# A step in these statuses, never attempted, has not started.
_NOT_STARTED = (StepStatus.PENDING, StepStatus.READY)


def _minutes(delta: timedelta) -> str:
    total = int(delta.total_seconds())
    if total % 3600 == 0:
        return f"{total // 3600}h"
    if total % 60 == 0:
        return f"{total // 60}m"
    return f"{total}s"


def start_overdue(run: RunRow, spec: spec_pb2.PipelineSpec, now: datetime) -> bool:
    """Whether ``run`` is a scheduled run past ``schedule.late_after`` (late if none of
    its steps has started yet)."""
    return (
        run.status in _UNFINISHED
        and run.trigger_kind == "schedule"
        and run.logical_time is not None
        and spec.schedule.HasField("late_after")
        and now - run.logical_time >= spec.schedule.late_after.ToTimedelta()
    )


def late_reasons(
    run: RunRow, spec: spec_pb2.PipelineSpec, now: datetime, waiting: str | None = None
) -> list[tuple[str, dict[str, Any]]]:
    """Why ``run`` is late at ``now``: ``(occurrence, details)`` for each reason.

    ``waiting``: for a running run, why its steps wait when none of them has started
    (None when one has): a run that is running but waits for an agent has not started
    either."""
    found: list[tuple[str, dict[str, Any]]] = []
    not_started = run.status == "queued" or waiting is not None
    if not_started and run.logical_time is not None and start_overdue(run, spec, now):
        allowed = spec.schedule.late_after.ToTimedelta()
        why = (run.waiting_reason or "queued") if run.status == "queued" else waiting
        fire = run.logical_time.isoformat()
        reason = f"not started {_minutes(allowed)} after its fire time {fire}"
        found.append(
            (
                "start",
                {
                    "late": {
                        "reason": f"{reason} ({why or 'no step has started'})",
                        "kind": "not_started",
                        "fire_time": fire,
                        "late_after_seconds": allowed.total_seconds(),
                    }
                },
            )
        )
    if (
        run.status == "running"
        and run.start_time is not None
        and spec.limits.HasField("expected_duration")
    ):
        expected = spec.limits.expected_duration.ToTimedelta()
        if now - run.start_time >= expected:
            started = run.start_time.isoformat()
            reason = f"still running {_minutes(expected)} after it started at {started}"
            details = {
                "late": {
                    "reason": reason + " (limits.expected_duration)",
                    "kind": "running_long",
                    "expected_duration_seconds": expected.total_seconds(),
                }
            }
            found.append(("duration", details))
    return found


class LateRuns:
    """The sweep (``run_forever``) that fires ``late``."""

    def __init__(
        self,
        db: Database,
        events: RunEvents,
        *,
        clock: Callable[[], datetime],
        sweep_seconds: float = SWEEP_SECONDS,
    ) -> None:
        self._db = db
        self._events = events
        self._clock = clock
        self._sweep = sweep_seconds
        self._specs: dict[tuple[int, int], spec_pb2.PipelineSpec] = {}

    async def run_forever(self) -> None:
        while True:
            try:
                await self.sweep_once()
            except IntegrityError:
                log.debug("late_runs_raced")  # another replica wrote them first
            except Exception:
                log.exception("late_runs_sweep_failed")
            await asyncio.sleep(self._sweep)

    async def sweep_once(self) -> int:
        """Fire ``late`` for the runs that are late now; returns how many events."""
        now = self._clock()
        async with self._db.read() as session:
            runs = list(
                (await session.execute(select(RunRow).where(RunRow.status.in_(_UNFINISHED))))
                .scalars()
                .all()
            )
        late: list[tuple[RunRow, spec_pb2.PipelineSpec, str, dict[str, Any]]] = []
        used = {(run.pipeline_id, run.version) for run in runs}
        self._specs = {key: spec for key, spec in self._specs.items() if key in used}
        candidates: list[tuple[RunRow, spec_pb2.PipelineSpec]] = []
        for run in runs:
            spec = await self._spec_of(run)
            if spec is not None and self._events.sends(spec, "late"):
                candidates.append((run, spec))
        overdue = [
            run.id
            for run, spec in candidates
            if run.status == "running" and start_overdue(run, spec, now)
        ]
        waiting = await self._not_started(overdue) if overdue else {}
        for run, spec in candidates:
            for occurrence, details in late_reasons(run, spec, now, waiting.get(run.id)):
                late.append((run, spec, occurrence, details))
        if not late:
            return 0
        async with self._db.write() as session:
            ids = sorted({run.id for run, *_ in late})
            done = {
                (run_id, key.split("-late-", 1)[1].split("-", 1)[0])
                for run_id, key in await session.execute(
                    select(NotificationRow.run_id, NotificationRow.idempotency_key).where(
                        NotificationRow.run_id.in_(ids), NotificationRow.event == "late"
                    )
                )
                if "-late-" in key
            }
            fired = 0
            for run, spec, occurrence, details in late:
                if (run.id, occurrence) in done:
                    continue
                merged = await session.merge(run, load=False)
                self._events.write(
                    session, merged, spec, "late", at=now, occurrence=occurrence, details=details
                )
                fired += 1
                log.info(
                    "run_late",
                    run_id=run.id,
                    pipeline=run.pipeline,
                    reason=details["late"]["reason"],
                )
        return fired

    async def _not_started(self, run_ids: list[str]) -> dict[str, str]:
        """Of the running ``run_ids``, those none of whose steps has started: why their
        steps wait (the first waiting reason, or "")."""
        c = StepRunRow
        async with self._db.read() as session:
            rows = await session.execute(
                select(c.run_id, c.status, c.attempt, c.waiting_reason)
                .where(c.run_id.in_(run_ids))
                .order_by(c.run_id, c.position)
            )
            steps = rows.all()
        started = {
            run_id
            for run_id, status, attempt, _ in steps
            if attempt > 0 or status not in _NOT_STARTED
        }
        reasons: dict[str, str] = {}
        for run_id, _, _, reason in steps:
            if run_id not in started and (run_id not in reasons or not reasons[run_id]):
                reasons[run_id] = reason or ""
        return reasons

    async def _spec_of(self, run: RunRow) -> spec_pb2.PipelineSpec | None:
        key = (run.pipeline_id, run.version)
        if key not in self._specs:
            async with self._db.read() as session:
                found = await session.execute(
                    select(PipelineVersionRow.spec).where(
                        PipelineVersionRow.pipeline_id == run.pipeline_id,
                        PipelineVersionRow.number == run.version,
                    )
                )
                text = found.scalar()
            if text is None:
                return None
            self._specs[key] = spec_from_json(text)
        return self._specs[key]
