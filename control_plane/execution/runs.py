"""Runs as the API sees them: start one (parameters checked, concurrency limits applied,
request ids honoured: a retry replays, a concurrent one too, another request under the id is
refused; see ``store/requests.py``), cancel, rerun, and read runs and their logs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from google.protobuf import json_format, struct_pb2
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.access.actors import Actor
from control_plane.errors import FailedPrecondition, InvalidArgument, NotFound, pipeline_not_found
from control_plane.execution import runlog
from control_plane.execution.bindings import required_labels
from control_plane.execution.effects import Effects
from control_plane.execution.ids import new_run_id, new_span_id, new_trace_id
from control_plane.execution.params import resolve_params
from control_plane.execution.plans import Plan, PlanCache
from control_plane.execution.transitions import Transitions
from control_plane.execution.unit_of_work import UnitOfWork
from control_plane.pagination import Page, PageRequest
from control_plane.quoting import quote
from control_plane.statuses import RUN_TERMINAL, TEST_TRIGGER
from control_plane.store import audit, requests
from control_plane.store import pipelines as pipeline_queries
from control_plane.store import steps as step_store
from control_plane.store.db import Database
from control_plane.store.models import AttemptRow, LogLineRow, RunRow, StepRunRow
from control_plane.store.steps import Step, StepState

__all__ = ["RunView", "Runs", "TriggerSpec"]

T = TypeVar("T")
MAX_LOG_PAGE = 10_000
"""Log lines per GetRunLogs page at most (they are small; bytes also bound a page)."""


@dataclass(frozen=True)
class RunView:
    run: RunRow
    steps: list[StepState]
    attempts: dict[int, list[AttemptRow]]


@dataclass(frozen=True)
class TriggerSpec:
    """What started a run, beyond the caller: kind and details for ``RunRow.trigger``."""

    kind: str
    logical_time: datetime | None = None
    details: dict[str, Any] | None = None


class Runs:
    def __init__(
        self,
        db: Database,
        plans: PlanCache,
        transitions: Transitions,
        unit_of_work: UnitOfWork,
        *,
        clock: Callable[[], datetime],
    ) -> None:
        """``unit_of_work`` leases a new run's first steps in the transaction that creates
        it."""
        self._db = db
        self._plans = plans
        self._transitions = transitions
        self._uow = unit_of_work
        self._clock = clock

    # -- mutations ----------------------------------------------------------------------

    async def trigger(
        self,
        pipeline: str,
        *,
        version: int,
        params: struct_pb2.Struct,
        trigger: TriggerSpec,
        actor: Actor,
    ) -> tuple[RunView, bool]:
        """Create a run; returns it and whether it was created (False: request id replay).
        Raises AlreadyExists when the request id was first used for another request."""
        request = requests.Fingerprint.of(
            pipeline=pipeline,
            version=version,
            params=json_format.MessageToDict(params),
            kind=trigger.kind,
        )

        async def create(session: AsyncSession, effects: Effects) -> tuple[bool, str]:
            replay = await requests.find_result(session, "TriggerRun", actor.request_id, request)
            if replay is not None:
                return False, str(replay["run_id"])
            run, plan = await self._create(
                session, pipeline, version, params, trigger, actor, effects
            )
            await requests.record_result(
                session,
                "TriggerRun",
                actor.request_id,
                {"run_id": run.id},
                run.create_time,
                request,
            )
            audit.record(
                session,
                now=run.create_time,
                actor=actor,
                action="TriggerRun",
                resource=f"runs/{run.id}",
                pipeline=plan.pipeline,
                details={
                    "pipeline": plan.pipeline,
                    "version": plan.version,
                    "trigger": trigger.kind,
                },
            )
            return True, run.id

        async def answer(session: AsyncSession, made: tuple[bool, str]) -> tuple[bool, RunView]:
            return made[0], await self._view(session, made[1])

        created, view = await requests.once(
            actor.request_id, lambda: self._uow.run_then(create, answer)
        )
        return view, created

    async def create_in(
        self,
        session: AsyncSession,
        pipeline: str,
        params: struct_pb2.Struct,
        trigger: TriggerSpec,
        actor: Actor,
        effects: Effects,
    ) -> RunRow:
        """Create a run of ``pipeline``'s latest version in the caller's transaction (a
        trigger step's child run, an event's or a database change's run); raises like
        ``trigger``."""
        run, _ = await self._create(session, pipeline, 0, params, trigger, actor, effects)
        return run

    async def in_transaction(self, work: Callable[[AsyncSession, Effects], Awaitable[T]]) -> T:
        """Run ``work`` in a write transaction; steps it makes ready are leased in it and
        pushed to agents once it commits, like a new run's first steps."""

        return await self._uow.run(work)

    async def _create(
        self,
        session: AsyncSession,
        pipeline: str,
        version: int,
        params: struct_pb2.Struct,
        trigger: TriggerSpec,
        actor: Actor,
        effects: Effects,
    ) -> tuple[RunRow, Plan]:
        row = await pipeline_queries.find_pipeline(session, pipeline, for_update=True)
        if row is None:
            raise pipeline_not_found(pipeline)
        if row.archived:
            raise FailedPrecondition(
                f"pipeline {pipeline!r} is archived; restore it to run it "
                f"(legato restore {pipeline})",
                reason="PIPELINE_ARCHIVED",
                metadata={"pipeline": pipeline},
            )
        plan = await self._plans.get(session, row.id, row.name, version or row.latest_version)
        run, steps = self.add_run(session, plan, params, trigger, actor)
        await self._start_or_queue(session, run, plan, effects, steps)
        return run, plan

    def add_run(
        self,
        session: AsyncSession,
        plan: Plan,
        params: struct_pb2.Struct,
        trigger: TriggerSpec,
        actor: Actor,
        backfill_id: str | None = None,
    ) -> tuple[RunRow, dict[str, Step]]:
        """A new run of ``plan`` and its steps, added to the session and neither started
        nor flushed (a transaction creating many runs inserts them together; a test run
        sets some steps up first, ``execution/test_runs.py``). Raises InvalidArgument for
        params the spec refuses, before adding anything."""
        run = self._new_run(plan, resolve_params(plan.spec, params), trigger, actor)
        run.backfill_id = backfill_id
        steps: dict[str, Step] = {s.name: s for s in self._new_steps(run.id, plan, reuse={})}
        session.add(run)
        session.add_all(steps.values())
        return run, steps

    async def cancel(self, run_id: str, reason: str, actor: Actor) -> RunView:
        async def stop(session: AsyncSession, effects: Effects) -> str:
            run = await self._transitions.lock_run(session, run_id)
            if run.status not in RUN_TERMINAL:
                why = reason or f"cancelled by {actor.name}"
                await self._transitions.stop_run(session, run, "cancelled", why, effects)
                audit.record(
                    session,
                    now=self._clock(),
                    actor=actor,
                    action="CancelRun",
                    resource=f"runs/{run_id}",
                    pipeline=run.pipeline,
                    details={"reason": why},
                )
            return run_id

        return await self._uow.run_then(stop, self._view)

    async def rerun(
        self, run_id: str, *, all_steps: bool, latest_version: bool, actor: Actor
    ) -> RunView:
        """A new run from a finished one: by default only its steps that did not succeed
        run again; the others keep their outputs."""
        request = requests.Fingerprint.of(
            run=run_id, all_steps=all_steps, latest_version=latest_version
        )

        async def create(session: AsyncSession, effects: Effects) -> str:
            return await self._rerun(
                session, run_id, all_steps, latest_version, actor, request, effects
            )

        return await requests.once(actor.request_id, lambda: self._uow.run_then(create, self._view))

    async def _rerun(
        self,
        session: AsyncSession,
        run_id: str,
        all_steps: bool,
        latest_version: bool,
        actor: Actor,
        request: requests.Fingerprint,
        effects: Effects,
    ) -> str:
        """The new run's id (the first one's, when the request id replays)."""
        replay = await requests.find_result(session, "RerunRun", actor.request_id, request)
        if replay is not None:
            return str(replay["run_id"])
        source = await session.get(RunRow, run_id)
        if source is None:
            raise NotFound(f"run {quote(run_id)} does not exist", reason="RUN_NOT_FOUND")
        if source.status not in RUN_TERMINAL:
            raise FailedPrecondition(
                f"run {run_id} is still {source.status}; cancel it first or wait for it to end",
                reason="RUN_ACTIVE",
            )
        if source.trigger_kind == TEST_TRIGGER:
            raise FailedPrecondition(
                f"run {run_id} is a test run (RunService.TestStep); test the step again "
                "instead (step.run(on=...) in legato.notebook)",
                reason="TEST_RUN",
            )
        pipeline = await pipeline_queries.find_pipeline(session, source.pipeline, for_update=True)
        assert pipeline is not None
        if pipeline.archived:
            raise FailedPrecondition(
                f"pipeline {source.pipeline!r} is archived; restore it to rerun its runs",
                reason="PIPELINE_ARCHIVED",
            )
        version = pipeline.latest_version if latest_version else source.version
        plan = await self._plans.get(session, pipeline.id, pipeline.name, version)
        old_plan = await self._plans.get(session, pipeline.id, pipeline.name, source.version)
        reuse: dict[str, StepState] = {}
        if not all_steps:
            old_steps = await step_store.all_of(session, run_id)
            reuse = {
                name: row
                for name, row in old_steps.items()
                if row.status == "succeeded"
                and name in plan.steps
                and plan.steps[name] == old_plan.steps.get(name)
            }
        trigger = TriggerSpec(
            kind="rerun", logical_time=source.logical_time, details={"rerun_of": run_id}
        )
        run = self._new_run(plan, dict(source.params or {}), trigger, actor)
        session.add(run)
        for step in self._new_steps(run.id, plan, reuse=reuse, source_run=run_id):
            session.add(step)
        await session.flush()
        await self._start_or_queue(session, run, plan, effects)
        await requests.record_result(
            session, "RerunRun", actor.request_id, {"run_id": run.id}, run.create_time, request
        )
        audit.record(
            session,
            now=run.create_time,
            actor=actor,
            action="RerunRun",
            resource=f"runs/{run.id}",
            pipeline=run.pipeline,
            details={"rerun_of": run_id, "reused_steps": sorted(reuse), "version": version},
        )
        return run.id

    # -- reads --------------------------------------------------------------------------

    async def get(self, run_id: str, *, steps: Collection[str] | None = None) -> RunView:
        """The run with its steps and their attempts; with ``steps``, only those steps
        (a watcher reading what changed)."""
        async with self._db.read() as session:
            return await self._view(session, run_id, steps=steps)

    async def list_runs(
        self,
        *,
        pipeline: str,
        statuses: Sequence[str],
        triggers: Sequence[str],
        since: datetime | None,
        page_size: int,
        page_token: str,
        backfill_id: str = "",
        include_tests: bool = False,
    ) -> Page[RunRow]:
        """Newest first; test runs (RunService.TestStep) only with ``include_tests`` or
        when ``triggers`` names ``test``."""
        page = PageRequest.parse(
            page_size,
            page_token,
            backfill_id=backfill_id,
            include_tests=include_tests,
            pipeline=pipeline,
            statuses=sorted(statuses),
            triggers=sorted(triggers),
            since=since.isoformat() if since else "",
        )
        stmt = (
            select(RunRow)
            .order_by(RunRow.create_time.desc(), RunRow.id.desc())
            .limit(page.size + 1)
        )
        if pipeline:
            stmt = stmt.where(RunRow.pipeline == pipeline)
        if statuses:
            stmt = stmt.where(RunRow.status.in_(list(statuses)))
        if triggers:
            kinds = [*triggers, TEST_TRIGGER] if include_tests else list(triggers)
            stmt = stmt.where(RunRow.trigger_kind.in_(kinds))
        elif not include_tests:
            stmt = stmt.where(RunRow.trigger_kind != TEST_TRIGGER)
        if since is not None:
            stmt = stmt.where(RunRow.create_time >= since)
        if backfill_id:
            stmt = stmt.where(RunRow.backfill_id == backfill_id)
        if page.after is not None:
            after_time, after_id = datetime.fromisoformat(page.after[0]), page.after[1]
            stmt = stmt.where(
                (RunRow.create_time < after_time)
                | ((RunRow.create_time == after_time) & (RunRow.id < after_id))
            )
        async with self._db.read() as session:
            rows = list((await session.execute(stmt)).scalars())
        return page.page(rows, key=lambda r: [r.create_time.isoformat(), r.id])

    async def logs(
        self, run_id: str, *, step: str, attempt: int, page_size: int, page_token: str
    ) -> Page[LogLineRow]:
        page = PageRequest.parse(
            page_size or 500,
            page_token,
            max_size=MAX_LOG_PAGE,
            run=run_id,
            step=step,
            attempt=attempt,
        )
        async with self._db.read() as session:
            if await session.get(RunRow, run_id) is None:
                raise NotFound(f"run {quote(run_id)} does not exist", reason="RUN_NOT_FOUND")
            rows = await self.log_lines(
                session,
                run_id,
                after=page.after or 0,
                limit=page.size + 1,
                step=step,
                attempt=attempt,
            )
        return page.page(rows, key=lambda r: r.id)

    async def log_lines(
        self,
        session: AsyncSession,
        run_id: str,
        *,
        after: int,
        limit: int,
        step: str = "",
        attempt: int = 0,
    ) -> list[LogLineRow]:
        stmt = (
            select(LogLineRow)
            .where(LogLineRow.run_id == run_id, LogLineRow.id > after)
            .order_by(LogLineRow.id)
            .limit(limit)
        )
        if step:
            stmt = stmt.where(LogLineRow.step == step)
            if attempt:
                stmt = stmt.where(LogLineRow.attempt == attempt)
        elif attempt:
            raise InvalidArgument("attempt needs step: name the step whose attempt you want")
        return list((await session.execute(stmt)).scalars())

    # -- internals ----------------------------------------------------------------------

    def _new_run(
        self, plan: Plan, params: dict[str, Any], trigger: TriggerSpec, actor: Actor
    ) -> RunRow:
        now = self._clock()
        return RunRow(
            id=new_run_id(),
            pipeline_id=plan.pipeline_id,
            pipeline=plan.pipeline,
            version=plan.version,
            status="queued",
            trigger_kind=trigger.kind,
            logical_time=trigger.logical_time,
            trigger={**(trigger.details or {}), "actor": actor.name},
            params=params,
            request_id=actor.request_id or None,
            create_time=now,
            error="",
            waiting_reason="",
            trace_id=new_trace_id(),
            span_id=new_span_id(),
        )

    def _new_steps(
        self, run_id: str, plan: Plan, *, reuse: dict[str, StepState], source_run: str = ""
    ) -> list[StepRunRow]:
        rows = []
        for name in plan.dag.order:
            step = plan.steps[name]
            old = reuse.get(name)
            rows.append(
                StepRunRow(
                    run_id=run_id,
                    name=name,
                    position=plan.dag.position(name),
                    kind=step.WhichOneof("kind") or "",
                    status="succeeded" if old else "pending",
                    attempt=0,
                    selector=required_labels(step),
                    agent=old.agent if old else "",
                    records_in=old.records_in if old else None,
                    records_out=old.records_out if old else None,
                    output=dict(old.output or {}) if old else {},
                    error="",
                    failure_kind="",
                    start_time=old.start_time if old else None,
                    end_time=old.end_time if old else None,
                    waiting_reason=f"reused from run {source_run}" if old else "",
                )
            )
        return rows

    async def _start_or_queue(
        self,
        session: AsyncSession,
        run: RunRow,
        plan: Plan,
        effects: Effects,
        steps: dict[str, Step] | None = None,
    ) -> None:
        limit = plan.spec.limits.max_concurrent_runs
        if not limit:  # no limit: nothing to count
            await self._transitions.start_run(session, run, plan, effects, steps=steps)
            return
        active = await self._transitions.active_runs(session, plan.pipeline_id, limit=limit)
        if len(active) >= limit:
            shown = ", ".join(active[:5]) + (" ..." if len(active) > 5 else "")
            why = f"waiting: limits.max_concurrent_runs ({limit}) reached; active runs: {shown}"
            self._queue(session, run, why, effects)
            return
        await self._transitions.start_run(session, run, plan, effects, steps=steps)

    def _queue(self, session: AsyncSession, run: RunRow, why: str, effects: Effects) -> None:
        run.waiting_reason = why
        self._transitions.log(session, run.id, f"Run queued: {why}", run.create_time)
        effects.changed(run.id)

    async def create_scheduled(
        self,
        session: AsyncSession,
        plan: Plan,
        params: struct_pb2.Struct,
        trigger: TriggerSpec,
        actor: Actor,
        effects: Effects,
        *,
        queue_reason: str | None,
        backfill_id: str | None = None,
    ) -> RunRow:
        """A run of ``plan`` for a fire time, in the caller's transaction: started, or
        queued with ``queue_reason`` (the scheduler has applied the overlap policy)."""
        run, steps = self.add_run(session, plan, params, trigger, actor, backfill_id)
        if queue_reason is None:
            await self._transitions.start_run(session, run, plan, effects, steps=steps)
        else:
            self._queue(session, run, queue_reason, effects)
        return run

    async def record_skipped(
        self,
        session: AsyncSession,
        plan: Plan,
        params: struct_pb2.Struct,
        trigger: TriggerSpec,
        actor: Actor,
        reason: str,
        effects: Effects,
    ) -> RunRow:
        """A fire time the overlap policy skipped, kept in the history as a skipped run."""
        run = self._new_run(plan, resolve_params(plan.spec, params), trigger, actor)
        run.status = "skipped"
        run.end_time = run.create_time
        run.error = reason
        session.add(run)
        await session.flush()
        text = runlog.pipeline_finished("skipped", reason, None)
        self._transitions.log(session, run.id, text, run.create_time)
        effects.changed(run.id)
        return run

    async def _view(
        self, session: AsyncSession, run_id: str, *, steps: Collection[str] | None = None
    ) -> RunView:
        run = await session.get(RunRow, run_id, populate_existing=True)
        if run is None:
            raise NotFound(
                f"run {quote(run_id)} does not exist; `legato runs` lists recent runs",
                reason="RUN_NOT_FOUND",
                metadata={"run_id": run_id},
            )
        attempts: dict[int, list[AttemptRow]] = {}
        if steps is None:
            rows = list((await step_store.all_of(session, run_id)).values())
            query = select(AttemptRow).where(AttemptRow.run_id == run_id)
        elif not steps:
            return RunView(run=run, steps=[], attempts=attempts)
        else:
            named = await step_store.named(session, run_id, set(steps))
            rows = sorted(named.values(), key=lambda row: row.position)
            query = select(AttemptRow).where(AttemptRow.step_run_id.in_([row.id for row in rows]))
        rows_attempts = await session.execute(query.order_by(AttemptRow.number))
        for attempt in rows_attempts.scalars():
            attempts.setdefault(attempt.step_run_id, []).append(attempt)
        return RunView(run=run, steps=rows, attempts=attempts)
