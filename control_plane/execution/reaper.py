"""The safety net: periodically reclaim expired leases (the step is retried as ``lost``
per its policy), stop runs past ``limits.max_duration`` and wake the dispatcher for work
that a lost wake-up left behind. Several replicas may run it at once: rows are claimed
with SKIP LOCKED and every change is fenced by the attempt's status."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime

import structlog
from sqlalchemy import select

from control_plane.errors import LeaseLost
from control_plane.execution.effects import Effects
from control_plane.execution.leases import expired_leases
from control_plane.execution.signals import Signals
from control_plane.execution.statuses import ACTIVE_ATTEMPT
from control_plane.execution.transitions import AttemptOutcome, Transitions, deadline_reason
from control_plane.store.db import Database
from control_plane.store.models import AttemptRow, RunRow

__all__ = ["Reaper"]

log = structlog.get_logger("legato.reaper")


class Reaper:
    def __init__(
        self,
        db: Database,
        transitions: Transitions,
        signals: Signals,
        *,
        clock: Callable[[], datetime],
        interval: float = 1.0,
    ) -> None:
        self._db = db
        self._transitions = transitions
        self._signals = signals
        self._clock = clock
        self._interval = interval

    async def run_forever(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.sweep()
            except Exception:
                log.exception("reaper_failed")

    async def sweep(self) -> None:
        await self.expire_leases()
        await self.stop_overdue_runs()
        self._signals.work.set()

    async def expire_leases(self) -> int:
        async with self._db.read() as session:
            leases = await expired_leases(session, self._clock())
        count = await self._lose(leases, error=None, only_expired=True)
        if count:
            log.info("leases_expired", count=count)
        return count

    async def lose_agent(self, agent: str, error: str) -> int:
        """End every active attempt of ``agent`` as lost now (its credential was revoked:
        nothing it reports will be accepted, so there is no point waiting for its lease)."""
        async with self._db.read() as session:
            rows = await session.execute(
                select(AttemptRow.lease_id).where(
                    AttemptRow.agent == agent, AttemptRow.status.in_(ACTIVE_ATTEMPT)
                )
            )
            leases = list(rows.scalars())
        count = await self._lose(leases, error=error, only_expired=False)
        if count:
            log.info("agent_leases_lost", agent=agent, count=count)
        return count

    async def _lose(self, leases: list[str], *, error: str | None, only_expired: bool) -> int:
        count = 0
        for lease_id in leases:
            effects = Effects()
            try:
                async with self._db.write() as session:
                    run, attempt = await self._transitions.current_attempt(session, lease_id)
                    if only_expired and attempt.lease_expire_time >= self._clock():
                        continue  # renewed meanwhile
                    outcome = AttemptOutcome(
                        status="failed",
                        failure_kind="lost",
                        error=error
                        or (
                            f"agent '{attempt.agent}' stopped renewing the lease of attempt "
                            f"{attempt.number} (it crashed, was killed or lost its connection)"
                        ),
                    )
                    await self._transitions.finish_attempt(session, run, attempt, outcome, effects)
            except LeaseLost:
                continue
            count += 1
            await effects.apply(self._signals, self._clock())
        return count

    async def stop_overdue_runs(self) -> int:
        now = self._clock()
        async with self._db.read() as session:
            overdue = list(
                (
                    await session.execute(
                        select(RunRow.id).where(
                            RunRow.status == "running", RunRow.deadline_time < now
                        )
                    )
                ).scalars()
            )
        for run_id in overdue:
            effects = Effects()
            async with self._db.write() as session:
                run = await self._transitions.lock_run(session, run_id)
                if run.status != "running" or run.deadline_time is None or run.deadline_time >= now:
                    continue
                plan = await self._transitions.plan_of(session, run)
                reason = deadline_reason(plan)
                await self._transitions.stop_run(session, run, "timed_out", reason, effects)
            await effects.apply(self._signals, self._clock())
        return len(overdue)
