"""The dispatcher: hands ready steps to connected agents with free credits.

It is woken (``Signals.work``) when a transaction makes steps ready, when an agent grants
credits and when a retry delay ends; a one-second poll is only the safety net. One pass
claims, in a single transaction, as many ready steps as the agents have credits: the
candidates are locked ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so replicas sharing a
database never claim one step twice, and each claimed step gets a new attempt with a
fresh lease. Assignments are pushed to the agents' streams after the commit."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.execution.bindings import (
    needs_resolution,
    resolved_values,
    run_context,
    step_facts,
)
from control_plane.execution.hub import AgentHub, AgentSession, Assignment, InputRef, Outgoing
from control_plane.execution.ids import new_lease_id
from control_plane.execution.observer import NO_OBSERVER, ExecutionObserver
from control_plane.execution.plans import PlanCache
from control_plane.execution.signals import Signals
from control_plane.statuses import TRIGGER_KIND, StepStatus
from control_plane.store import attempts as attempt_store
from control_plane.store import steps as step_store
from control_plane.store.db import Database
from control_plane.store.models import RunRow, StepRunRow
from control_plane.store.steps import Step
from legato.spec.connections import CONNECTION_LABEL, connection_label
from observability.tracing import Tracing

__all__ = ["AGENT_NAME_KEY", "Dispatcher"]

AGENT_NAME_KEY = "@agent"
"""A selector key that names the one agent a step may run on (a test run's step,
``execution/test_runs.py``): matched against the agent's name, not its labels. No spec
can write it (a label key starts with a letter or digit)."""

log = structlog.get_logger("legato.dispatch")
_STEPS = step_store.TABLE.c


class Dispatcher:
    def __init__(
        self,
        db: Database,
        hub: AgentHub,
        plans: PlanCache,
        signals: Signals,
        *,
        lease_seconds: float,
        clock: Callable[[], datetime],
        poll_seconds: float = 1.0,
        tracing: Tracing | None = None,
        observer: ExecutionObserver = NO_OBSERVER,
    ) -> None:
        self._tracing = tracing
        self._observer = observer
        self._db = db
        self._hub = hub
        self._plans = plans
        self._signals = signals
        self._lease = timedelta(seconds=lease_seconds)
        self._clock = clock
        self._poll = poll_seconds
        # Whether due steps may be waiting for an agent's credit (unknown at start). While
        # they are not, a credit an agent grants wakes nothing: every step made ready
        # later wakes the dispatcher itself (its transaction's effects, a retry timer,
        # another replica's notification), so most results cost no extra pass.
        self.starved = True

    async def run_forever(self) -> None:
        while True:
            try:
                async with asyncio.timeout(self._poll):
                    await self._signals.work.wait()
            except TimeoutError:
                pass
            self._signals.work.clear()
            try:
                while await self.dispatch_once():
                    pass
            except Exception:
                log.exception("dispatch_failed")
                await asyncio.sleep(0.2)

    def credit_granted(self) -> None:
        """An agent granted credit (or freed a slot): look for work if some may wait."""
        if self.starved:
            self._signals.work.set()

    async def dispatch_once(self) -> int:
        """Claim and push what the connected agents can take now; returns how many."""
        sessions = self._hub.available()
        if not sessions:
            self.starved = True  # whatever is due waits for an agent
            return 0
        credits = sum(s.credits for s in sessions)
        # Most wake-ups find nothing to claim: look first with a read, so that they do not
        # take the write lock (one writer at a time on SQLite).
        async with self._db.read() as probe:
            if not await self._anything_due(probe, self._clock()):
                self.starved = False
                return 0
        claimed: list[tuple[AgentSession, Assignment]] = []
        try:
            async with self._db.write() as session:
                now = self._clock()
                candidates = await self._candidates(session, now, limit=max(64, credits * 4))
                claimed = await self.claim(session, candidates, now)
        except BaseException:
            self.release(claimed)
            raise
        # Due steps no agent could take (no credit, no agent with their labels) wait.
        self.starved = len(claimed) < len(candidates)
        await self.send(claimed)
        return len(claimed)

    async def claim_inline(
        self,
        session: AsyncSession,
        ready: list[tuple[Step, RunRow]],
        siblings: dict[str, dict[str, Step]],
    ) -> list[tuple[AgentSession, Assignment]]:
        """Claim steps a transaction has just made ready, in that transaction, when an
        agent can take them: the step reaches an agent without a dispatcher pass, and its
        row is written once, leased. A step whose assignment cannot be built stays ready
        (the dispatcher tries it again and reports what fails)."""
        if not ready or not self._hub.available():
            return []
        return await self.claim(session, ready, self._clock(), siblings=siblings, strict=False)

    async def claim(
        self,
        session: AsyncSession,
        candidates: list[tuple[Step, RunRow]],
        now: datetime,
        *,
        siblings: dict[str, dict[str, Step]] | None = None,
        strict: bool = True,
    ) -> list[tuple[AgentSession, Assignment]]:
        """Lease ``candidates`` to agents with credits (reserved here; ``release`` them if
        the transaction fails, ``send`` them once it has committed). Not ``strict``: a
        step whose assignment cannot be built is left as it is, and logged."""
        sessions = self._hub.available()
        claimed: list[tuple[AgentSession, Assignment]] = []
        try:
            for step, run in candidates:
                if not any(s.credits > 0 for s in sessions):
                    break
                agent = _pick(sessions, step.selector or {})
                if agent is None:
                    reason = _no_agent_reason(step.selector or {}, self._hub.sessions())
                    if step.waiting_reason != reason:
                        await step_store.write(session, step, waiting_reason=reason)
                    continue
                try:
                    assignment = await self._assignment(
                        session, step, run, agent, now, (siblings or {}).get(run.id)
                    )
                except Exception:
                    if strict:
                        raise
                    log.exception("inline_claim_failed", run_id=run.id, step=step.name)
                    continue
                agent.credits -= 1
                claimed.append((agent, assignment))
                await self._write_lease(session, step, run, assignment, agent.name, now)
        except BaseException:
            self.release(claimed)
            raise
        return claimed

    @staticmethod
    def release(claimed: list[tuple[AgentSession, Assignment]]) -> None:
        for agent, _ in claimed:
            agent.credits += 1

    async def send(self, claimed: list[tuple[AgentSession, Assignment]]) -> None:
        now = self._clock()
        for agent, assignment in claimed:
            agent.leases.add(assignment.lease_id)
            agent.send(Outgoing(kind="assignment", assignment=assignment))
            if assignment.ready_time is not None:
                lease_time = assignment.lease_expire_time - self._lease
                waited = (lease_time - assignment.ready_time).total_seconds()
                self._observer.step_leased(max(0.0, waited))
            if self._tracing is not None and assignment.traceparent:
                _, trace_id, span_id, _ = assignment.traceparent.split("-")
                self._tracing.span(
                    f"dispatch {assignment.step_name}",
                    trace_id=trace_id,
                    parent_span_id=span_id,
                    start=assignment.lease_expire_time - self._lease,
                    end=now,
                    attributes={
                        "legato.run_id": assignment.run_id,
                        "legato.step": assignment.step_name,
                        "legato.attempt": assignment.attempt,
                        "legato.agent": agent.name,
                        "legato.lease_id": assignment.lease_id,
                    },
                )
        if claimed:
            leased: dict[str, set[str]] = {}
            for _, assignment in claimed:
                leased.setdefault(assignment.run_id, set()).add(assignment.step_name)
            await self._signals.run_changed(*leased, steps=leased)

    async def _anything_due(self, session: AsyncSession, now: datetime) -> bool:
        stmt = (
            select(_STEPS.id)
            .join(RunRow, RunRow.id == _STEPS.run_id)
            .where(_due(now), RunRow.status == "running")
            .limit(1)
        )
        return (await session.execute(stmt)).first() is not None

    async def _candidates(
        self, session: AsyncSession, now: datetime, limit: int
    ) -> list[tuple[Step, RunRow]]:
        stmt = (
            select(*step_store.COLUMNS, RunRow)
            .join(RunRow, RunRow.id == _STEPS.run_id)
            .where(_due(now), RunRow.status == "running")
            .order_by(RunRow.create_time, _STEPS.position)
            .limit(limit)
            .with_for_update(of=step_store.TABLE, skip_locked=True)
        )
        rows = (await session.execute(stmt)).all()
        return [(step_store.from_row(row), row[-1]) for row in rows]

    async def _assignment(
        self,
        session: AsyncSession,
        step: Step,
        run: RunRow,
        agent: AgentSession,
        now: datetime,
        known: dict[str, Step] | None = None,
    ) -> Assignment:
        """The task for ``agent``: the step, its inputs and resolved values, its limits
        (reads only: nothing is written until it is leased)."""
        plan = await self._plans.get(session, run.pipeline_id, run.pipeline, run.version)
        number = step.attempt + 1
        spec_step = plan.steps[step.name]
        parents = plan.dag.parents(step.name)
        resolve = needs_resolution(spec_step)
        inputs: list[InputRef] = []
        resolved: dict[str, Any] = {}
        upstream: list[Step] = []
        if parents or resolve:
            by_name: dict[str, Step] = dict(known or {})
            # Expressions may read any upstream step, not only the direct ones.
            wanted = set(plan.dag.order) if resolve else set(parents)
            if not wanted <= by_name.keys():
                by_name.update(await step_store.named(session, run.id, wanted - by_name.keys()))
            upstream = [by_name[name] for name in parents if name in by_name]
            inputs = [_input(row) for row in upstream]
            if resolve:
                resolved = resolved_values(spec_step, step_facts(by_name), run_context(run))
        timeout = plan.timeout(step.name)
        if run.deadline_time is not None:
            remaining = max(1.0, (run.deadline_time - now).total_seconds())
            timeout = remaining if timeout is None else min(timeout, remaining)
        return Assignment(
            lease_id=new_lease_id(),
            lease_expire_time=now + self._lease,
            run_id=run.id,
            pipeline=run.pipeline,
            version=run.version,
            step_name=step.name,
            attempt=number,
            step=spec_step,
            params=dict(run.params or {}),
            inputs=inputs,
            timeout=timeout,
            memory_bytes=plan.memory_bytes(step.name),
            traceparent=f"00-{run.trace_id}-{run.span_id}-01" if run.trace_id else "",
            run_context={
                "run_id": run.id,
                "pipeline": run.pipeline,
                "version": run.version,
                "trigger": run.trigger_kind,
                "logical_time": run.logical_time.isoformat() if run.logical_time else None,
            },
            resolved=resolved,
            ready_time=_ready_time(step, run, upstream),
        )

    @staticmethod
    async def _write_lease(
        session: AsyncSession,
        step: Step,
        run: RunRow,
        assignment: Assignment,
        agent: str,
        now: datetime,
    ) -> None:
        """Write the lease: the attempt, and the step leased (its one write when the
        transaction made it ready). A run created in this transaction is inserted first
        (with every other row the session holds: one flush for a batch of new runs)."""
        if isinstance(step, StepRunRow) and step.id is None:
            await session.flush()
        await attempt_store.insert_leased(
            session,
            step_run_id=step.id,
            run_id=run.id,
            number=assignment.attempt,
            lease_id=assignment.lease_id,
            agent=agent,
            expire=assignment.lease_expire_time,
            now=now,
        )
        await step_store.claimed(
            session,
            step,
            status=StepStatus.LEASED,
            attempt=assignment.attempt,
            agent=agent,
            not_before=None,
            waiting_reason="",
        )


def _input(row: Step) -> InputRef:
    output: dict[str, Any] = row.output or {}
    rows = output.get("rows")
    return InputRef(
        step=row.name,
        status=row.status,
        values=dict(output.get("values") or {}),
        rows=int(rows) if rows is not None else None,
        artifact_id=str(output.get("artifact_id") or ""),
    )


def _ready_time(step: Step, run: RunRow, parents: list[Step]) -> datetime | None:
    """Since when ``step`` could run, from the rows in hand (no statement): its retry
    delay's end, or when the last of its finished parents ended (not before its run
    started)."""
    if step.status == StepStatus.PENDING:
        return step.not_before
    times = [row.end_time for row in parents if row.end_time is not None]
    if run.start_time is not None:
        times.append(run.start_time)
    return max(times, default=None)


def _matches(session: AgentSession, selector: dict[str, Any]) -> bool:
    """The agent has the selector's labels, and is the agent it names under
    :data:`AGENT_NAME_KEY` (a test run's step), if it names one."""
    named = selector.get(AGENT_NAME_KEY)
    if named is None:
        return session.matches(selector)
    labels = {key: value for key, value in selector.items() if key != AGENT_NAME_KEY}
    return session.name == named and session.matches(labels)


def _pick(sessions: list[AgentSession], selector: dict[str, Any]) -> AgentSession | None:
    """The matching agent with the most free credits (spreads load)."""
    best: AgentSession | None = None
    for session in sessions:
        usable = session.credits > 0 and not session.draining and _matches(session, selector)
        if usable and (best is None or session.credits > best.credits):
            best = session
    return best


def _no_agent_reason(selector: dict[str, Any], connected: list[AgentSession]) -> str:
    """Why no agent took the step: none connected can reach its connections or has its
    labels, or those that can are busy or draining."""
    if not selector:
        return "waiting for a free agent slot"
    named = selector.get(AGENT_NAME_KEY)
    if named is not None:
        if not any(s.name == named for s in connected):
            return f"waiting: agent '{named}' (the agent this test runs on) is not connected"
        return f"waiting: agent '{named}' (the agent this test runs on) is busy or draining"
    connections = sorted(
        key.removeprefix(CONNECTION_LABEL) for key in selector if key.startswith(CONNECTION_LABEL)
    )
    for name in connections:
        if not any(s.matches({connection_label(name): "true"}) for s in connected):
            return f"waiting: no connected agent has connection '{name}'"
    labels = ", ".join(f"{k}={v}" for k, v in sorted(selector.items()))
    if not any(_matches(s, selector) for s in connected):
        return f"waiting: no connected agent has labels {labels}"
    return f"waiting: every connected agent with labels {labels} is busy or draining"


def _due(now: datetime) -> Any:
    """Steps an agent may take now: ready, or pending with a retry delay that has ended
    (not trigger steps: the control plane runs those)."""
    return (_STEPS.kind != TRIGGER_KIND) & or_(
        _STEPS.status == StepStatus.READY,
        (_STEPS.status == StepStatus.PENDING) & (_STEPS.not_before <= now),
    )
