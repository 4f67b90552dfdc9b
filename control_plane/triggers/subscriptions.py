"""Which pipelines listen for which event types: the ``event_subscriptions`` table, kept in
step with each pipeline's latest version by a registry watcher (in the transaction that
changes the pipeline, so every replica sees the same subscribers), and read by type when
an event is published instead of scanning every spec."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.store.models import EventSubscriptionRow, PipelineRow
from legato.v1 import spec_pb2

__all__ = ["MAX_TYPE_LENGTH", "EventSubscriptions", "Subscriber", "event_types", "subscribers"]

# The width of the type columns; EventService refuses longer types, so a trigger with one
# could never fire and subscribes to nothing.
MAX_TYPE_LENGTH = 200


@dataclass(frozen=True)
class Subscriber:
    pipeline_id: int
    pipeline: str
    version: int


def event_types(spec: spec_pb2.PipelineSpec) -> list[str]:
    """The event types ``spec`` has triggers for, sorted, each once."""
    found = {t.event.type for t in spec.triggers if t.WhichOneof("kind") == "event"}
    return sorted(t for t in found if t and len(t) <= MAX_TYPE_LENGTH)


class EventSubscriptions:
    """A ``registry.PipelineWatcher``: rewrites a pipeline's subscriptions when it gets a new
    latest version, drops them when it is archived and restores them with it."""

    async def pipeline_changed(
        self,
        session: AsyncSession,
        pipeline: PipelineRow,
        spec: spec_pb2.PipelineSpec,
        now: datetime,
    ) -> None:
        await session.execute(
            delete(EventSubscriptionRow).where(EventSubscriptionRow.pipeline_id == pipeline.id)
        )
        if not pipeline.archived:
            session.add_all(
                EventSubscriptionRow(pipeline_id=pipeline.id, type=event_type)
                for event_type in event_types(spec)
            )
        await session.flush()

    async def committed(self) -> None:
        return None


async def subscribers(session: AsyncSession, event_type: str) -> list[Subscriber]:
    """The non-archived pipelines subscribed to ``event_type``, with their latest version,
    in id order (the order their rows are locked in when runs start)."""
    stmt = (
        select(PipelineRow.id, PipelineRow.name, PipelineRow.latest_version)
        .join(EventSubscriptionRow, EventSubscriptionRow.pipeline_id == PipelineRow.id)
        .where(EventSubscriptionRow.type == event_type, PipelineRow.archived.is_(False))
        .order_by(PipelineRow.id)
    )
    rows = (await session.execute(stmt)).all()
    return [Subscriber(pipeline_id, name, version) for pipeline_id, name, version in rows]
