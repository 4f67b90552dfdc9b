"""legato.v1.LineageService: the lineage graph around a dataset or a pipeline."""

from __future__ import annotations

from typing import Any

import grpc

from control_plane.api.lineage_convert import lineage_response
from control_plane.lineage.graph import Lineage
from legato.v1 import lineage_service_pb2 as pb
from legato.v1 import lineage_service_pb2_grpc

__all__ = ["LineageServicer"]

Context = grpc.aio.ServicerContext[Any, Any]


class LineageServicer(lineage_service_pb2_grpc.LineageServiceServicer):
    def __init__(self, lineage: Lineage) -> None:
        self._lineage = lineage

    async def GetLineage(
        self, request: pb.GetLineageRequest, context: Context
    ) -> pb.GetLineageResponse:
        direction = request.direction
        graph = await self._lineage.around(
            dataset=request.dataset,
            pipeline=request.pipeline,
            upstream=direction != pb.LINEAGE_DIRECTION_DOWNSTREAM,
            downstream=direction != pb.LINEAGE_DIRECTION_UPSTREAM,
            depth=request.depth,
        )
        return lineage_response(graph)
