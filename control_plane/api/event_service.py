"""legato.v1.EventService."""

from __future__ import annotations

from typing import Any

import grpc

from control_plane.api.context import actor_from
from control_plane.triggers.events import Events
from legato.v1 import event_service_pb2 as pb
from legato.v1 import event_service_pb2_grpc

__all__ = ["EventServicer"]

Context = grpc.aio.ServicerContext[Any, Any]


class EventServicer(event_service_pb2_grpc.EventServiceServicer):
    def __init__(self, events: Events) -> None:
        self._events = events

    async def Publish(self, request: pb.PublishRequest, context: Context) -> pb.PublishResponse:
        result = await self._events.publish(
            request.type,
            request.payload,
            source=request.source,
            actor=actor_from(context, request.request_id),
        )
        return pb.PublishResponse(
            event_id=result.event_id, run_ids=result.run_ids, duplicate=result.duplicate
        )
