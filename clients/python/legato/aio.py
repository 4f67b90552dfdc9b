"""The asynchronous SDK: :class:`AsyncClient` has the methods of :class:`legato.Client`,
by the same names and arguments, as coroutines over ``grpc.aio`` (the ``list_*`` methods
and ``watch_run`` are async iterators).

    import asyncio, legato

    async def main() -> None:
        async with legato.AsyncClient("localhost:7470") as client:
            await client.apply(pipeline)
            run = await client.run("etl", params={"since_days": 7})
            finished = await run.wait(timeout=600)
            totals = await (await run.output("totals")).to_pandas()
            async for line in run.logs(step="load"):
                print(line.step, line.text)

    asyncio.run(main())

It sends the same requests as the sync client (both build them in
:mod:`legato.messages`), retries the same way, and raises the same exceptions. Make it
inside the event loop that uses it."""

from __future__ import annotations

import asyncio
import hashlib
import io
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeVar

import grpc
import grpc.aio

from legato import client as sync
from legato import messages
from legato.aio_runs import AsyncRunHandle, AsyncStepOutput
from legato.connection import Connection, resolve
from legato.errors import from_grpc_error
from legato.statuses import RunStatus, TriggerKind
from legato.v1 import (
    access_pb2,
    access_service_pb2_grpc,
    agent_pb2,
    agent_service_pb2_grpc,
    audit_service_pb2_grpc,
    event_service_pb2_grpc,
    lineage_service_pb2_grpc,
    pipeline_pb2,
    pipeline_service_pb2_grpc,
    run_pb2,
    run_service_pb2_grpc,
    spec_pb2,
)
from legato.v1 import access_service_pb2 as access
from legato.v1 import agent_service_pb2 as agents
from legato.v1 import event_service_pb2 as events
from legato.v1 import lineage_service_pb2 as lineages
from legato.v1 import pipeline_service_pb2 as pipelines
from legato.v1 import run_service_pb2 as runs

if TYPE_CHECKING:
    from legato.pipeline import Pipeline
    from legato.spec import LoadedSpec

__all__ = ["AsyncClient", "AsyncRunHandle", "AsyncStepOutput"]

T = TypeVar("T")
R = TypeVar("R")


class AsyncClient:
    """A ``grpc.aio`` connection to a Legato control plane; the options are those of
    :class:`legato.Client`. ``async with`` closes it (or ``await client.close()``)."""

    def __init__(
        self,
        server: str | None = None,
        *,
        token: str | None = None,
        ca: str | None = None,
        cert: str | None = None,
        key: str | None = None,
        context: str | None = None,
        user: str | None = None,
        timeout: float = 30.0,
        connection: Connection | None = None,
    ) -> None:
        if connection is None:
            connection = resolve(
                server=server, token=token, ca=ca, cert=cert, key=key, context=context
            )
        self.connection = connection
        self.target = connection.server
        self._timeout = timeout
        self._metadata = sync.call_metadata(connection, user)
        credentials = connection.channel_credentials()
        if credentials is None:
            self._channel = grpc.aio.insecure_channel(self.target, options=sync.CHANNEL_OPTIONS)
        else:
            self._channel = grpc.aio.secure_channel(
                self.target, credentials, options=sync.CHANNEL_OPTIONS
            )
        self._pipelines = pipeline_service_pb2_grpc.PipelineServiceStub(self._channel)
        self._runs = run_service_pb2_grpc.RunServiceStub(self._channel)
        self._agents = agent_service_pb2_grpc.AgentServiceStub(self._channel)
        self._events = event_service_pb2_grpc.EventServiceStub(self._channel)
        self._access = access_service_pb2_grpc.AccessServiceStub(self._channel)
        self._audit = audit_service_pb2_grpc.AuditServiceStub(self._channel)
        self._lineage = lineage_service_pb2_grpc.LineageServiceStub(self._channel)

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- pipelines ----------------------------------------------------------------------

    async def validate_pipeline(
        self, spec: spec_pb2.PipelineSpec
    ) -> pipelines.ValidatePipelineResponse:
        return await self._call(
            self._pipelines.ValidatePipeline, pipelines.ValidatePipelineRequest(spec=spec)
        )

    async def apply_pipeline(
        self, spec: spec_pb2.PipelineSpec, *, message: str = "", request_id: str | None = None
    ) -> pipelines.ApplyPipelineResponse:
        request = messages.apply_pipeline(spec, message, request_id)
        return await self._call(self._pipelines.ApplyPipeline, request)

    async def apply(
        self,
        pipeline: Pipeline | spec_pb2.PipelineSpec | LoadedSpec,
        *,
        message: str = "",
        request_id: str | None = None,
    ) -> pipelines.ApplyPipelineResponse:
        """See :meth:`legato.Client.apply`."""
        spec = sync.spec_of(pipeline)
        return await self.apply_pipeline(spec, message=message, request_id=request_id)

    async def validate(
        self, pipeline: Pipeline | spec_pb2.PipelineSpec | LoadedSpec
    ) -> pipelines.ValidatePipelineResponse:
        return await self.validate_pipeline(sync.spec_of(pipeline))

    async def get_pipeline(self, name: str) -> pipeline_pb2.Pipeline:
        request = pipelines.GetPipelineRequest(name=name)
        return (await self._call(self._pipelines.GetPipeline, request)).pipeline

    def list_pipelines(
        self, *, show_archived: bool = False, name_prefix: str = "", page_size: int = 0
    ) -> AsyncIterator[pipeline_pb2.Pipeline]:
        async def fetch(token: str) -> tuple[list[pipeline_pb2.Pipeline], str]:
            request = messages.list_pipelines(
                token, show_archived=show_archived, name_prefix=name_prefix, page_size=page_size
            )
            response = await self._call(self._pipelines.ListPipelines, request)
            return list(response.pipelines), response.next_page_token

        return _paged(fetch)

    async def get_pipeline_version(
        self, pipeline: str, version: int = 0
    ) -> pipeline_pb2.PipelineVersion:
        request = pipelines.GetPipelineVersionRequest(pipeline=pipeline, version=version)
        return (await self._call(self._pipelines.GetPipelineVersion, request)).version

    def list_pipeline_versions(
        self, pipeline: str, *, page_size: int = 0
    ) -> AsyncIterator[pipeline_pb2.PipelineVersion]:
        async def fetch(token: str) -> tuple[list[pipeline_pb2.PipelineVersion], str]:
            request = pipelines.ListPipelineVersionsRequest(
                pipeline=pipeline, page_size=page_size, page_token=token
            )
            response = await self._call(self._pipelines.ListPipelineVersions, request)
            return list(response.versions), response.next_page_token

        return _paged(fetch)

    async def diff_pipeline_versions(
        self, pipeline: str, from_version: int, to_version: int = 0
    ) -> pipeline_pb2.PipelineDiff:
        request = pipelines.DiffPipelineVersionsRequest(
            pipeline=pipeline, from_version=from_version, to_version=to_version
        )
        return (await self._call(self._pipelines.DiffPipelineVersions, request)).diff

    async def rollback_pipeline(
        self, pipeline: str, version: int, *, message: str = "", request_id: str | None = None
    ) -> pipelines.RollbackPipelineResponse:
        request = messages.rollback_pipeline(pipeline, version, message, request_id)
        return await self._call(self._pipelines.RollbackPipeline, request)

    async def archive_pipeline(
        self, name: str, *, request_id: str | None = None
    ) -> pipeline_pb2.Pipeline:
        request = pipelines.ArchivePipelineRequest(
            name=name, request_id=messages.request_id(request_id)
        )
        return (await self._call(self._pipelines.ArchivePipeline, request)).pipeline

    async def restore_pipeline(
        self, name: str, *, request_id: str | None = None
    ) -> pipeline_pb2.Pipeline:
        request = pipelines.RestorePipelineRequest(
            name=name, request_id=messages.request_id(request_id)
        )
        return (await self._call(self._pipelines.RestorePipeline, request)).pipeline

    # -- schedules and notifications ----------------------------------------------------

    async def preview_schedule(
        self, pipeline: str, *, count: int = 10, start: datetime | None = None
    ) -> pipelines.PreviewScheduleResponse:
        request = messages.preview_schedule(pipeline, count, start)
        return await self._call(self._pipelines.PreviewSchedule, request)

    async def pause_schedule(
        self, pipeline: str, *, reason: str = "", request_id: str | None = None
    ) -> pipeline_pb2.Pipeline:
        request = pipelines.PauseScheduleRequest(
            pipeline=pipeline, reason=reason, request_id=messages.request_id(request_id)
        )
        return (await self._call(self._pipelines.PauseSchedule, request)).pipeline

    async def resume_schedule(
        self, pipeline: str, *, request_id: str | None = None
    ) -> pipeline_pb2.Pipeline:
        request = pipelines.ResumeScheduleRequest(
            pipeline=pipeline, request_id=messages.request_id(request_id)
        )
        return (await self._call(self._pipelines.ResumeSchedule, request)).pipeline

    async def pipeline_stats(
        self, name: str, *, runs: int = 30
    ) -> pipelines.GetPipelineStatsResponse:
        """See :meth:`legato.Client.pipeline_stats`."""
        request = pipelines.GetPipelineStatsRequest(pipeline=name, runs=max(0, runs))
        return await self._call(self._pipelines.GetPipelineStats, request)

    async def test_notifications(
        self,
        *,
        pipeline: str = "",
        spec: spec_pb2.PipelineSpec | None = None,
        positions: Sequence[int] = (),
        request_id: str | None = None,
    ) -> pipelines.TestNotificationsResponse:
        request = messages.test_notifications(pipeline, spec, positions, request_id)
        return await self._call(self._pipelines.TestNotifications, request)

    # -- backfills ----------------------------------------------------------------------

    async def create_backfill(
        self,
        pipeline: str,
        start: datetime,
        end: datetime,
        *,
        dry_run: bool = False,
        only_missing: bool = False,
        request_id: str | None = None,
    ) -> runs.CreateBackfillResponse:
        request = messages.create_backfill(
            pipeline, start, end, dry_run=dry_run, only_missing=only_missing, given_id=request_id
        )
        return await self._call(self._runs.CreateBackfill, request)

    async def get_backfill(self, backfill_id: str) -> run_pb2.Backfill:
        request = runs.GetBackfillRequest(id=backfill_id)
        return (await self._call(self._runs.GetBackfill, request)).backfill

    async def cancel_backfill(
        self, backfill_id: str, *, request_id: str | None = None
    ) -> run_pb2.Backfill:
        request = runs.CancelBackfillRequest(
            id=backfill_id, request_id=messages.request_id(request_id)
        )
        return (await self._call(self._runs.CancelBackfill, request)).backfill

    # -- runs ---------------------------------------------------------------------------

    async def trigger_run(
        self,
        pipeline: str,
        *,
        params: Mapping[str, Any] | None = None,
        version: int = 0,
        request_id: str | None = None,
        kind: TriggerKind | run_pb2.TriggerKind.ValueType = run_pb2.TRIGGER_KIND_API,
    ) -> runs.TriggerRunResponse:
        request = messages.trigger_run(
            pipeline, params=params, version=version, given_id=request_id, kind=kind
        )
        return await self._call(self._runs.TriggerRun, request)

    async def run(
        self,
        pipeline: str,
        params: Mapping[str, Any] | None = None,
        *,
        version: int = 0,
        request_id: str | None = None,
        kind: TriggerKind | run_pb2.TriggerKind.ValueType = run_pb2.TRIGGER_KIND_API,
    ) -> AsyncRunHandle:
        """Start a run; see :meth:`legato.Client.run`."""
        started = await self.trigger_run(
            pipeline, params=params, version=version, request_id=request_id, kind=kind
        )
        return AsyncRunHandle(self, started.run.id, created=started.created)

    def run_handle(self, run_id: str) -> AsyncRunHandle:
        return AsyncRunHandle(self, run_id)

    async def get_run(self, run_id: str) -> run_pb2.Run:
        return (await self._call(self._runs.GetRun, runs.GetRunRequest(id=run_id))).run

    def list_runs(
        self,
        *,
        pipeline: str = "",
        statuses: Sequence[RunStatus | run_pb2.RunStatus.ValueType] = (),
        triggers: Sequence[TriggerKind | run_pb2.TriggerKind.ValueType] = (),
        since: datetime | None = None,
        page_size: int = 0,
        backfill_id: str = "",
        include_tests: bool = False,
    ) -> AsyncIterator[run_pb2.Run]:
        request = messages.list_runs(
            pipeline=pipeline,
            statuses=statuses,
            triggers=triggers,
            since=since,
            page_size=page_size,
            backfill_id=backfill_id,
            include_tests=include_tests,
        )

        async def fetch(token: str) -> tuple[list[run_pb2.Run], str]:
            request.page_token = token
            response = await self._call(self._runs.ListRuns, request)
            return list(response.runs), response.next_page_token

        return _paged(fetch)

    def list_notifications(
        self, *, run_id: str = "", page_size: int = 0
    ) -> AsyncIterator[runs.NotificationDelivery]:
        async def fetch(token: str) -> tuple[list[runs.NotificationDelivery], str]:
            request = runs.ListNotificationsRequest(
                run_id=run_id, page_size=page_size, page_token=token
            )
            response = await self._call(self._runs.ListNotifications, request)
            return list(response.notifications), response.next_page_token

        return _paged(fetch)

    async def cancel_run(
        self, run_id: str, *, reason: str = "", request_id: str | None = None
    ) -> run_pb2.Run:
        request = runs.CancelRunRequest(
            id=run_id, reason=reason, request_id=messages.request_id(request_id)
        )
        return (await self._call(self._runs.CancelRun, request)).run

    async def test_step(
        self,
        pipeline: Pipeline | spec_pb2.PipelineSpec | LoadedSpec,
        step: str,
        *,
        agent: str,
        params: Mapping[str, Any] | None = None,
        inputs: Mapping[str, Any] | None = None,
        request_id: str | None = None,
    ) -> run_pb2.Run:
        """Run ``step`` of ``pipeline`` (as you have it; a pipeline of its name must
        exist on the server) once on the connected ``agent``, with that agent's
        connections, as a test run (trigger ``test``: not listed by default, no
        notifications). ``inputs`` give what the steps it needs produced: step name →
        Arrow IPC stream bytes, a dict of values, or ``(bytes, dict)``. Returns the test
        run; follow it with ``watch_run`` (``legato.notebook`` does it all)."""
        request = messages.test_step(
            sync.spec_of(pipeline),
            step,
            agent=agent,
            params=params,
            inputs=inputs,
            given_id=request_id,
        )
        return (await self._call(self._runs.TestStep, request)).run

    async def rerun_run(
        self,
        run_id: str,
        *,
        all_steps: bool = False,
        latest_version: bool = False,
        request_id: str | None = None,
    ) -> run_pb2.Run:
        request = messages.rerun_run(
            run_id, all_steps=all_steps, latest_version=latest_version, given_id=request_id
        )
        return (await self._call(self._runs.RerunRun, request)).run

    async def watch_run(
        self,
        run_id: str,
        *,
        include_logs: bool = True,
        after_seq: int = 0,
        timeout: float | None = None,  # noqa: ASYNC109 - the sync client's argument
    ) -> AsyncIterator[runs.WatchRunResponse]:
        """See :meth:`legato.Client.watch_run`: the same events, reconnections and
        ``timeout``."""
        last_seq = after_seq
        failures = 0
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            request = runs.WatchRunRequest(id=run_id, include_logs=include_logs, after_seq=last_seq)
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise sync.watch_deadline(run_id, timeout or 0.0)
            stream = self._runs.WatchRun(request, metadata=self._metadata, timeout=remaining)
            try:
                async for event in stream:
                    failures = 0
                    if event.HasField("log"):
                        last_seq = max(last_seq, event.log.seq)
                    yield event
                return
            except grpc.RpcError as error:
                call: grpc.Call = error  # type: ignore[assignment]
                if call.code() != grpc.StatusCode.UNAVAILABLE or failures >= sync.WATCH_RECONNECTS:
                    raise from_grpc_error(
                        error, self.target, tls=self.connection.uses_tls
                    ) from None
            finally:
                stream.cancel()
            await asyncio.sleep(
                min(sync.WATCH_BACKOFF_INITIAL * 2**failures, sync.WATCH_BACKOFF_MAX)
            )
            failures += 1

    def get_run_logs(
        self, run_id: str, *, step: str = "", attempt: int = 0, page_size: int = 0
    ) -> AsyncIterator[run_pb2.LogLine]:
        async def fetch(token: str) -> tuple[list[run_pb2.LogLine], str]:
            request = messages.get_run_logs(
                run_id, token, step=step, attempt=attempt, page_size=page_size
            )
            response = await self._call(self._runs.GetRunLogs, request)
            return list(response.lines), response.next_page_token

        return _paged(fetch)

    async def get_step_output(
        self, run_id: str, step: str, *, limit: int = 20
    ) -> runs.GetStepOutputResponse:
        request = runs.GetStepOutputRequest(run_id=run_id, step=step, limit=limit)
        return await self._call(self._runs.GetStepOutput, request)

    async def download_artifact(self, artifact_id: str, destination: Path) -> run_pb2.Artifact:
        partial = destination.with_name(destination.name + ".part")
        try:
            with partial.open("wb") as out:
                info = await self._stream_artifact(artifact_id, out)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        partial.replace(destination)
        return info

    async def read_artifact(self, artifact_id: str) -> tuple[run_pb2.Artifact, bytes]:
        buffer = io.BytesIO()
        info = await self._stream_artifact(artifact_id, buffer)
        return info, buffer.getvalue()

    async def _stream_artifact(self, artifact_id: str, out: IO[bytes]) -> run_pb2.Artifact:
        request = agents.DownloadArtifactRequest(artifact_id=artifact_id)
        digest = hashlib.sha256()
        info = run_pb2.Artifact()
        try:
            stream = self._agents.DownloadArtifact(
                request, timeout=self._timeout, metadata=self._metadata
            )
            async for message in stream:
                if message.WhichOneof("message") == "artifact":
                    info = message.artifact
                else:
                    out.write(message.chunk)
                    digest.update(message.chunk)
        except grpc.RpcError as error:
            raise from_grpc_error(error, self.target, tls=self.connection.uses_tls) from None
        if info.sha256 and digest.hexdigest() != info.sha256:
            raise OSError(f"artifact {artifact_id} arrived damaged (its SHA-256 does not match)")
        return info

    # -- events, agents, access, activity -----------------------------------------------

    async def publish_event(
        self,
        type: str,
        payload: Mapping[str, Any] | None = None,
        *,
        request_id: str | None = None,
        source: str = "",
    ) -> events.PublishResponse:
        request = messages.publish_event(type, payload, request_id, source)
        return await self._call(self._events.Publish, request)

    def list_agents(
        self, *, show_disconnected: bool = False, page_size: int = 0
    ) -> AsyncIterator[agent_pb2.Agent]:
        async def fetch(token: str) -> tuple[list[agent_pb2.Agent], str]:
            request = messages.list_agents(
                token, show_disconnected=show_disconnected, page_size=page_size
            )
            response = await self._call(self._agents.ListAgents, request)
            return list(response.agents), response.next_page_token

        return _paged(fetch)

    async def drain_agent(self, name: str, *, request_id: str | None = None) -> agent_pb2.Agent:
        request = agents.DrainAgentRequest(name=name, request_id=messages.request_id(request_id))
        return (await self._call(self._agents.DrainAgent, request)).agent

    async def get_caller(self) -> access.GetCallerResponse:
        return await self._call(self._access.GetCaller, access.GetCallerRequest())

    async def create_sign_in_link(
        self, *, next_path: str = "/", request_id: str | None = None
    ) -> access.CreateSignInLinkResponse:
        request = access.CreateSignInLinkRequest(
            next_path=next_path, request_id=messages.request_id(request_id)
        )
        return await self._call(self._access.CreateSignInLink, request)

    async def create_token(
        self,
        name: str,
        role: access_pb2.Role.ValueType,
        *,
        description: str = "",
        expire_time: datetime | None = None,
        request_id: str | None = None,
    ) -> access.CreateTokenResponse:
        request = messages.create_token(
            name, role, description=description, expire_time=expire_time, given_id=request_id
        )
        return await self._call(self._access.CreateToken, request)

    def list_tokens(
        self, *, show_revoked: bool = False, page_size: int = 0
    ) -> AsyncIterator[access_pb2.ApiToken]:
        async def fetch(token: str) -> tuple[list[access_pb2.ApiToken], str]:
            request = access.ListTokensRequest(
                page_size=page_size, page_token=token, show_revoked=show_revoked
            )
            response = await self._call(self._access.ListTokens, request)
            return list(response.tokens), response.next_page_token

        return _paged(fetch)

    async def revoke_token(
        self, name: str, *, request_id: str | None = None
    ) -> access_pb2.ApiToken:
        request = access.RevokeTokenRequest(name=name, request_id=messages.request_id(request_id))
        return (await self._call(self._access.RevokeToken, request)).token

    async def create_agent_token(
        self,
        agent: str,
        *,
        labels: Mapping[str, str] | None = None,
        connections: Sequence[str] = (),
        expire_time: datetime | None = None,
        request_id: str | None = None,
    ) -> access.CreateAgentTokenResponse:
        request = messages.create_agent_token(
            agent,
            labels=labels,
            connections=connections,
            expire_time=expire_time,
            given_id=request_id,
        )
        return await self._call(self._access.CreateAgentToken, request)

    def list_agent_tokens(
        self, *, agent: str = "", show_revoked: bool = False, page_size: int = 0
    ) -> AsyncIterator[access_pb2.AgentToken]:
        async def fetch(token: str) -> tuple[list[access_pb2.AgentToken], str]:
            request = messages.list_agent_tokens(
                token, agent=agent, show_revoked=show_revoked, page_size=page_size
            )
            response = await self._call(self._access.ListAgentTokens, request)
            return list(response.tokens), response.next_page_token

        return _paged(fetch)

    async def revoke_agent_token(
        self, token_id: str, *, request_id: str | None = None
    ) -> access_pb2.AgentToken:
        request = access.RevokeAgentTokenRequest(
            id=token_id, request_id=messages.request_id(request_id)
        )
        return (await self._call(self._access.RevokeAgentToken, request)).token

    def list_audit_events(
        self,
        *,
        pipeline: str = "",
        actor: str = "",
        action: str = "",
        since: datetime | None = None,
        until: datetime | None = None,
        page_size: int = 0,
    ) -> AsyncIterator[access_pb2.AuditEvent]:
        request = messages.list_audit_events(
            pipeline=pipeline,
            actor=actor,
            action=action,
            since=since,
            until=until,
            page_size=page_size,
        )

        async def fetch(token: str) -> tuple[list[access_pb2.AuditEvent], str]:
            request.page_token = token
            response = await self._call(self._audit.ListAuditEvents, request)
            return list(response.events), response.next_page_token

        return _paged(fetch)

    # -- lineage ------------------------------------------------------------------------

    async def lineage(
        self,
        *,
        dataset: str | None = None,
        pipeline: str | None = None,
        direction: str = "both",
        depth: int = 0,
    ) -> lineages.GetLineageResponse:
        """The lineage graph around one ``dataset`` (``namespace.name``, e.g.
        ``warehouse.public.orders``) or one ``pipeline``, as runs recorded it:
        ``direction`` ``"upstream"``, ``"downstream"`` or ``"both"``, up to ``depth``
        hops (0: 10, at most 50). RpcError NOT_FOUND for a dataset no run recorded or an
        unknown pipeline, INVALID_ARGUMENT for a malformed dataset."""
        request = messages.get_lineage(
            dataset=dataset, pipeline=pipeline, direction=direction, depth=depth
        )
        return await self._call(self._lineage.GetLineage, request)

    # -- plumbing -----------------------------------------------------------------------

    async def _call(self, method: Callable[..., Awaitable[R]], request: Any) -> R:
        """One call, sent again while the server says its database is unavailable, for
        up to ``legato.client.DATABASE_RETRY_SECONDS`` (as the sync client does)."""
        deadline = time.monotonic() + sync.DATABASE_RETRY_SECONDS
        delay = 0.1
        while True:
            try:
                return await method(request, timeout=self._timeout, metadata=self._metadata)
            except grpc.RpcError as error:
                failure = from_grpc_error(error, self.target, tls=self.connection.uses_tls)
            if failure.reason != "DATABASE_UNAVAILABLE" or time.monotonic() + delay > deadline:
                raise failure from None
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)


async def _paged(
    fetch: Callable[[str], Awaitable[tuple[list[T], str]]],
) -> AsyncIterator[T]:
    token = ""
    while True:
        items, token = await fetch(token)
        for item in items:
            yield item
        if not token:
            return
