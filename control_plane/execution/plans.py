"""Pipeline versions as the execution plane needs them: the spec and its compiled DAG
(``RunPlan``), loaded once per version and kept, since versions never change."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import select

from control_plane.errors import NotFound
from control_plane.execution.resolver import RunPlan
from control_plane.pipelines import versioning
from control_plane.store import pipelines as pipeline_queries
from control_plane.store.models import PipelineVersionRow
from legato.spec.units import parse_memory
from legato.v1 import spec_pb2

if TYPE_CHECKING:
    # Annotations only: legato.notebook reads limits from a Plan without SQLAlchemy's
    # asyncio extension (and its greenlet) installed.
    from sqlalchemy.ext.asyncio import AsyncSession

__all__ = ["Plan", "PlanCache"]


@dataclass(frozen=True)
class Plan:
    pipeline_id: int
    pipeline: str
    version: int
    spec: spec_pb2.PipelineSpec
    dag: RunPlan
    steps: dict[str, spec_pb2.Step]

    def kind(self, step: str) -> str:
        return self.steps[step].WhichOneof("kind") or ""

    def timeout(self, step: str) -> float | None:
        spec_step = self.steps[step]
        if spec_step.HasField("timeout"):
            return spec_step.timeout.ToTimedelta().total_seconds()
        if self.spec.limits.HasField("step_timeout"):
            return self.spec.limits.step_timeout.ToTimedelta().total_seconds()
        return None

    def memory_bytes(self, step: str) -> int | None:
        text = self.steps[step].memory or self.spec.limits.step_memory
        return parse_memory(text) if text else None

    @property
    def max_duration(self) -> float | None:
        if self.spec.limits.HasField("max_duration"):
            return self.spec.limits.max_duration.ToTimedelta().total_seconds()
        return None


class PlanCache:
    """Plans by (pipeline id, version), least recently used evicted beyond ``size``."""

    def __init__(self, size: int = 4096) -> None:
        self._plans: OrderedDict[tuple[int, int], Plan] = OrderedDict()
        self._size = size

    async def get(
        self, session: AsyncSession, pipeline_id: int, pipeline: str, version: int
    ) -> Plan:
        key = (pipeline_id, version)
        plan = self._plans.get(key)
        if plan is not None:
            self._plans.move_to_end(key)
            return plan
        row = await pipeline_queries.find_version(session, pipeline_id, version)
        if row is None:
            raise NotFound(
                f"pipeline {pipeline!r} has no version {version}", reason="VERSION_NOT_FOUND"
            )
        return self._add(pipeline_id, pipeline, version, row.spec)

    async def load(self, session: AsyncSession, wanted: list[tuple[int, str, int]]) -> None:
        """Load the plans of (pipeline id, name, version) that are not cached, in one query
        (the scheduler's batches)."""
        missing = {
            (pid, number): name for pid, name, number in wanted if (pid, number) not in self._plans
        }
        if not missing:
            return
        rows = await session.execute(
            select(
                PipelineVersionRow.pipeline_id, PipelineVersionRow.number, PipelineVersionRow.spec
            )
            .where(PipelineVersionRow.pipeline_id.in_({pid for pid, _ in missing}))
            .where(PipelineVersionRow.number.in_({number for _, number in missing}))
        )
        for pipeline_id, number, spec_json in rows.all():
            name = missing.get((pipeline_id, number))
            if name is not None:
                self._add(pipeline_id, name, number, spec_json)

    def _add(self, pipeline_id: int, pipeline: str, version: int, spec_json: str) -> Plan:
        spec = versioning.spec_from_json(spec_json)
        key = (pipeline_id, version)
        plan = Plan(
            pipeline_id=pipeline_id,
            pipeline=pipeline,
            version=version,
            spec=spec,
            dag=RunPlan(spec),
            steps={s.name: s for s in spec.steps},
        )
        self._plans[key] = plan
        if len(self._plans) > self._size:
            self._plans.popitem(last=False)
        return plan
