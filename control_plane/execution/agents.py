"""What agents report over their stream, applied to the store: registration (with the
leases a reconnecting agent still runs), task started, log lines, heartbeats, results.
Every report naming a lease is fenced: if the lease is no longer current it raises
LeaseLost and changes nothing."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import Table, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.access.actors import Actor
from control_plane.errors import LeaseLost, NotFound
from control_plane.execution import leases
from control_plane.execution.dispatch import Dispatcher
from control_plane.execution.effects import Effects
from control_plane.execution.hub import AgentHub, AgentSession, Outgoing
from control_plane.execution.reaper import Reaper
from control_plane.execution.signals import Signals
from control_plane.execution.transitions import AttemptOutcome, Transitions, not_yours
from control_plane.execution.unit_of_work import UnitOfWork
from control_plane.pagination import Page, PageRequest
from control_plane.statuses import ACTIVE_ATTEMPT, AttemptStatus, StepStatus
from control_plane.store import audit, log_lines
from control_plane.store.db import Database
from control_plane.store.models import AgentRow, AttemptRow, StepRunRow

__all__ = ["AgentInfo", "Agents", "LeaseReports", "LogRecord"]

MAX_LOG_LINE = 16 * 1024
_ATTEMPTS = cast(Table, AttemptRow.__table__)
_STEPS = cast(Table, StepRunRow.__table__)


@dataclass(frozen=True)
class LogRecord:
    time: datetime
    stream: str  # "stdout" | "stderr" | "system"
    text: str


@dataclass(frozen=True)
class LeaseReports:
    """What an agent reported together about one lease, in the order it sent them: the
    attempt started, batches of its output (lines, lines dropped), its result."""

    lease_id: str
    started: bool = False
    started_time: datetime | None = None
    logs: tuple[tuple[tuple[LogRecord, ...], int], ...] = ()
    outcome: AttemptOutcome | None = None


@dataclass(frozen=True)
class AgentLease:
    run_id: str
    step: str
    attempt: int
    start_time: datetime | None
    lease_expire_time: datetime


@dataclass(frozen=True)
class AgentInfo:
    row: AgentRow
    slots_used: int
    state: str
    """``connected``, ``draining`` or ``disconnected``: the row's state only while the
    agent is live (see :meth:`Agents.liveness_cutoff`), ``disconnected`` otherwise."""
    leases: tuple[AgentLease, ...] = ()


class Agents:
    def __init__(
        self,
        db: Database,
        hub: AgentHub,
        transitions: Transitions,
        signals: Signals,
        unit_of_work: UnitOfWork,
        dispatcher: Dispatcher,
        reaper: Reaper,
        *,
        replica: str,
        lease_seconds: float,
        clock: Callable[[], datetime],
    ) -> None:
        self._db = db
        self._hub = hub
        self._transitions = transitions
        self._signals = signals
        self._uow = unit_of_work
        self._dispatcher = dispatcher
        self._replica = replica
        self._lease = timedelta(seconds=lease_seconds)
        self._clock = clock
        self._reaper = reaper

    # -- the stream's life --------------------------------------------------------------

    async def connect(self, session: AgentSession, running: Sequence[str]) -> list[str]:
        """Record the agent as connected here and adopt the leases it still runs;
        returns the ones that are no longer current (the agent must stop those)."""
        now = self._clock()
        session.connect_time = now
        async with self._db.write() as db:
            row = await db.get(AgentRow, session.name, with_for_update=True)
            if row is None:
                row = AgentRow(name=session.name)
                db.add(row)
            row.instance_id = session.instance_id
            row.labels = dict(session.labels)
            row.slots = session.slots
            row.version = session.version
            row.hostname = session.hostname
            row.connections = list(session.connections)
            row.state = "connected"
            row.replica = self._replica
            row.connect_time = now
            row.last_seen_time = now
            row.credential = session.credential
            stale = await leases.renew(db, session.name, running, now, self._lease)
        session.leases.update(lease for lease in running if lease not in stale)
        previous = self._hub.attach(session)
        if previous is not None and previous is not session:
            previous.send(None)
        return stale

    async def disconnect(self, session: AgentSession) -> None:
        self._hub.detach(session)
        async with self._db.write() as db:
            row = await db.get(AgentRow, session.name, with_for_update=True)
            if (
                row is not None
                and row.instance_id == session.instance_id
                and row.replica == self._replica
                # Not a newer stream of the same agent that replaced this one.
                and row.connect_time == session.connect_time
            ):
                row.state = "disconnected"
                row.last_seen_time = self._clock()

    async def revoked(self, token_ids: set[str]) -> list[str]:
        """Close the streams of the agents (connected here) whose enrolment token is in
        ``token_ids``; the steps they were running are retried as lost at once. Returns
        the agents' names."""
        closed: list[str] = []
        for session in self._hub.sessions():
            if session.token_id and session.token_id in token_ids and not session.closed_reason:
                session.closed_reason = (
                    f"the enrolment credential of agent '{session.name}' "
                    f"({session.credential}) was revoked or has expired"
                )
                # Out of the hub at once: the steps lost below must not be dispatched to
                # it while its stream is still closing.
                self._hub.detach(session)
                session.send(None)
                closed.append(session.name)
        for name in closed:
            await self._reaper.lose_agent(
                name,
                f"agent '{name}' was disconnected: its enrolment token was revoked or "
                "expired, so its attempt is retried as lost",
            )
        return closed

    async def check_credentials(self, dead: Callable[[set[str]], Awaitable[set[str]]]) -> None:
        """Close the streams whose token ``dead`` says is no longer live."""
        live = {s.token_id for s in self._hub.sessions() if s.token_id and not s.closed_reason}
        if live:
            gone = await dead(live)
            if gone:
                await self.revoked(gone)

    def grant(self, session: AgentSession, credits: int) -> int:
        """Add the credits an agent granted; returns how many were refused, beyond its
        slots (see ``hub``: it is never sent more tasks than it has slots)."""
        session.wake = self._dispatcher.credit_granted
        refused = session.grant(credits)
        if session.credits > 0:
            self._dispatcher.credit_granted()
        return refused

    # -- reports ------------------------------------------------------------------------

    async def report(self, session: AgentSession, reports: LeaseReports) -> None:
        """Apply the reports an agent sent together about one lease — started, log
        batches, the result — in one transaction: all of them, or none (a lease that is
        not current refuses them all). The result leases what it made ready in it."""
        if reports.outcome is not None:
            session.leases.discard(reports.lease_id)

        async def apply(db: AsyncSession, effects: Effects) -> None:
            lease_id, now = reports.lease_id, self._clock()
            lease = None
            if reports.outcome is not None:
                # The run's lock first, as every transition of the run takes it (run →
                # step → attempt): the started and log writes below lock the attempt.
                lease = await self._transitions.current_attempt(db, lease_id, agent=session.name)
            if reports.started:
                start = reports.started_time or now
                started = await self._transitions.attempt_started(
                    db, lease_id, start, agent=session.name
                )
                if started is not None:
                    effects.changed(*started)
                    if lease is not None:
                        lease.attempt.status = AttemptStatus.RUNNING
                        lease.step.status = StepStatus.RUNNING
                        lease.step.start_time = lease.step.start_time or start
            for lines, dropped in reports.logs:
                effects.changed(await self._write_logs(db, session, lease_id, lines, dropped, now))
            if lease is not None and reports.outcome is not None:
                await self._transitions.finish_attempt(db, lease, reports.outcome, effects)

        await self._uow.run(apply)

    async def _write_logs(
        self,
        db: AsyncSession,
        session: AgentSession,
        lease_id: str,
        lines: Sequence[LogRecord],
        dropped: int,
        now: datetime,
    ) -> str:
        """Store a batch of a step's output: one read of the lease, one update renewing it,
        one multi-row insert (Core statements: no ORM objects). Returns the run's id."""
        found = (
            await db.execute(
                select(
                    _ATTEMPTS.c.id,
                    _ATTEMPTS.c.agent,
                    _ATTEMPTS.c.status,
                    _ATTEMPTS.c.run_id,
                    _ATTEMPTS.c.number,
                    _ATTEMPTS.c.lease_expire_time,
                    _STEPS.c.name,
                )
                .join(_STEPS, _STEPS.c.id == _ATTEMPTS.c.step_run_id)
                .where(_ATTEMPTS.c.lease_id == lease_id)
            )
        ).first()
        if found is not None and found.agent != session.name:
            raise not_yours(lease_id, session.name)
        if found is None or found.status not in ACTIVE_ATTEMPT:
            raise LeaseLost(
                f"lease {lease_id} is no longer current", metadata={"lease_id": lease_id}
            )
        # Output proves the agent is alive: it renews the lease like a heartbeat, so a
        # heartbeat queued behind a flood of lines does not let the lease expire.
        if found.lease_expire_time < now + self._lease:
            await db.execute(
                update(_ATTEMPTS)
                .where(_ATTEMPTS.c.id == found.id)
                .values(lease_expire_time=now + self._lease)
            )
        rows = [
            {
                "run_id": found.run_id,
                "time": line.time,
                "step": found.name,
                "attempt": found.number,
                "stream": line.stream,
                "text": line.text[:MAX_LOG_LINE],
            }
            for line in lines
        ]
        if dropped:
            rows.append(
                {
                    "run_id": found.run_id,
                    "time": now,
                    "step": found.name,
                    "attempt": found.number,
                    "stream": "system",
                    "text": f"{dropped} log lines were dropped by agent '{session.name}' "
                    "(its buffer was full)",
                }
            )
        await log_lines.insert_now(db, rows)
        return str(found.run_id)

    async def heartbeat(self, session: AgentSession, lease_ids: Sequence[str]) -> list[str]:
        now = self._clock()
        async with self._db.write() as db:
            stale = await leases.renew(db, session.name, lease_ids, now, self._lease)
            row = await db.get(AgentRow, session.name)
            if row is not None:
                row.last_seen_time = now
        for lease_id in stale:
            session.leases.discard(lease_id)
        return stale

    # -- operators ----------------------------------------------------------------------

    def liveness_cutoff(self) -> datetime:
        """Agents last heard before this are not connected, whatever their row says: a
        connected agent heartbeats every quarter lease, and a control plane that crashed
        (or a disconnect whose write was lost) leaves ``state`` set."""
        return self._clock() - self._lease

    async def list_agents(
        self, *, show_disconnected: bool, page_size: int, page_token: str
    ) -> Page[AgentInfo]:
        page = PageRequest.parse(page_size, page_token, show_disconnected=show_disconnected)
        stmt = select(AgentRow).order_by(AgentRow.name).limit(page.size + 1)
        cutoff = self.liveness_cutoff()
        if not show_disconnected:
            stmt = stmt.where(AgentRow.state != "disconnected", AgentRow.last_seen_time >= cutoff)
        if page.after is not None:
            stmt = stmt.where(AgentRow.name > page.after)
        async with self._db.read() as db:
            rows = list((await db.execute(stmt)).scalars())
            infos = await _with_slots_used(db, rows, cutoff)
        return page.page(infos, key=lambda info: info.row.name)

    async def drain(self, name: str, actor: Actor) -> AgentInfo:
        session = self._hub.get(name)
        async with self._db.write() as db:
            row = await db.get(AgentRow, name, with_for_update=True)
            if row is None:
                raise NotFound(
                    f"agent {name!r} is unknown; `legato agents --all` lists them",
                    reason="AGENT_NOT_FOUND",
                )
            if row.state == "connected":
                row.state = "draining"
            audit.record(
                db,
                now=self._clock(),
                actor=actor,
                action="DrainAgent",
                resource=f"agents/{name}",
            )
            (info,) = await _with_slots_used(db, [row], self.liveness_cutoff())
        if session is not None:
            session.draining = True
            session.send(Outgoing(kind="drain", reason=f"drained by {actor.name}"))
        return info


async def _with_slots_used(
    db: AsyncSession, rows: list[AgentRow], cutoff: datetime
) -> list[AgentInfo]:
    """Each agent with the leases it holds (one query for all of them) and its state:
    disconnected when last heard before ``cutoff``."""
    held = await db.execute(
        select(
            AttemptRow.agent,
            AttemptRow.run_id,
            StepRunRow.name,
            AttemptRow.number,
            AttemptRow.start_time,
            AttemptRow.lease_expire_time,
        )
        .join(StepRunRow, StepRunRow.id == AttemptRow.step_run_id)
        .where(AttemptRow.status.in_(ACTIVE_ATTEMPT), AttemptRow.agent.in_([r.name for r in rows]))
        .order_by(AttemptRow.id)
    )
    leases: dict[str, list[AgentLease]] = {}
    for agent, run_id, step, number, started, expires in held.all():
        leases.setdefault(str(agent), []).append(
            AgentLease(str(run_id), str(step), int(number), started, expires)
        )
    return [
        AgentInfo(
            row=row,
            slots_used=len(leases.get(row.name, ())),
            state=row.state if row.last_seen_time >= cutoff else "disconnected",
            leases=tuple(leases.get(row.name, ())),
        )
        for row in rows
    ]
