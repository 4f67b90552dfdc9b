"""The request message of each SDK call, built in one place for :class:`legato.Client`
and :class:`legato.AsyncClient`, so that both send the same thing for the same
arguments. Mutations get a ``request_id`` (generated when not given) so a call retried
after a lost response takes effect once."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any

from google.protobuf import struct_pb2

from legato.statuses import ProtoEnum, RunStatus, TriggerKind
from legato.v1 import access_pb2, run_pb2, spec_pb2
from legato.v1 import access_service_pb2 as access
from legato.v1 import agent_service_pb2 as agents
from legato.v1 import audit_service_pb2 as audits
from legato.v1 import event_service_pb2 as events
from legato.v1 import lineage_service_pb2 as lineages
from legato.v1 import pipeline_service_pb2 as pipelines
from legato.v1 import run_service_pb2 as runs

__all__ = ["json_value", "number", "request_id", "struct", "utc"]


def utc(moment: datetime) -> datetime:
    """``moment`` in UTC; a naive datetime is taken as local time."""
    return moment.astimezone(UTC)


def number(value: ProtoEnum | int) -> int:
    """The proto number of an enum member of :mod:`legato.statuses` or of a number."""
    return value.proto if isinstance(value, ProtoEnum) else int(value)


def request_id(given: str | None = None) -> str:
    return given or uuid.uuid4().hex


def struct(values: Mapping[str, Any], path: str) -> struct_pb2.Struct:
    result = struct_pb2.Struct()
    result.update(json_value(values, path))
    return result


def json_value(value: Any, path: str) -> Any:
    """``value`` as the JSON value a Struct holds; dates become ISO strings."""
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, date):  # datetime too
        return value.isoformat()
    if isinstance(value, Mapping):
        result: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{path}: the key {key!r} is not a string; JSON keys are strings")
            result[key] = json_value(item, f"{path}.{key}")
        return result
    if isinstance(value, list | tuple):
        return [json_value(item, f"{path}[{i}]") for i, item in enumerate(value)]
    raise TypeError(
        f"{path}: {type(value).__name__} is not a JSON value; use str, int, float, bool, "
        "None, a date, or lists and dicts of them"
    )


# -- pipelines ----------------------------------------------------------------------------


def apply_pipeline(
    spec: spec_pb2.PipelineSpec, message: str, given_id: str | None
) -> pipelines.ApplyPipelineRequest:
    return pipelines.ApplyPipelineRequest(
        spec=spec, message=message, request_id=request_id(given_id)
    )


def list_pipelines(
    token: str, *, show_archived: bool, name_prefix: str, page_size: int
) -> pipelines.ListPipelinesRequest:
    return pipelines.ListPipelinesRequest(
        page_size=page_size, page_token=token, show_archived=show_archived, name_prefix=name_prefix
    )


def rollback_pipeline(
    pipeline: str, version: int, message: str, given_id: str | None
) -> pipelines.RollbackPipelineRequest:
    return pipelines.RollbackPipelineRequest(
        pipeline=pipeline, version=version, message=message, request_id=request_id(given_id)
    )


def preview_schedule(
    pipeline: str, count: int, start: datetime | None
) -> pipelines.PreviewScheduleRequest:
    request = pipelines.PreviewScheduleRequest(pipeline=pipeline, count=count)
    if start is not None:
        request.start_time.FromDatetime(utc(start))
    return request


def test_notifications(
    pipeline: str,
    spec: spec_pb2.PipelineSpec | None,
    positions: Sequence[int],
    given_id: str | None,
) -> pipelines.TestNotificationsRequest:
    if bool(pipeline) == (spec is not None):
        raise ValueError("give exactly one of pipeline and spec")
    request = pipelines.TestNotificationsRequest(
        positions=list(positions), request_id=request_id(given_id)
    )
    if spec is not None:
        request.spec.CopyFrom(spec)
    else:
        request.pipeline = pipeline
    return request


# -- runs and backfills -------------------------------------------------------------------


def create_backfill(
    pipeline: str,
    start: datetime,
    end: datetime,
    *,
    dry_run: bool,
    only_missing: bool,
    given_id: str | None,
) -> runs.CreateBackfillRequest:
    request = runs.CreateBackfillRequest(
        pipeline=pipeline,
        dry_run=dry_run,
        only_missing=only_missing,
        request_id=request_id(given_id),
    )
    request.start_time.FromDatetime(utc(start))
    request.end_time.FromDatetime(utc(end))
    return request


def trigger_run(
    pipeline: str,
    *,
    params: Mapping[str, Any] | None,
    version: int,
    given_id: str | None,
    kind: TriggerKind | run_pb2.TriggerKind.ValueType,
) -> runs.TriggerRunRequest:
    request = runs.TriggerRunRequest(
        pipeline=pipeline,
        version=version,
        request_id=request_id(given_id),
        kind=number(kind),  # type: ignore[arg-type]
    )
    if params:
        request.params.CopyFrom(struct(params, "params"))
    return request


def list_runs(
    *,
    pipeline: str,
    statuses: Sequence[RunStatus | run_pb2.RunStatus.ValueType],
    triggers: Sequence[TriggerKind | run_pb2.TriggerKind.ValueType],
    since: datetime | None,
    page_size: int,
    backfill_id: str,
    include_tests: bool = False,
) -> runs.ListRunsRequest:
    request = runs.ListRunsRequest(
        pipeline=pipeline,
        statuses=[number(status) for status in statuses],  # type: ignore[misc]
        triggers=[number(trigger) for trigger in triggers],  # type: ignore[misc]
        page_size=page_size,
        backfill_id=backfill_id,
        include_tests=include_tests,
    )
    if since is not None:
        if since.tzinfo is None:
            raise ValueError("since must be timezone-aware, e.g. datetime.now(UTC)")
        request.since.FromDatetime(since)
    return request


def test_step(
    spec: spec_pb2.PipelineSpec,
    step: str,
    *,
    agent: str,
    params: Mapping[str, Any] | None,
    inputs: Mapping[str, Any] | None,
    given_id: str | None,
) -> runs.TestStepRequest:
    """``inputs``: upstream step name → its table as Arrow IPC stream bytes, its values
    (a dict), or both as a ``(bytes, dict)`` pair."""
    request = runs.TestStepRequest(step=step, agent=agent, request_id=request_id(given_id))
    request.spec.CopyFrom(spec)
    if params:
        request.params.CopyFrom(struct(params, "params"))
    for name, given in (inputs or {}).items():
        item = request.inputs.add(step=name)
        table, values = given if isinstance(given, tuple) else (given, None)
        if isinstance(table, dict):
            table, values = None, table
        if table is not None:
            if not isinstance(table, bytes | bytearray | memoryview):
                raise TypeError(
                    f"inputs[{name!r}] is a {type(table).__name__}; give the table as Arrow "
                    "IPC stream bytes, the values as a dict, or both as (bytes, dict)"
                )
            item.table = bytes(table)
        if values:
            item.values.CopyFrom(struct(values, f"inputs[{name!r}]"))
    return request


def rerun_run(
    run_id: str, *, all_steps: bool, latest_version: bool, given_id: str | None
) -> runs.RerunRunRequest:
    return runs.RerunRunRequest(
        id=run_id,
        all_steps=all_steps,
        latest_version=latest_version,
        request_id=request_id(given_id),
    )


def get_run_logs(
    run_id: str, token: str, *, step: str, attempt: int, page_size: int
) -> runs.GetRunLogsRequest:
    return runs.GetRunLogsRequest(
        run_id=run_id, step=step, attempt=attempt, page_size=page_size, page_token=token
    )


# -- events -------------------------------------------------------------------------------


def publish_event(
    type: str, payload: Mapping[str, Any] | None, given_id: str | None, source: str
) -> events.PublishRequest:
    request = events.PublishRequest(type=type, request_id=request_id(given_id), source=source)
    if payload:
        request.payload.update(json_value(payload, "payload"))
    return request


# -- agents and access --------------------------------------------------------------------


def list_agents(token: str, *, show_disconnected: bool, page_size: int) -> agents.ListAgentsRequest:
    return agents.ListAgentsRequest(
        page_size=page_size, page_token=token, show_disconnected=show_disconnected
    )


def create_token(
    name: str,
    role: access_pb2.Role.ValueType,
    *,
    description: str,
    expire_time: datetime | None,
    given_id: str | None,
) -> access.CreateTokenRequest:
    request = access.CreateTokenRequest(
        name=name, role=role, description=description, request_id=request_id(given_id)
    )
    if expire_time is not None:
        request.expire_time.FromDatetime(utc(expire_time))
    return request


def create_agent_token(
    agent: str,
    *,
    labels: Mapping[str, str] | None,
    connections: Sequence[str],
    expire_time: datetime | None,
    given_id: str | None,
) -> access.CreateAgentTokenRequest:
    request = access.CreateAgentTokenRequest(
        agent=agent,
        labels=dict(labels or {}),
        connections=list(connections),
        request_id=request_id(given_id),
    )
    if expire_time is not None:
        request.expire_time.FromDatetime(utc(expire_time))
    return request


def list_agent_tokens(
    token: str, *, agent: str, show_revoked: bool, page_size: int
) -> access.ListAgentTokensRequest:
    return access.ListAgentTokensRequest(
        page_size=page_size, page_token=token, show_revoked=show_revoked, agent=agent
    )


def list_audit_events(
    *,
    pipeline: str,
    actor: str,
    action: str,
    since: datetime | None,
    until: datetime | None,
    page_size: int,
) -> audits.ListAuditEventsRequest:
    request = audits.ListAuditEventsRequest(
        pipeline=pipeline, actor=actor, action=action, page_size=page_size
    )
    if since is not None:
        request.start_time.FromDatetime(utc(since))
    if until is not None:
        request.end_time.FromDatetime(utc(until))
    return request


LINEAGE_DIRECTIONS = {
    "both": lineages.LINEAGE_DIRECTION_BOTH,
    "upstream": lineages.LINEAGE_DIRECTION_UPSTREAM,
    "downstream": lineages.LINEAGE_DIRECTION_DOWNSTREAM,
}


def get_lineage(
    *, dataset: str | None, pipeline: str | None, direction: str, depth: int
) -> lineages.GetLineageRequest:
    """The request for the graph around ``dataset`` (``namespace.name``) or ``pipeline``;
    ValueError when not exactly one is given, or for an unknown ``direction``."""
    if bool(dataset) == bool(pipeline):
        raise ValueError("give exactly one of dataset= (namespace.name) and pipeline=")
    if direction not in LINEAGE_DIRECTIONS:
        raise ValueError(
            f"direction {direction!r} is not one of {', '.join(sorted(LINEAGE_DIRECTIONS))}"
        )
    request = lineages.GetLineageRequest(
        direction=LINEAGE_DIRECTIONS[direction], depth=max(0, depth)
    )
    if dataset:
        request.dataset = dataset
    else:
        request.pipeline = str(pipeline)
    return request
