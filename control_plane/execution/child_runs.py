"""``trigger`` steps: the control plane runs them itself, no agent involved.

When a trigger step is ready, one transaction evaluates its ``params`` (expressions over
the run's params and upstream results), checks the target pipeline and the chain of runs
that started one another, creates the child run (trigger ``pipeline``) and marks the step
running with the child's id in its values. Without ``wait`` the step succeeds there and
then; with ``wait`` it ends when the child run ends: succeeded when the child succeeded,
failed (with the child's error) otherwise. A step made ready and a finished child run wake
this loop, in this replica and (through PostgreSQL NOTIFY) in the others; a poll every
five seconds is the safety net for a lost wake-up.

Cycles: the run records the chain of pipelines above it (``trigger.chain``). A trigger
step whose target is already in the chain fails (``trigger cycle: a → b → a``), and so
does one that would make the chain longer than :data:`MAX_CHAIN` runs, so pipelines that
trigger each other can never start runs without end."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from typing import Any

import structlog
from google.protobuf import struct_pb2
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.access.actors import Actor
from control_plane.errors import LegatoError
from control_plane.execution import runlog
from control_plane.execution.bindings import (
    UnresolvedError,
    evaluate_all,
    expression_names,
    run_context,
    step_facts,
)
from control_plane.execution.effects import Effects
from control_plane.execution.observer import observe
from control_plane.execution.plans import Plan
from control_plane.execution.runs import Runs, TriggerSpec
from control_plane.execution.signals import Signals
from control_plane.execution.transitions import Transitions
from control_plane.statuses import RUN_TERMINAL, TRIGGER_KIND
from control_plane.store import steps as step_store
from control_plane.store.db import Database
from control_plane.store.models import RunRow, StepRunRow
from control_plane.store.steps import Step

__all__ = ["MAX_CHAIN", "ChildRuns"]

MAX_CHAIN = 10
log = structlog.get_logger("legato.child_runs")


class _StepFailedError(Exception):
    """The trigger step cannot start its run; the message says why."""


class ChildRuns:
    def __init__(
        self,
        db: Database,
        runs: Runs,
        transitions: Transitions,
        signals: Signals,
        *,
        clock: Callable[[], datetime],
        poll_seconds: float = 5.0,
    ) -> None:
        self._db = db
        self._runs = runs
        self._transitions = transitions
        self._signals = signals
        self._clock = clock
        self._poll = poll_seconds

    async def run_forever(self) -> None:
        wake = self._signals.pipeline_triggers
        while True:
            try:
                async with asyncio.timeout(self._poll):
                    await wake.wait()
            except TimeoutError:
                pass
            wake.clear()
            try:
                await self.pass_once()
            except Exception:
                log.exception("child_runs_failed")
                await asyncio.sleep(0.2)

    async def pass_once(self) -> int:
        """Start the ready trigger steps and settle the waiting ones whose child ended;
        returns how many steps moved."""
        async with self._db.read() as session:
            rows = (
                await session.execute(
                    select(
                        StepRunRow.run_id,
                        StepRunRow.name,
                        StepRunRow.status,
                        StepRunRow.child_run_id,
                    )
                    .join(RunRow, RunRow.id == StepRunRow.run_id)
                    .where(
                        StepRunRow.kind == TRIGGER_KIND,
                        StepRunRow.status.in_(("ready", "running")),
                        RunRow.status == "running",
                    )
                )
            ).all()
            waiting = {
                child: (run_id, name)
                for run_id, name, status, child in rows
                if status == "running" and child
            }
            ended: list[tuple[str, str]] = []
            if waiting:
                finished = await session.execute(
                    select(RunRow.id).where(
                        RunRow.id.in_(list(waiting)), RunRow.status.in_(tuple(RUN_TERMINAL))
                    )
                )
                ended = [waiting[child] for child in finished.scalars()]
        moved = 0
        for run_id, name, status, _ in rows:
            if status == "ready":
                moved += await self._start(run_id, name)
        for run_id, name in ended:
            moved += await self._settle(run_id, name)
        return moved

    # -- starting -----------------------------------------------------------------------

    async def _start(self, run_id: str, step_name: str) -> int:
        return await self._runs.in_transaction(
            lambda session, effects: self._start_in(session, effects, run_id, step_name)
        )

    async def _start_in(
        self, session: AsyncSession, effects: Effects, run_id: str, step_name: str
    ) -> int:
        found = await self._locked(session, run_id, step_name, "ready")
        if found is None:
            return 0  # another pass or replica got here first
        run, steps, step = found
        plan = await self._transitions.plan_of(session, run)
        spec = plan.steps[step_name].trigger
        now = self._clock()
        started = {"start_time": now, "attempt": 1}
        try:
            chain = _chain(run, spec.pipeline)
            params = _params(spec.params, steps, run)
            child = await self._runs.create_in(
                session,
                spec.pipeline,
                params,
                TriggerSpec(
                    kind="pipeline",
                    details={"parent_run_id": run.id, "parent_step": step_name, "chain": chain},
                ),
                Actor(name=f"run {run.id}", kind="system"),
                effects,
            )
        except (_StepFailedError, LegatoError) as exc:
            await self._fail(session, run, plan, step, str(exc), effects, **started)
            return 1
        position = plan.dag.position(step_name)
        text = runlog.child_run_started(position, step_name, child.id, child.pipeline, spec.wait)
        self._transitions.log(session, run.id, text, now, step=step_name, attempt=1)
        effects.runs.add(run.id)
        await step_store.write(
            session,
            step,
            **started,
            child_run_id=child.id,
            output={"values": {"run_id": child.id, "pipeline": child.pipeline}},
            status="running" if spec.wait else "succeeded",
            end_time=None if spec.wait else now,
        )
        if not spec.wait:
            observe(effects, self._transitions.observer.step_finished, "succeeded")
            await self._transitions.resolve(session, run, plan, [step_name], effects, steps=steps)
        return 1

    # -- settling -----------------------------------------------------------------------

    async def _settle(self, run_id: str, step_name: str) -> int:
        return await self._runs.in_transaction(
            lambda session, effects: self._settle_in(session, effects, run_id, step_name)
        )

    async def _settle_in(
        self, session: AsyncSession, effects: Effects, run_id: str, step_name: str
    ) -> int:
        found = await self._locked(session, run_id, step_name, "running")
        if found is None:
            return 0
        run, steps, step = found
        values = dict((step.output or {}).get("values") or {})
        child = await session.get(RunRow, step.child_run_id or "")
        if child is None or child.status not in RUN_TERMINAL:
            return 0
        plan = await self._transitions.plan_of(session, run)
        now = self._clock()
        output = {"values": {**values, "status": child.status}}
        effects.runs.add(run.id)
        if child.status != "succeeded":
            why = f"run {child.id} of {child.pipeline} {child.status.replace('_', ' ')}"
            await self._fail(
                session, run, plan, step, why + _error_of(child), effects, output=output
            )
            return 1
        await step_store.write(
            session, step, output=output, status="succeeded", end_time=now, error=""
        )
        observe(effects, self._transitions.observer.step_finished, "succeeded")
        position = plan.dag.position(step_name)
        text = runlog.child_run_finished(position, step_name, child.id, child.pipeline)
        self._transitions.log(session, run.id, text, now, step=step_name, attempt=1)
        await self._transitions.resolve(session, run, plan, [step_name], effects, steps=steps)
        return 1

    async def _locked(
        self, session: AsyncSession, run_id: str, step_name: str, status: str
    ) -> tuple[RunRow, dict[str, Step], Step] | None:
        """The run (locked), its steps and the step, when the run is running and the step
        still has ``status``; None when someone else has moved it on."""
        run = await self._transitions.lock_run(session, run_id)
        steps: dict[str, Step] = dict(await step_store.all_of(session, run_id))
        step = steps.get(step_name)
        if run.status != "running" or step is None or step.status != status:
            return None
        return run, steps, step

    async def _fail(
        self,
        session: AsyncSession,
        run: RunRow,
        plan: Plan,
        step: Step,
        error: str,
        effects: Effects,
        **values: Any,
    ) -> None:
        """Fail the step with ``error`` (and write ``values`` with it)."""
        now = self._clock()
        await step_store.write(
            session,
            step,
            **values,
            status="failed",
            failure_kind="error",
            error=error,
            end_time=now,
        )
        observe(effects, self._transitions.observer.step_finished, "failed")
        position = plan.dag.position(step.name)
        text = runlog.step_failed(position, step.name, 0, 0, error, None)
        self._transitions.log(session, run.id, text, now, step=step.name, attempt=1)
        effects.runs.add(run.id)
        await self._transitions.resolve(session, run, plan, [step.name], effects)


def _chain(run: RunRow, target: str) -> list[str]:
    """The pipelines from the first run of the chain to the child that would start."""
    above = [str(p) for p in (run.trigger or {}).get("chain") or [run.pipeline]]
    if target in above:
        path = " → ".join([*above[above.index(target) :], target])
        raise _StepFailedError(
            f"trigger cycle: {path}; a pipeline cannot start itself through trigger steps"
        )
    if len(above) >= MAX_CHAIN:
        raise _StepFailedError(
            f"trigger chain too long: {' → '.join([*above, target])} would be more than "
            f"{MAX_CHAIN} runs started one by another"
        )
    return [*above, target]


def _params(expressions: Any, steps: dict[str, Step], run: RunRow) -> struct_pb2.Struct:
    names = expression_names(step_facts(steps), run_context(run))
    try:
        values = evaluate_all(expressions, names, "param")
    except UnresolvedError as exc:
        raise _StepFailedError(str(exc)) from None
    struct = struct_pb2.Struct()
    struct.update(values)
    return struct


def _error_of(child: RunRow) -> str:
    return f": {child.error}" if child.error else ""
