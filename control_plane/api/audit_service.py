"""legato.v1.AuditService: the activity log."""

from __future__ import annotations

from datetime import UTC
from typing import Any

import grpc

from control_plane.access.audit_log import AuditFilter, AuditLog
from control_plane.api.access_convert import audit_message
from control_plane.api.bounded import bounded_items
from legato.v1 import audit_service_pb2 as pb
from legato.v1 import audit_service_pb2_grpc

__all__ = ["AuditServicer"]

Context = grpc.aio.ServicerContext[Any, Any]


class AuditServicer(audit_service_pb2_grpc.AuditServiceServicer):
    def __init__(self, audit: AuditLog) -> None:
        self._audit = audit

    async def ListAuditEvents(
        self, request: pb.ListAuditEventsRequest, context: Context
    ) -> pb.ListAuditEventsResponse:
        where = AuditFilter(
            pipeline=request.pipeline,
            actor=request.actor,
            action=request.action,
            start_time=request.start_time.ToDatetime(tzinfo=UTC)
            if request.HasField("start_time")
            else None,
            end_time=request.end_time.ToDatetime(tzinfo=UTC)
            if request.HasField("end_time")
            else None,
        )
        page = await self._audit.list(
            where, page_size=request.page_size, page_token=request.page_token
        )
        events, next_token = bounded_items(page, audit_message)
        return pb.ListAuditEventsResponse(events=events, next_page_token=next_token)
