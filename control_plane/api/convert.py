"""Domain objects → legato.v1 messages."""

from __future__ import annotations

from datetime import datetime

from google.protobuf import timestamp_pb2

from control_plane.registry import PipelineInfo, VersionInfo
from control_plane.versioning import SpecDiff
from legato.v1 import pipeline_pb2

__all__ = ["pipeline_diff", "pipeline_message", "timestamp", "version_message"]


def timestamp(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    message = timestamp_pb2.Timestamp()
    message.FromDatetime(value)
    return message


def pipeline_message(info: PipelineInfo) -> pipeline_pb2.Pipeline:
    return pipeline_pb2.Pipeline(
        name=info.name,
        description=info.description,
        latest_version=info.latest_version,
        archived=info.archived,
        create_time=timestamp(info.create_time),
        update_time=timestamp(info.update_time),
        archive_time=timestamp(info.archive_time),
        spec=info.spec,
    )


def version_message(info: VersionInfo) -> pipeline_pb2.PipelineVersion:
    return pipeline_pb2.PipelineVersion(
        pipeline=info.pipeline,
        number=info.number,
        spec=info.spec,
        content_hash=info.content_hash,
        author=info.author,
        message=info.message,
        create_time=timestamp(info.create_time),
        rollback_of=info.rollback_of or 0,
    )


def pipeline_diff(
    name: str, from_version: int, to_version: int, diff: SpecDiff
) -> pipeline_pb2.PipelineDiff:
    return pipeline_pb2.PipelineDiff(
        pipeline=name,
        from_version=from_version,
        to_version=to_version,
        identical=diff.identical,
        fields_changed=diff.fields_changed,
        steps_added=diff.steps_added,
        steps_removed=diff.steps_removed,
        steps_changed=[
            pipeline_pb2.StepChange(step=c.step, fields=c.fields) for c in diff.steps_changed
        ],
        unified_diff=diff.unified_diff,
    )
