"""The transitions' hooks that record lineage, in the transaction that starts or ends a
run.

When a run ends, one read takes its steps' lineage (``step_runs.lineage``, written by the
``UPDATE`` that ended each step) and its trigger steps, and one multi-row upsert adds the
run's edges to ``lineage_edges``: two statements per run, none per step. Per run rather
than per finished step because a run has many steps and one end: a step's upsert would be
one more statement on the hot path for every step that read or wrote a dataset. A run
whose pipeline version has no step that can record lineage (no query, export or trigger
step, nothing declared) reads nothing.

With OpenLineage configured, the run's START event is an outbox row written when the run
starts, and its end event and each step's START and COMPLETE/FAIL events are rows written
when it ends (then every step is read, not only those with lineage). Test runs
(``TestStep``) record nothing and emit nothing."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from control_plane.lineage import openlineage_events as events
from control_plane.lineage.openlineage_client import OPENLINEAGE_CHANNEL, OpenLineageTarget
from control_plane.lineage.records import StepRecord, edges_of
from control_plane.statuses import TEST_TRIGGER
from control_plane.store import lineage as store
from control_plane.store import notifications as outbox
from control_plane.store import pending
from control_plane.store.models import RunRow
from legato.v1 import spec_pb2

__all__ = ["LineageRecorder", "records_lineage"]

_RECORDING = frozenset({"query", "export", "trigger"})
_NOMINAL = frozenset({"schedule", "backfill"})
"""Triggers whose runs have a logical time (OpenLineage's nominal time)."""


def records_lineage(spec: spec_pb2.PipelineSpec) -> bool:
    """Whether a run of ``spec`` can record lineage at all."""
    return any(
        step.WhichOneof("kind") in _RECORDING or step.inputs or step.outputs for step in spec.steps
    )


def _key(run_id: str, what: str) -> str:
    digest = hashlib.sha256(what.encode()).hexdigest()
    return f"{run_id}-ol-{digest[: 64 - len(run_id) - 4]}"


class LineageRecorder:
    def __init__(self, openlineage: OpenLineageTarget | None = None) -> None:
        self.openlineage = openlineage

    async def started(
        self, session: AsyncSession, run: RunRow, spec: spec_pb2.PipelineSpec, now: datetime
    ) -> None:
        """``RunStarted``: the pipeline run's START event."""
        if self.openlineage is None or run.trigger_kind == TEST_TRIGGER:
            return

        def build(sync: Session) -> list[dict[str, Any]]:
            # Made at the commit from the run as it is then (the scheduler restamps a run
            # it built ahead of its fire time, or drops it).
            if run not in sync:
                return []
            moment = run.start_time or now
            event = events.run_event(self._run_facts(run, spec), "START", moment)
            return [self._row(run, "run/START", event, moment)]

        outbox.add_later(session, build)

    async def finished(
        self, session: AsyncSession, run: RunRow, spec: spec_pb2.PipelineSpec, now: datetime
    ) -> str | None:
        """``RunFinished``: the run's edges, and its OpenLineage events."""
        if run.trigger_kind == TEST_TRIGGER:
            return None
        emitting = self.openlineage is not None
        if not emitting and not records_lineage(spec):
            return None
        steps = await store.run_steps(session, run.id, every=emitting)
        specs = {step.name: step for step in spec.steps}
        records = [
            StepRecord(
                name=step.name,
                kind=step.kind,
                status=step.status,
                lineage=step.lineage,
                child_pipeline=specs[step.name].trigger.pipeline
                if step.kind == "trigger" and step.name in specs
                else "",
            )
            for step in steps
        ]
        await store.upsert(session, run.pipeline, run.id, now, edges_of(run.pipeline, records))
        if emitting and run.start_time is not None:  # a run never started sent no START
            self._emit_end(session, run, spec, steps, specs, now)
        return None

    def _emit_end(
        self,
        session: AsyncSession,
        run: RunRow,
        spec: spec_pb2.PipelineSpec,
        steps: list[store.RunStep],
        specs: dict[str, spec_pb2.Step],
        now: datetime,
    ) -> None:
        facts = self._run_facts(run, spec)
        for step in steps:
            if step.start_time is None or step.attempt < 1:
                continue  # never ran (skipped, upstream failed, cancelled before it began)
            about = events.StepFacts(
                name=step.name,
                kind=step.kind,
                status=step.status,
                attempt=step.attempt,
                error=step.error,
                lineage=step.lineage,
                columns=list(step.output.get("columns") or []),
                spec=specs.get(step.name),
            )
            where = f"step/{step.name}/{step.attempt}"
            start = events.step_event(facts, about, "START", step.start_time)
            self._emit(session, run, f"{where}/START", start, now)
            end = events.step_event(facts, about, "", step.end_time or now)
            self._emit(session, run, f"{where}/END", end, now)
        end_event = events.run_event(facts, "", run.end_time or now)
        self._emit(session, run, "run/END", end_event, now)

    def _run_facts(self, run: RunRow, spec: spec_pb2.PipelineSpec) -> events.RunFacts:
        assert self.openlineage is not None
        return events.RunFacts(
            run_id=run.id,
            pipeline=run.pipeline,
            namespace=self.openlineage.namespace,
            status=str(run.status),
            error=run.error or "",
            description=spec.description,
            logical_time=run.logical_time if run.trigger_kind in _NOMINAL else None,
        )

    def _emit(
        self, session: AsyncSession, run: RunRow, what: str, event: dict[str, Any], now: datetime
    ) -> None:
        """An outbox row for ``event``, inserted when the transaction commits."""
        pending.add(session, outbox.TABLE, self._row(run, what, event, now))

    def _row(self, run: RunRow, what: str, event: dict[str, Any], now: datetime) -> dict[str, Any]:
        assert self.openlineage is not None
        return outbox.new_row(
            idempotency_key=_key(run.id, what),
            run_id=run.id,
            pipeline=run.pipeline,
            event=f"openlineage_{str(event.get('eventType', 'OTHER')).lower()}",
            channel=OPENLINEAGE_CHANNEL,
            target=self.openlineage.shown,
            settings={},
            facts=event,
            now=now,
        )
