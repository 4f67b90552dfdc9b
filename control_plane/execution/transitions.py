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
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.errors import LeaseLost, NotFound, PermissionDenied
from control_plane.execution import runlog
from control_plane.execution.bindings import run_context, step_facts
from control_plane.execution.effects import Effects
from control_plane.execution.guardrails import (
    DEFAULT_DURATION_BASELINE,
    DEFAULT_RECORDS_BASELINE,
    Verdict,
    duration_verdict,
    records_verdict,
)
from control_plane.execution.observer import (
    NO_OBSERVER,
    ExecutionObserver,
    observe,
    observe_attempt,
)
from control_plane.execution.plans import Plan, PlanCache
from control_plane.execution.resolver import Decision, MissingFactsError, run_outcome
from control_plane.execution.retries import effective_policy
from control_plane.execution.settling import AttemptFacts, AttemptOutcome, decided, settle
from control_plane.lineage.records import declared_json
from control_plane.quoting import quote
from control_plane.statuses import (
    ACTIVE_ATTEMPT,
    RUN_TERMINAL,
    STEP_TERMINAL,
    STEP_UNFINISHED,
    TEST_TRIGGER,
    TRIGGER_KIND,
    RunStatus,
    StepStatus,
)
from control_plane.store import attempts as attempt_store
from control_plane.store import history, log_lines
from control_plane.store import steps as step_store
from control_plane.store.attempts import AttemptState
from control_plane.store.models import PipelineRow, RunRow
from control_plane.store.steps import Step, StepState
from legato.spec.units import format_duration
from observability.tracing import Tracing

__all__ = [
    "AttemptOutcome",
    "Lease",
    "RunEvent",
    "RunFinished",
    "RunStarted",
    "StepRetrying",
    "Transitions",
    "deadline_reason",
    "not_yours",
]

RunFinished = Callable[[AsyncSession, RunRow, Any, datetime], Awaitable[str | None]]
"""Called in the transaction that ends a run (with its pipeline row locked), by the domains
that follow runs (scheduling counts failures toward ``pause_after_failures``,
notifications write their outbox); a returned text is written to the run's log."""
RunStarted = Callable[[AsyncSession, RunRow, Any, datetime], Awaitable[None]]
"""Called in the transaction that starts a run (notifications write their outbox)."""


StepRetrying = Callable[[AsyncSession, RunRow, Any, dict[str, Any], datetime], Awaitable[None]]
"""Called in the transaction that schedules a step's retry (notifications), with the step:
``name``, ``attempt`` (the one that failed), ``attempts_total``, ``error``,
``failure_kind`` and ``retry_time`` (ISO 8601)."""

RunEvent = Callable[
    [AsyncSession, RunRow, Any, str, str, dict[str, Any], datetime], Awaitable[None]
]
"""Called when a guardrail breaks (notifications): the event (``volume_anomaly``,
``slow``), its occurrence in the run (``<step>-<attempt>``, ``run``) and its details
(``guardrail``: the message and the figures)."""

# A step that fails this close to its run's deadline was stopped by it.
DEADLINE_SLACK_SECONDS = 1.0
_STEPS = step_store.TABLE.c
# The steps whose error a failed run reports (the first of them by position).
_STEP_FAILED = frozenset({StepStatus.FAILED, StepStatus.TIMED_OUT})


@dataclass(frozen=True)
class Lease:
    """A current lease: its run (locked), its attempt and the attempt's step."""

    run: RunRow
    attempt: AttemptState
    step: StepState


class Transitions:
    def __init__(
        self,
        plans: PlanCache,
        clock: Callable[[], datetime],
        tracing: Tracing | None = None,
        *,
        on_run_finished: Sequence[RunFinished] = (),
        on_run_started: Sequence[RunStarted] = (),
        on_step_retrying: Sequence[StepRetrying] = (),
        on_run_event: Sequence[RunEvent] = (),
        observer: ExecutionObserver = NO_OBSERVER,
    ) -> None:
        self.plans = plans
        self.observer = observer
        self.clock = clock
        self.tracing = tracing
        self._on_run_finished = tuple(on_run_finished)
        self._on_run_started = tuple(on_run_started)
        self._on_step_retrying = tuple(on_step_retrying)
        self._on_run_event = tuple(on_run_event)

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
    ) -> Lease:
        """A lease that is still current, its run locked; LeaseLost otherwise: a report
        for any other lease must change nothing. With ``agent``, the lease must be that
        agent's (PermissionDenied otherwise). Two statements: the attempt with its step,
        then the run's lock; the fenced write that ends the attempt checks it again."""
        found = await attempt_store.of_lease(session, lease_id)
        if found is None:
            raise LeaseLost(f"lease {lease_id} is unknown", metadata={"lease_id": lease_id})
        attempt, step = found
        if agent is not None and attempt.agent != agent:
            raise not_yours(lease_id, agent)
        run = await self.lock_run(session, attempt.run_id)
        if attempt.status not in ACTIVE_ATTEMPT:
            raise lease_lost(lease_id, attempt.status)
        return Lease(run, attempt, step)

    # -- runs -------------------------------------------------------------------------

    async def start_run(
        self,
        session: AsyncSession,
        run: RunRow,
        plan: Plan,
        effects: Effects,
        *,
        steps: dict[str, Step] | None = None,
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
        for hook in self._on_run_started:
            await hook(session, run, plan.spec, now)
        if steps is None:
            steps = dict(await step_store.all_of(session, run.id))
        facts, context = self.facts(steps), self.context(run)
        decisions = list(plan.dag.start(facts, context))
        # A rerun starts with the steps it reuses already succeeded: decide their children.
        done = [name for name, row in steps.items() if row.status in STEP_TERMINAL]
        if done:
            await self._apply_decisions(session, run, plan, steps, decisions, effects, now)
            decisions = list(plan.dag.after(done, self.facts(steps), context))
        await self._apply_decisions(session, run, plan, steps, decisions, effects, now)
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
        observe(effects, self.observer.run_finished, status)
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
        if run.trigger_kind != TEST_TRIGGER:  # a test run never held a production slot
            await self.promote_queued(session, run.pipeline_id, plan, effects)
        if status == RunStatus.SUCCEEDED and plan.spec.expect.HasField("duration"):
            expect = plan.spec.expect.duration
            past = await history.run_durations(
                session,
                run.pipeline_id,
                before=run.id,
                limit=expect.baseline_runs or DEFAULT_DURATION_BASELINE,
            )
            verdict = duration_verdict("the run", expect, duration, past)
            if verdict is not None:
                await self._guardrail_broke(session, run, plan, "slow", "run", verdict, now)
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
            .where(
                RunRow.pipeline_id == pipeline_id,
                RunRow.status == RunStatus.RUNNING,
                RunRow.trigger_kind != TEST_TRIGGER,  # test runs do not count
            )
            .order_by(RunRow.create_time)
            .limit(limit)
        )
        return list(rows.scalars())

    async def stop_run(
        self, session: AsyncSession, run: RunRow, status: str, reason: str, effects: Effects
    ) -> None:
        """Cancel (status ``cancelled``) or time out (``timed_out``) a run: unfinished
        steps end, running attempts are fenced and their agents told to stop them."""
        if run.status in RUN_TERMINAL:
            return
        now = self.clock()
        plan = await self.plan_of(session, run)
        # Steps first: the dispatcher claims ready steps without the run lock, and this
        # update waits for a claim it holds, then sees the step leased and its attempt.
        stopped = await step_store.cancel_unfinished(
            session,
            run.id,
            STEP_UNFINISHED,
            status=status,
            end_time=now,
            error=reason,
            waiting_reason="",
        )
        for agent, lease_id in await attempt_store.stop_active(
            session, run.id, status, now, reason
        ):
            effects.cancels.append((agent, lease_id, reason))
        waited_for: list[str] = []
        for step in stopped:
            if step.child_run_id:  # a trigger step waiting for its child run
                waited_for.append(step.child_run_id)
            effects.changed(run.id, step.name)
            observe(effects, self.observer.step_finished, status)
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
        found = await attempt_store.start(session, lease_id, agent, started)
        if found.run_id:
            return found.run_id, found.step
        if found.owner is not None and found.owner != agent:
            raise not_yours(lease_id, agent)
        if found.repeated:
            return None
        raise LeaseLost(f"lease {lease_id} is no longer current", metadata={"lease_id": lease_id})

    async def finish_attempt(
        self,
        session: AsyncSession,
        lease: Lease,
        outcome: AttemptOutcome,
        effects: Effects,
        *,
        expired_before: datetime | None = None,
    ) -> None:
        """Record how a current attempt ended, retry or settle its step, and decide what
        follows in the run (see ``settling.settle``). The lease's run is locked. With
        ``expired_before``, only a lease that expired before it ends (LeaseLost if it
        was renewed)."""
        now = self.clock()
        run, attempt, step = lease.run, lease.attempt, lease.step
        plan = await self.plan_of(session, run)
        effects.changed(run.id, step.name)
        if outcome.status != "succeeded" and self._past_deadline(run, outcome.end_time or now):
            # The step was stopped because the run ran out of time: its timeout is capped
            # by what is left of limits.max_duration. The run times out, not the step.
            await self.stop_run(session, run, "timed_out", deadline_reason(plan), effects)
            return
        broken: list[tuple[str, Verdict]] = []
        if outcome.status == "succeeded" and plan.steps[step.name].HasField("expect"):
            outcome, broken = await self._guard_step(session, run, plan, step, outcome, now)
        declared = declared_json(plan.steps[step.name]) if outcome.status == "succeeded" else None
        if declared is not None:  # a function or transform step's inputs:/outputs:
            outcome = replace(outcome, lineage=declared)
        facts = AttemptFacts(
            step=step.name,
            kind=step.kind,
            position=plan.dag.position(step.name),
            number=attempt.number,
            agent=attempt.agent,
            start_time=step.start_time,
            export_target=_export_target(plan, step.name),
            memory_limit_bytes=plan.memory_bytes(step.name),
        )
        policy = effective_policy(plan.spec, plan.steps[step.name])
        done = settle(facts, outcome, policy, run_running=run.status == RunStatus.RUNNING, now=now)
        if not await attempt_store.end(
            session, attempt, expired_before=expired_before, **done.attempt
        ):
            raise lease_lost(attempt.lease_id, None)  # fenced while the run lock was awaited
        observe_attempt(effects, self.observer, step.kind, attempt, outcome, now)
        if done.retry_at is None:
            observe(effects, self.observer.step_finished, done.step["status"])
        await step_store.write(session, step, **done.step)
        for text in done.logs:
            self.log(session, run.id, text, now, step=step.name, attempt=attempt.number)
        for event, verdict in broken:
            occurrence = f"{step.name}-{attempt.number}"
            await self._guardrail_broke(
                session, run, plan, event, occurrence, verdict, now, attempt=attempt.number
            )
        if done.retry_at is not None:
            effects.wake_at.append(done.retry_at)
            effects.work = True
            retrying = {
                "name": step.name,
                "attempt": attempt.number,
                "attempts_total": 1 + policy.max_retries,
                "error": outcome.error,
                "failure_kind": str(done.step.get("failure_kind", "")),
                "retry_time": done.retry_at.isoformat(),
            }
            for hook in self._on_step_retrying:
                await hook(session, run, plan.spec, retrying, now)
            return
        await self.resolve(session, run, plan, [step.name], effects, steps={step.name: step})

    async def resolve(
        self,
        session: AsyncSession,
        run: RunRow,
        plan: Plan,
        finished: Iterable[str],
        effects: Effects,
        *,
        steps: dict[str, Step] | None = None,
    ) -> None:
        """Decide the steps that depend on ``finished`` and end the run when all are done.
        ``steps``: steps the caller has read already (some or all of the run's).

        Only the rows the decisions read are read: the finished steps' children and their
        parents (every step when a child has a ``when``, or more when a skip or a failure
        cascades), so a transition costs the same in a 10,000-step run as in a 3-step
        one."""
        now = self.clock()
        finished = list(finished)
        known: dict[str, Step] = dict(steps or {})
        needed = plan.dag.facts_needed(finished)
        context = self.context(run)
        while True:
            wanted = set(plan.dag.order) if needed is None else set(needed)
            if not wanted <= known.keys():
                known.update(await step_store.named(session, run.id, wanted - known.keys()))
            try:
                decisions = plan.dag.after(finished, self.facts(known), context)
                break
            except MissingFactsError as lack:
                needed = None if needed is None or lack.names is None else needed | lack.names
        await self._apply_decisions(session, run, plan, known, decisions, effects, now)
        await self._maybe_finish(session, run, plan, known, effects)

    # -- helpers ----------------------------------------------------------------------

    async def _guard_step(
        self,
        session: AsyncSession,
        run: RunRow,
        plan: Plan,
        step: Step,
        outcome: AttemptOutcome,
        now: datetime,
    ) -> tuple[AttemptOutcome, list[tuple[str, Verdict]]]:
        """A succeeded attempt against its step's guardrails: the outcome (failed with the
        message when a ``fail`` records guardrail broke) and the guardrails that broke
        (their events). Reads the step's history only when a guardrail compares with
        it."""
        expect = plan.steps[step.name].expect
        wanted = 0
        if expect.HasField("records") and expect.records.max_change:
            wanted = expect.records.baseline_runs or DEFAULT_RECORDS_BASELINE
        if expect.HasField("duration"):
            wanted = max(wanted, expect.duration.baseline_runs or DEFAULT_DURATION_BASELINE)
        past = (
            await history.step_history(
                session, run.pipeline_id, step.name, before=run.id, limit=wanted
            )
            if wanted
            else []
        )
        broken: list[tuple[str, Verdict]] = []
        if expect.HasField("records"):
            count = outcome.records_out if outcome.records_out is not None else outcome.records_in
            records = [p.records for p in past if p.records is not None]
            verdict = records_verdict(step.name, expect.records, count, records)
            if verdict is not None:
                broken.append(("volume_anomaly", verdict))
                if verdict.fail:
                    failed = replace(
                        outcome,
                        status="failed",
                        failure_kind="error",
                        error=verdict.message,
                        output={},
                    )
                    return failed, broken
        if expect.HasField("duration") and step.start_time is not None:
            seconds = ((outcome.end_time or now) - step.start_time).total_seconds()
            durations = [p.seconds for p in past if p.seconds is not None]
            verdict = duration_verdict(
                f"step '{step.name}'", expect.duration, seconds, durations, step=step.name
            )
            if verdict is not None:
                broken.append(("slow", verdict))
        return outcome, broken

    async def _guardrail_broke(
        self,
        session: AsyncSession,
        run: RunRow,
        plan: Plan,
        event: str,
        occurrence: str,
        verdict: Verdict,
        now: datetime,
        *,
        attempt: int = 0,
    ) -> None:
        """Say in the run log why a guardrail broke and fire its event."""
        step = str(verdict.details.get("step", "")) if occurrence != "run" else ""
        action = "failed the step" if verdict.fail else "warning"
        self.log(
            session,
            run.id,
            f"Guardrail ({action}): {verdict.message}",
            now,
            step=step,
            attempt=attempt,
        )
        details = {"guardrail": {"message": verdict.message, **verdict.details}}
        for hook in self._on_run_event:
            await hook(session, run, plan.spec, event, occurrence, details, now)

    @staticmethod
    def _past_deadline(run: RunRow, moment: datetime) -> bool:
        slack = timedelta(seconds=DEADLINE_SLACK_SECONDS)
        return run.deadline_time is not None and moment >= run.deadline_time - slack

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

    async def _apply_decisions(
        self,
        session: AsyncSession,
        run: RunRow,
        plan: Plan,
        steps: dict[str, Step],
        decisions: Iterable[Decision],
        effects: Effects,
        now: datetime,
    ) -> None:
        """Write the resolver's decisions. A step made ready is written when the unit of
        work has tried to lease it (``store/steps``: deferred), so it is written once,
        ``leased`` when an agent takes it at once."""
        for decision in decisions:
            row = steps[decision.step]
            change = decided(decision, plan.dag.position(row.name), now)
            effects.changed(run.id, row.name)
            if change.ready:
                step_store.defer(session, row, **change.values)
                if row.kind == TRIGGER_KIND:
                    effects.trigger_steps = True  # the control plane runs it (child_runs)
                    continue
                effects.work = True
                effects.ready.append((row, run))
                effects.siblings[run.id] = steps
                continue
            await step_store.write(session, row, **change.values)
            observe(effects, self.observer.step_finished, change.values["status"])
            if change.log is not None:
                self.log(session, run.id, change.log, now, step=row.name)

    async def _maybe_finish(
        self,
        session: AsyncSession,
        run: RunRow,
        plan: Plan,
        steps: dict[str, Step],
        effects: Effects,
    ) -> None:
        """End the run when no step is left to finish. ``steps``: rows read by the
        caller; when they are not all of the run's, the store is asked (an index probe per
        unfinished status), not every row read."""
        if run.status != RunStatus.RUNNING:
            return
        if any(row.status in STEP_UNFINISHED for row in steps.values()):
            return  # a step it read is not done (in a chain: the next one): no probe
        first_failed: Step | None
        if len(steps) == len(plan.dag.order):
            outcome = plan.dag.outcome(self.facts(steps))
            failed = [s for s in steps.values() if s.status in _STEP_FAILED]
            first_failed = min(failed, key=lambda s: s.position) if failed else None
        else:
            if await step_store.any_with_status(session, run.id, STEP_UNFINISHED):
                return
            outcome = run_outcome(await step_store.statuses_of(session, run.id))
            first_failed = await step_store.first_with_status(session, run.id, _STEP_FAILED)
        if outcome is None:
            return
        error = ""
        if outcome == RunStatus.FAILED and first_failed is not None:
            shown = first_failed.status.replace("_", " ")
            error = f"step '{first_failed.name}' {shown}: {first_failed.error}"
        await self.finish_run(session, run, plan, outcome, error, effects)


def _export_target(plan: Plan, step: str) -> str | None:
    spec_step = plan.steps[step]
    if spec_step.WhichOneof("kind") != "export":
        return None
    return spec_step.export.WhichOneof("target")


def deadline_reason(plan: Plan) -> str:
    return f"the run exceeded limits.max_duration of {format_duration(plan.max_duration or 0)}"


def lease_lost(lease_id: str, status: str | None) -> LeaseLost:
    """The error for a report naming a lease that is no longer current."""
    if status is None:
        return LeaseLost(f"lease {lease_id} is no longer current", metadata={"lease_id": lease_id})
    return LeaseLost(
        f"lease {lease_id} is no longer current (its attempt is {status})",
        metadata={"lease_id": lease_id, "status": status},
    )


def not_yours(lease_id: str, agent: str) -> PermissionDenied:
    """The error for an agent reporting on a lease it was not given."""
    return PermissionDenied(
        f"lease {lease_id} was not given to agent {agent!r}; an agent reports only on its "
        "own leases",
        reason="LEASE_NOT_YOURS",
        metadata={"lease_id": lease_id},
    )
