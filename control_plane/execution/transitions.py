"""Every state change of runs, steps and attempts, applied inside the caller's write
transaction.

Lock order is always run → step → attempt: a transition first locks its run's row
(``FOR UPDATE`` on PostgreSQL; SQLite writers are serialised anyway), so transitions of
one run never interleave — two parallel steps that finish at the same moment cannot both
miss their common child — and cancellation and results cannot deadlock. An attempt whose
status is no longer leased/running is final: reports naming its lease are refused
(fencing), which makes completion exactly-once although execution is at-least-once.

The run log lines (``Step 2: transform (127 → 98 after filtering)``) are written here, in
the same transaction as the change they describe."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.errors import LeaseLost, NotFound, PermissionDenied
from control_plane.execution import runlog
from control_plane.execution.bindings import run_context, step_facts
from control_plane.execution.effects import Effects
from control_plane.execution.plans import Plan, PlanCache
from control_plane.execution.resolver import MissingFactsError, run_outcome
from control_plane.execution.retries import decide_retry, effective_policy
from control_plane.execution.statuses import (
    ACTIVE_ATTEMPT,
    RUN_TERMINAL,
    STEP_TERMINAL,
    STEP_UNFINISHED,
    TRIGGER_KIND,
    AttemptStatus,
    RunStatus,
    StepStatus,
)
from control_plane.quoting import quote
from control_plane.store import log_lines
from control_plane.store.models import AttemptRow, PipelineRow, RunRow, StepRunRow
from legato.spec.units import format_duration
from observability.tracing import Tracing

__all__ = ["AttemptOutcome", "RunFinished", "Transitions", "deadline_reason", "not_yours"]

RunFinished = Callable[[AsyncSession, RunRow, Any, datetime], Awaitable[str | None]]
"""Called in the transaction that ends a run (with its pipeline row locked), by the domains
that follow runs (scheduling counts failures toward ``pause_after_failures``); a returned
text is written to the run's log."""

# A step that fails this close to its run's deadline was stopped by it.
DEADLINE_SLACK_SECONDS = 1.0
_ATTEMPTS = cast(Table, AttemptRow.__table__)
_STEPS = cast(Table, StepRunRow.__table__)
# The steps whose error a failed run reports (the first of them by position).
_STEP_FAILED = frozenset({StepStatus.FAILED, StepStatus.TIMED_OUT})


@dataclass(frozen=True)
class AttemptOutcome:
    """How an attempt ended, as its agent (or the lease reaper) reports it."""

    status: str  # "succeeded" | "failed" | "cancelled"
    failure_kind: str = ""  # "error" | "timeout" | "lost" | "memory" when failed
    error: str = ""
    records_in: int | None = None
    records_out: int | None = None
    output: dict[str, Any] = field(default_factory=dict)
    end_time: datetime | None = None


class Transitions:
    def __init__(
        self,
        plans: PlanCache,
        clock: Callable[[], datetime],
        tracing: Tracing | None = None,
        *,
        on_run_finished: Sequence[RunFinished] = (),
    ) -> None:
        self.plans = plans
        self.clock = clock
        self.tracing = tracing
        self._on_run_finished = tuple(on_run_finished)

    # -- locking ----------------------------------------------------------------------

    async def lock_run(self, session: AsyncSession, run_id: str) -> RunRow:
        run = await session.get(RunRow, run_id, with_for_update=True, populate_existing=True)
        if run is None:
            raise NotFound(f"run {quote(run_id)} does not exist", reason="RUN_NOT_FOUND")
        return run

    async def plan_of(self, session: AsyncSession, run: RunRow) -> Plan:
        return await self.plans.get(session, run.pipeline_id, run.pipeline, run.version)

    async def current_attempt(
        self, session: AsyncSession, lease_id: str, *, agent: str | None = None
    ) -> tuple[RunRow, AttemptRow]:
        """The run (locked) and attempt (locked) of a lease that is still current, or
        LeaseLost: a report for any other lease must change nothing. With ``agent``, the
        lease must be that agent's (PermissionDenied otherwise)."""
        run_id = (
            await session.execute(select(AttemptRow.run_id).where(AttemptRow.lease_id == lease_id))
        ).scalar_one_or_none()
        if run_id is None:
            raise LeaseLost(f"lease {lease_id} is unknown", metadata={"lease_id": lease_id})
        run = await self.lock_run(session, run_id)
        attempt = (
            await session.execute(
                select(AttemptRow)
                .where(AttemptRow.lease_id == lease_id)
                .with_for_update()
                .execution_options(populate_existing=True)
            )
        ).scalar_one()
        if agent is not None and attempt.agent != agent:
            raise not_yours(lease_id, agent)
        if attempt.status not in ACTIVE_ATTEMPT:
            raise LeaseLost(
                f"lease {lease_id} is no longer current (its attempt is {attempt.status})",
                metadata={"lease_id": lease_id, "status": attempt.status},
            )
        return run, attempt

    # -- runs -------------------------------------------------------------------------

    async def start_run(
        self,
        session: AsyncSession,
        run: RunRow,
        plan: Plan,
        effects: Effects,
        *,
        steps: dict[str, StepRunRow] | None = None,
    ) -> None:
        """Move a created or queued run to running and decide its first steps (``steps``:
        the run's step rows, when the caller has just created them)."""
        now = self.clock()
        if self.tracing is not None and (now - run.create_time).total_seconds() > 0.001:
            tracing, created = self.tracing, run.create_time
            effects.spans.append(
                lambda: tracing.span(
                    "queued",
                    trace_id=run.trace_id,
                    parent_span_id=run.span_id,
                    start=created,
                    end=now,
                    attributes={"legato.run_id": run.id},
                )
            )
        run.status = "running"
        run.start_time = now
        run.waiting_reason = ""
        if plan.max_duration is not None:
            run.deadline_time = now + timedelta(seconds=plan.max_duration)
        logical = run.logical_time
        self.log(
            session,
            run.id,
            runlog.pipeline_started(run.pipeline, run.version, run.trigger_kind, logical),
            now,
        )
        if steps is None:
            steps = await self.steps_of(session, run.id)
        facts, context = self.facts(steps), self.context(run)
        decisions = list(plan.dag.start(facts, context))
        # A rerun starts with the steps it reuses already succeeded: decide their children.
        done = [name for name, row in steps.items() if row.status in STEP_TERMINAL]
        if done:
            self._apply_decisions(session, run, plan, steps, decisions, effects, now)
            decisions = list(plan.dag.after(done, self.facts(steps), context))
        self._apply_decisions(session, run, plan, steps, decisions, effects, now)
        await self._maybe_finish(session, run, plan, steps, effects)
        effects.changed(run.id)

    async def finish_run(
        self,
        session: AsyncSession,
        run: RunRow,
        plan: Plan,
        status: str,
        error: str,
        effects: Effects,
    ) -> None:
        now = self.clock()
        run.status = status
        run.end_time = now
        run.error = error
        run.waiting_reason = ""
        duration = (now - (run.start_time or run.create_time)).total_seconds()
        self.log(session, run.id, runlog.pipeline_finished(status, error or None, duration), now)
        effects.changed(run.id)
        if (run.trigger or {}).get("parent_run_id"):
            effects.trigger_steps = True  # a trigger step may be waiting for this run
        if self.tracing is not None:
            tracing, start = self.tracing, run.start_time or run.create_time
            attributes = {
                "legato.run_id": run.id,
                "legato.pipeline": run.pipeline,
                "legato.version": run.version,
                "legato.trigger": run.trigger_kind,
                "legato.status": status,
            }
            effects.spans.append(
                lambda: tracing.span(
                    f"run {run.pipeline}",
                    trace_id=run.trace_id,
                    span_id=run.span_id,
                    start=start,
                    end=now,
                    attributes=attributes,
                    error=error if status != "succeeded" else "",
                )
            )
        await self.promote_queued(session, run.pipeline_id, plan, effects)
        for hook in self._on_run_finished:
            text = await hook(session, run, plan.spec, now)
            if text:
                self.log(session, run.id, text, now)

    async def promote_queued(
        self, session: AsyncSession, pipeline_id: int, plan: Plan, effects: Effects
    ) -> None:
        """Start queued runs of the pipeline while it is under max_concurrent_runs (1 when
        unset: then only the scheduler's overlap policy and backfills queue runs), live
        runs before backfill runs, oldest first."""
        limit = plan.spec.limits.max_concurrent_runs or 1
        # Promotions of one pipeline take turns on its row (lock order: run, pipeline), as
        # do new runs deciding whether to queue: so a run queued concurrently is seen here
        # or sees this one ended. Only then may "nothing is queued" end the promotion.
        await session.execute(
            select(PipelineRow.id).where(PipelineRow.id == pipeline_id).with_for_update()
        )
        waiting = await session.execute(
            select(RunRow.id)
            .where(RunRow.pipeline_id == pipeline_id, RunRow.status == RunStatus.QUEUED)
            .limit(1)
        )
        if waiting.first() is None:
            return  # most pipelines: nothing to count
        while True:
            active = await self.active_runs(session, pipeline_id, limit=limit)
            if len(active) >= limit:
                return
            queued = (
                await session.execute(
                    select(RunRow)
                    .where(RunRow.pipeline_id == pipeline_id, RunRow.status == "queued")
                    .order_by(
                        RunRow.backfill_id.is_not(None),
                        RunRow.create_time,
                        RunRow.logical_time,
                        RunRow.id,
                    )
                    .limit(1)
                    .with_for_update(skip_locked=True)
                )
            ).scalar_one_or_none()
            if queued is None:
                return
            await self.start_run(session, queued, await self.plan_of(session, queued), effects)

    async def active_runs(
        self, session: AsyncSession, pipeline_id: int, *, limit: int
    ) -> list[str]:
        """The pipeline's running runs, oldest first, at most ``limit`` of them (enough to
        tell whether it is at its limit: the count is never read past it)."""
        rows = await session.execute(
            select(RunRow.id)
            .where(RunRow.pipeline_id == pipeline_id, RunRow.status == RunStatus.RUNNING)
            .order_by(RunRow.create_time)
            .limit(limit)
        )
        return list(rows.scalars())

    async def stop_run(
        self, session: AsyncSession, run: RunRow, status: str, reason: str, effects: Effects
    ) -> None:
        """Cancel (status ``cancelled``) or time out (``timed_out``) a run: pending steps
        end, running attempts are fenced and their agents told to stop them."""
        if run.status in RUN_TERMINAL:
            return
        now = self.clock()
        plan = await self.plan_of(session, run)
        # Lock the steps: the dispatcher claims ready steps without the run lock, and must
        # either see them cancelled or have committed its claim (whose attempt we then see).
        steps = await self.steps_of(session, run.id, for_update=True)
        active = (
            await session.execute(
                select(AttemptRow)
                .where(AttemptRow.run_id == run.id, AttemptRow.status.in_(ACTIVE_ATTEMPT))
                .with_for_update()
            )
        ).scalars()
        for attempt in active:
            attempt.status = status
            attempt.end_time = now
            attempt.error = reason
            effects.cancels.append((attempt.agent, attempt.lease_id, reason))
        waited_for: list[str] = []
        for step in steps.values():
            if step.status not in STEP_TERMINAL:
                if step.status == "running" and step.child_run_id:
                    waited_for.append(step.child_run_id)
                step.status = status
                step.end_time = now
                step.error = reason
                step.waiting_reason = ""
                effects.changed(run.id, step.name)
                text = runlog.step_cancelled(plan.dag.position(step.name), step.name, reason)
                self.log(session, run.id, text, now, step=step.name, attempt=step.attempt)
        await self.finish_run(session, run, plan, status, reason, effects)
        # A trigger step waiting for its child run takes the child with it (locks go
        # parent → child, the order every other path uses).
        for child_id in waited_for:
            child = await self.lock_run(session, child_id)
            why = f"its parent run {run.id} was {status.replace('_', ' ')}"
            await self.stop_run(session, child, "cancelled", why, effects)

    # -- attempts ---------------------------------------------------------------------

    async def attempt_started(
        self, session: AsyncSession, lease_id: str, started: datetime, *, agent: str
    ) -> tuple[str, str] | None:
        """Mark a leased attempt running; returns its run id and step name (``None`` when
        it was running already: a report repeated after a reconnect). Two fenced UPDATEs
        and no run lock: this report arrives for every step, just before its result. Only
        the agent holding the lease may report it (PermissionDenied otherwise)."""
        attempts, steps = _ATTEMPTS.c, _STEPS.c
        row = (
            await session.execute(
                update(_ATTEMPTS)
                .where(
                    attempts.lease_id == lease_id,
                    attempts.status == AttemptStatus.LEASED,
                    attempts.agent == agent,
                )
                .values(status=AttemptStatus.RUNNING, start_time=started)
                .returning(attempts.step_run_id, attempts.run_id)
            )
        ).first()
        if row is None:
            found = (
                await session.execute(
                    select(attempts.status, attempts.agent).where(attempts.lease_id == lease_id)
                )
            ).first()
            status = found[0] if found is not None else None
            if found is not None and found[1] != agent:
                raise not_yours(lease_id, agent)
            if status == AttemptStatus.RUNNING:
                return None  # a repeated report after a reconnect
            raise LeaseLost(
                f"lease {lease_id} is no longer current", metadata={"lease_id": lease_id}
            )
        step_run_id, run_id = row
        name = await session.scalar(
            update(_STEPS)
            .where(steps.id == step_run_id, steps.status.in_(sorted(ACTIVE_ATTEMPT)))
            .values(status=StepStatus.RUNNING, start_time=func.coalesce(steps.start_time, started))
            .returning(steps.name)
        )
        return str(run_id), str(name or "")

    async def finish_attempt(
        self,
        session: AsyncSession,
        run: RunRow,
        attempt: AttemptRow,
        outcome: AttemptOutcome,
        effects: Effects,
    ) -> None:
        """Record how a current attempt ended, retry or settle its step, and decide what
        follows in the run. ``run`` and ``attempt`` are locked by the caller."""
        now = self.clock()
        end = outcome.end_time or now
        plan = await self.plan_of(session, run)
        step = await session.get(StepRunRow, attempt.step_run_id, populate_existing=True)
        assert step is not None  # attempts are deleted with their step
        attempt.end_time = end
        attempt.records_in = outcome.records_in
        attempt.records_out = outcome.records_out
        attempt.error = outcome.error
        attempt.failure_kind = outcome.failure_kind
        position = plan.dag.position(step.name)
        step.records_in = outcome.records_in
        step.records_out = outcome.records_out
        step.end_time = end
        effects.changed(run.id, step.name)
        if outcome.status == "succeeded":
            attempt.status = "succeeded"
            step.status = "succeeded"
            step.error = ""
            step.failure_kind = ""
            step.output = outcome.output
            duration = ((end - step.start_time).total_seconds()) if step.start_time else 0.0
            text = runlog.step_succeeded(
                position,
                step.name,
                step.kind,
                outcome.records_in,
                outcome.records_out,
                duration,
                export_target=_export_target(plan, step.name),
            )
            self.log(session, run.id, text, now, step=step.name, attempt=attempt.number)
        elif self._past_deadline(run, end):
            # The step was stopped because the run ran out of time: its timeout is capped
            # by what is left of limits.max_duration. The run times out, not the step.
            await self.stop_run(session, run, "timed_out", deadline_reason(plan), effects)
            return
        else:
            kind = outcome.failure_kind or "error"
            attempt.status = "timed_out" if kind == "timeout" else "failed"
            step.error = outcome.error
            step.failure_kind = kind
            policy = effective_policy(plan.spec, plan.steps[step.name])
            decision = decide_retry(policy, attempt.number, kind)
            retry = decision if decision.retry and run.status == "running" else None
            if kind == "lost":
                text = runlog.step_lost(position, step.name, attempt.number, attempt.agent)
                self.log(session, run.id, text, now, step=step.name, attempt=attempt.number)
            text = runlog.step_failed(
                position, step.name, attempt.number, decision.attempts_total, outcome.error, retry
            )
            self.log(session, run.id, text, now, step=step.name, attempt=attempt.number)
            if retry is not None:
                step.status = "pending"
                step.not_before = now + timedelta(seconds=retry.delay)
                step.waiting_reason = retry.reason
                effects.wake_at.append(step.not_before)
                effects.work = True
                return
            step.status = "timed_out" if kind == "timeout" else "failed"
        await self.resolve(session, run, plan, [step.name], effects, steps={step.name: step})

    async def resolve(
        self,
        session: AsyncSession,
        run: RunRow,
        plan: Plan,
        finished: Iterable[str],
        effects: Effects,
        *,
        steps: dict[str, StepRunRow] | None = None,
    ) -> None:
        """Decide the steps that depend on ``finished`` and end the run when all are done.
        ``steps``: step rows the caller has loaded already (some or all of the run's).

        Only the rows the decisions read are loaded: the finished steps' children and
        their parents (every step when a child has a ``when``, or more when a skip or a
        failure cascades), so a transition costs the same in a 10,000-step run as in a
        3-step one."""
        now = self.clock()
        finished = list(finished)
        known = dict(steps or {})
        needed = plan.dag.facts_needed(finished)
        context = self.context(run)
        while True:
            wanted = set(plan.dag.order) if needed is None else set(needed)
            if not wanted <= known.keys():
                known.update(await self.steps_named(session, run.id, wanted - known.keys()))
            try:
                decisions = plan.dag.after(finished, self.facts(known), context)
                break
            except MissingFactsError as lack:
                needed = None if needed is None or lack.names is None else needed | lack.names
        self._apply_decisions(session, run, plan, known, decisions, effects, now)
        await self._maybe_finish(session, run, plan, known, effects)

    # -- helpers ----------------------------------------------------------------------

    @staticmethod
    def _past_deadline(run: RunRow, moment: datetime) -> bool:
        slack = timedelta(seconds=DEADLINE_SLACK_SECONDS)
        return run.deadline_time is not None and moment >= run.deadline_time - slack

    async def steps_named(
        self, session: AsyncSession, run_id: str, names: set[str]
    ) -> dict[str, StepRunRow]:
        """The run's step rows of ``names`` (all of them when that is most of the run)."""
        if len(names) > 200:
            found = await self.steps_of(session, run_id)
            return {name: row for name, row in found.items() if name in names}
        rows = await session.execute(
            select(StepRunRow)
            .where(StepRunRow.run_id == run_id, StepRunRow.name.in_(sorted(names)))
            .execution_options(populate_existing=True)
        )
        return {row.name: row for row in rows.scalars()}

    async def steps_of(
        self, session: AsyncSession, run_id: str, *, for_update: bool = False
    ) -> dict[str, StepRunRow]:
        stmt = (
            select(StepRunRow)
            .where(StepRunRow.run_id == run_id)
            .order_by(StepRunRow.position)
            .execution_options(populate_existing=True)
        )
        if for_update:
            stmt = stmt.with_for_update()
        rows = await session.execute(stmt)
        return {row.name: row for row in rows.scalars()}

    facts = staticmethod(step_facts)
    context = staticmethod(run_context)

    def log(
        self,
        session: AsyncSession,
        run_id: str,
        text: str,
        now: datetime,
        *,
        step: str = "",
        attempt: int = 0,
    ) -> None:
        log_lines.add(session, run_id, now, text, step=step, attempt=attempt)

    def _apply_decisions(
        self,
        session: AsyncSession,
        run: RunRow,
        plan: Plan,
        steps: dict[str, StepRunRow],
        decisions: Iterable[Any],
        effects: Effects,
        now: datetime,
    ) -> None:
        for decision in decisions:
            row = steps[decision.step]
            row.status = decision.status
            effects.changed(run.id, row.name)
            position = plan.dag.position(row.name)
            if decision.status == "ready":
                row.waiting_reason = ""
                if row.kind == TRIGGER_KIND:
                    effects.trigger_steps = True  # the control plane runs it (child_runs)
                    continue
                effects.work = True
                effects.ready.append((row, run))
                effects.siblings[run.id] = steps
                continue
            row.end_time = now
            row.error = decision.reason if decision.status == "failed" else ""
            row.waiting_reason = ""
            if decision.status == "skipped":
                text = runlog.step_skipped(position, row.name, decision.reason)
            elif decision.status == "upstream_failed":
                row.error = decision.reason
                text = runlog.step_upstream_failed(position, row.name, decision.reason)
            else:
                text = runlog.step_failed(position, row.name, 0, 0, decision.reason, None)
            self.log(session, run.id, text, now, step=row.name)

    async def _maybe_finish(
        self,
        session: AsyncSession,
        run: RunRow,
        plan: Plan,
        steps: dict[str, StepRunRow],
        effects: Effects,
    ) -> None:
        """End the run when no step is left to finish. ``steps``: rows loaded by the
        caller; when they are not all of the run's, the store is asked (an index probe per
        unfinished status), not every row read."""
        if run.status != RunStatus.RUNNING:
            return
        if any(row.status in STEP_UNFINISHED for row in steps.values()):
            return  # a step it read is not done (in a chain: the next one): no probe
        if len(steps) == len(plan.dag.order):
            outcome = plan.dag.outcome(self.facts(steps))
            failed = [s for s in steps.values() if s.status in _STEP_FAILED]
            first_failed = min(failed, key=lambda s: s.position) if failed else None
        else:
            outcome, first_failed = await self._outcome_from_store(session, run.id)
        if outcome is None:
            return
        error = ""
        if outcome == RunStatus.FAILED and first_failed is not None:
            shown = first_failed.status.replace("_", " ")
            error = f"step '{first_failed.name}' {shown}: {first_failed.error}"
        await self.finish_run(session, run, plan, outcome, error, effects)

    async def _outcome_from_store(
        self, session: AsyncSession, run_id: str
    ) -> tuple[str | None, StepRunRow | None]:
        unfinished = await session.execute(
            select(StepRunRow.id)
            .where(StepRunRow.run_id == run_id, StepRunRow.status.in_(sorted(STEP_UNFINISHED)))
            .limit(1)
        )
        if unfinished.first() is not None:
            return None, None
        statuses = await session.execute(
            select(StepRunRow.status).where(StepRunRow.run_id == run_id).distinct()
        )
        outcome = run_outcome(set(statuses.scalars()))
        failed = await session.execute(
            select(StepRunRow)
            .where(StepRunRow.run_id == run_id, StepRunRow.status.in_(sorted(_STEP_FAILED)))
            .order_by(StepRunRow.position)
            .limit(1)
        )
        return outcome, failed.scalars().first()


def _export_target(plan: Plan, step: str) -> str | None:
    spec_step = plan.steps[step]
    if spec_step.WhichOneof("kind") != "export":
        return None
    return spec_step.export.WhichOneof("target")


def deadline_reason(plan: Plan) -> str:
    return f"the run exceeded limits.max_duration of {format_duration(plan.max_duration or 0)}"


def not_yours(lease_id: str, agent: str) -> PermissionDenied:
    """The error for an agent reporting on a lease it was not given."""
    return PermissionDenied(
        f"lease {lease_id} was not given to agent {agent!r}; an agent reports only on its "
        "own leases",
        reason="LEASE_NOT_YOURS",
        metadata={"lease_id": lease_id},
    )
