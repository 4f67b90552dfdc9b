"""legato.v1.PipelineService."""

from __future__ import annotations

from datetime import UTC
from typing import Any

import grpc

from control_plane.api import convert
from control_plane.api.bounded import bounded_items
from control_plane.api.context import actor_from
from control_plane.api.stats_convert import stats_response
from control_plane.errors import InvalidArgument
from control_plane.execution.stats import PipelineStats
from control_plane.notifications.testing import NotificationTests
from control_plane.pipelines.registry import Registry
from control_plane.pipelines.source_check import check_source
from control_plane.scheduling.control import ScheduleControl
from legato.spec.render import dump_spec_yaml
from legato.v1 import pipeline_service_pb2 as pb
from legato.v1 import pipeline_service_pb2_grpc

__all__ = ["PipelineServicer"]

Context = grpc.aio.ServicerContext[Any, Any]


class PipelineServicer(pipeline_service_pb2_grpc.PipelineServiceServicer):
    def __init__(
        self,
        registry: Registry,
        schedules: ScheduleControl,
        tests: NotificationTests,
        stats: PipelineStats,
    ) -> None:
        self._registry = registry
        self._schedules = schedules
        self._tests = tests
        self._stats = stats

    async def GetPipelineStats(
        self, request: pb.GetPipelineStatsRequest, context: Context
    ) -> pb.GetPipelineStatsResponse:
        return stats_response(await self._stats.of(request.pipeline, request.runs))

    async def ValidatePipeline(
        self, request: pb.ValidatePipelineRequest, context: Context
    ) -> pb.ValidatePipelineResponse:
        if request.source:
            checked = check_source(request.source, self._registry.validate, request.filename)
            return pb.ValidatePipelineResponse(
                spec=checked.spec,
                content_hash=checked.content_hash,
                problems=[
                    pb.SourceProblem(line=p.line, field=p.field, message=p.message)
                    for p in checked.problems
                ],
            )
        valid = self._registry.validate(request.spec)
        return pb.ValidatePipelineResponse(spec=valid.spec, content_hash=valid.content_hash)

    async def ApplyPipeline(
        self, request: pb.ApplyPipelineRequest, context: Context
    ) -> pb.ApplyPipelineResponse:
        result = await self._registry.apply(
            request.spec, request.message, actor_from(context, request.request_id)
        )
        return pb.ApplyPipelineResponse(
            pipeline=convert.pipeline_message(result.pipeline),
            version=convert.version_message(result.version),
            created=result.created,
        )

    async def GetPipeline(
        self, request: pb.GetPipelineRequest, context: Context
    ) -> pb.GetPipelineResponse:
        info = await self._registry.get(request.name)
        return pb.GetPipelineResponse(pipeline=convert.pipeline_message(info))

    async def ListPipelines(
        self, request: pb.ListPipelinesRequest, context: Context
    ) -> pb.ListPipelinesResponse:
        page = await self._registry.list(
            page_size=request.page_size,
            page_token=request.page_token,
            show_archived=request.show_archived,
            name_prefix=request.name_prefix,
        )
        pipelines, next_token = bounded_items(page, convert.pipeline_message)
        return pb.ListPipelinesResponse(pipelines=pipelines, next_page_token=next_token)

    async def GetPipelineVersion(
        self, request: pb.GetPipelineVersionRequest, context: Context
    ) -> pb.GetPipelineVersionResponse:
        info = await self._registry.get_version(request.pipeline, request.version)
        return pb.GetPipelineVersionResponse(
            version=convert.version_message(info), yaml=dump_spec_yaml(info.spec)
        )

    async def ListPipelineVersions(
        self, request: pb.ListPipelineVersionsRequest, context: Context
    ) -> pb.ListPipelineVersionsResponse:
        page = await self._registry.list_versions(
            request.pipeline, page_size=request.page_size, page_token=request.page_token
        )
        versions, next_token = bounded_items(page, convert.version_message)
        return pb.ListPipelineVersionsResponse(versions=versions, next_page_token=next_token)

    async def DiffPipelineVersions(
        self, request: pb.DiffPipelineVersionsRequest, context: Context
    ) -> pb.DiffPipelineVersionsResponse:
        old, new, diff = await self._registry.diff(
            request.pipeline, request.from_version, request.to_version
        )
        return pb.DiffPipelineVersionsResponse(
            diff=convert.pipeline_diff(request.pipeline, old, new, diff)
        )

    async def RollbackPipeline(
        self, request: pb.RollbackPipelineRequest, context: Context
    ) -> pb.RollbackPipelineResponse:
        result = await self._registry.rollback(
            request.pipeline,
            request.version,
            request.message,
            actor_from(context, request.request_id),
        )
        return pb.RollbackPipelineResponse(
            pipeline=convert.pipeline_message(result.pipeline),
            version=convert.version_message(result.version),
            created=result.created,
        )

    async def ArchivePipeline(
        self, request: pb.ArchivePipelineRequest, context: Context
    ) -> pb.ArchivePipelineResponse:
        info = await self._registry.set_archived(
            request.name, True, actor_from(context, request.request_id)
        )
        return pb.ArchivePipelineResponse(pipeline=convert.pipeline_message(info))

    async def RestorePipeline(
        self, request: pb.RestorePipelineRequest, context: Context
    ) -> pb.RestorePipelineResponse:
        info = await self._registry.set_archived(
            request.name, False, actor_from(context, request.request_id)
        )
        return pb.RestorePipelineResponse(pipeline=convert.pipeline_message(info))

    async def PreviewSchedule(
        self, request: pb.PreviewScheduleRequest, context: Context
    ) -> pb.PreviewScheduleResponse:
        start = (
            request.start_time.ToDatetime(tzinfo=UTC) if request.HasField("start_time") else None
        )
        preview = await self._schedules.preview(request.pipeline, request.count, start)
        return pb.PreviewScheduleResponse(
            cron=preview.schedule.cron,
            timezone=preview.schedule.timezone or "UTC",
            fire_times=[convert.fire_time_message(f) for f in preview.fire_times],
            state=convert.schedule_state(preview.state),
            waiting_reason=preview.waiting_reason,
        )

    async def PauseSchedule(
        self, request: pb.PauseScheduleRequest, context: Context
    ) -> pb.PauseScheduleResponse:
        actor = actor_from(context, request.request_id)
        await self._schedules.pause(request.pipeline, request.reason, actor)
        info = await self._registry.get(request.pipeline)
        return pb.PauseScheduleResponse(pipeline=convert.pipeline_message(info))

    async def ResumeSchedule(
        self, request: pb.ResumeScheduleRequest, context: Context
    ) -> pb.ResumeScheduleResponse:
        actor = actor_from(context, request.request_id)
        await self._schedules.resume(request.pipeline, actor)
        info = await self._registry.get(request.pipeline)
        return pb.ResumeScheduleResponse(pipeline=convert.pipeline_message(info))

    async def TestNotifications(
        self, request: pb.TestNotificationsRequest, context: Context
    ) -> pb.TestNotificationsResponse:
        source = request.WhichOneof("source")
        if source == "spec":
            spec, version = self._registry.validate(request.spec).spec, 0
        elif source == "pipeline":
            info = await self._registry.get(request.pipeline)
            spec, version = info.spec, info.latest_version
        else:
            raise InvalidArgument(
                "name a pipeline (pipeline) or send a spec (spec) whose notifications to test"
            )
        trials = await self._tests.send(
            spec,
            version=version,
            positions=list(request.positions),
            actor=actor_from(context, request.request_id),
        )
        return pb.TestNotificationsResponse(
            pipeline=spec.name, results=[convert.notification_test_result(t) for t in trials]
        )
