"""The safety net: periodically reclaim expired leases (the step is retried as ``lost``
per its policy), stop runs past ``limits.max_duration`` and wake the dispatcher for work
that a lost wake-up left behind. Several replicas may run it at once: rows are claimed
with SKIP LOCKED and every change is fenced by the attempt's status.

A control plane that was not running could not hear its agents, so it cannot judge them
absent: for ``startup_grace`` (one and a half leases unless set; never less than one)
after it starts, the reaper expires no lease. Agents reconnect within that time (their
backoff is capped at half a lease, jittered up to three quarters of one) and
re-register the steps they still run, which renews those leases; results they buffered
meanwhile are then accepted as the attempts are still current. A lease whose agent was
last heard before the restart and did not come back in time is lost with a message that
says so, rather than blaming the agent for the control plane's outage.

The same holds after the database was unreachable: no replica could hear agents then
(their reports and heartbeats could not be written), so once a sweep gets through again
the grace starts over from that moment."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.errors import LeaseLost
from control_plane.execution.effects import Effects
from control_plane.execution.leases import expired_leases
from control_plane.execution.observer import NO_OBSERVER, ExecutionObserver
from control_plane.execution.signals import Signals
from control_plane.execution.transitions import AttemptOutcome, Transitions, deadline_reason
from control_plane.execution.unit_of_work import UnitOfWork
from control_plane.statuses import ACTIVE_ATTEMPT
from control_plane.store.attempts import AttemptState
from control_plane.store.db import Database
from control_plane.store.models import AttemptRow, RunRow
from control_plane.store.outages import store_unavailable

__all__ = ["Reaper"]

log = structlog.get_logger("legato.reaper")


class Reaper:
    def __init__(
        self,
        db: Database,
        transitions: Transitions,
        signals: Signals,
        unit_of_work: UnitOfWork,
        *,
        clock: Callable[[], datetime],
        lease_seconds: float,
        startup_grace: float | None = None,
        interval: float = 1.0,
        observer: ExecutionObserver = NO_OBSERVER,
    ) -> None:
        self._db = db
        self._observer = observer
        self._transitions = transitions
        self._signals = signals
        self._uow = unit_of_work
        self._clock = clock
        self._interval = interval
        self._lease = timedelta(seconds=lease_seconds)
        self._started = clock()
        self._store_failed = False
        grace = 1.5 * lease_seconds if startup_grace is None else startup_grace
        grace = max(grace, lease_seconds)
        self._grace = timedelta(seconds=grace)

    async def run_forever(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.sweep()
            except Exception as error:
                if not store_unavailable(error):
                    log.exception("reaper_failed")
                elif not self._store_failed:
                    log.warning("reaper_store_unavailable", error=str(error)[:200])
                self._store_failed = self._store_failed or store_unavailable(error)

    async def sweep(self) -> None:
        if self._store_failed:
            # Agents were not heard while the database was down: give them the grace
            # again, from now (the first sweep since; it fails too while still down).
            self._started = self._clock()
        await self.expire_leases()
        await self.stop_overdue_runs()
        if self._store_failed:
            self._store_failed = False
            log.info("reaper_store_restored", grace_seconds=self._grace.total_seconds())
        self._signals.work.set()

    async def expire_leases(self) -> int:
        if self._clock() < self._started + self._grace:
            return 0  # agents are still coming back after this control plane's start
        async with self._db.read() as session:
            leases = await expired_leases(session, self._clock())
        count = await self._lose(leases, error=None, only_expired=True)
        if count:
            self._observer.leases_expired(count)
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

            async def lose(
                session: AsyncSession, effects: Effects, lease_id: str = lease_id
            ) -> int:
                lease = await self._transitions.current_attempt(session, lease_id)
                now = self._clock()
                if only_expired and lease.attempt.lease_expire_time >= now:
                    return 0  # renewed meanwhile
                outcome = AttemptOutcome(
                    status="failed", failure_kind="lost", error=error or self._why(lease.attempt)
                )
                # Expired still when it is fenced (a heartbeat takes no run lock).
                expired = now if only_expired else None
                await self._transitions.finish_attempt(
                    session, lease, outcome, effects, expired_before=expired
                )
                return 1

            try:
                count += await self._uow.run(lose)
            except LeaseLost:
                continue
        return count

    def _why(self, attempt: AttemptState) -> str:
        last_heard = attempt.lease_expire_time - self._lease
        if last_heard < self._started:
            seconds = self._grace.total_seconds()
            return (
                f"agent '{attempt.agent}' was last heard from at {last_heard:%Y-%m-%d %H:%M:%S} "
                f"UTC, before the control plane could hear agents again at "
                f"{self._started:%H:%M:%S} UTC (it was restarted, or its database was "
                f"unavailable), and did not reconnect within {seconds:g}s; attempt "
                f"{attempt.number} is retried as lost"
            )
        return (
            f"agent '{attempt.agent}' stopped renewing the lease of attempt "
            f"{attempt.number} (it crashed, was killed or lost its connection)"
        )

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

            async def stop(session: AsyncSession, effects: Effects, run_id: str = run_id) -> None:
                run = await self._transitions.lock_run(session, run_id)
                if run.status != "running" or run.deadline_time is None or run.deadline_time >= now:
                    return
                plan = await self._transitions.plan_of(session, run)
                reason = deadline_reason(plan)
                await self._transitions.stop_run(session, run, "timed_out", reason, effects)

            await self._uow.run(stop)
        return len(overdue)
