"""The Legato Python SDK: a synchronous client of the legato.v1 API
(:class:`legato.AsyncClient` is the same over ``grpc.aio``).

    from legato import Client
    with Client("localhost:7470") as legato:
        legato.apply(pipeline, message="first cut")     # a legato.Pipeline or a PipelineSpec

        run = legato.run("etl", params={"day": "2026-06-12"})   # a RunHandle
        finished = run.wait(timeout=600)                        # a Run: .status, .steps
        totals = run.output("totals").to_pandas()

        for event in legato.watch_run(run.id):                  # the raw messages
            ...

        started = legato.publish_event("orders.created", {"order": 42}).run_ids

Mutations send a ``request_id`` (generated when not given) so that a call retried after a
lost response takes effect once; unary calls are retried on UNAVAILABLE by the channel's
retry policy, and ``watch_run`` reconnects on its own, resuming after the last log line it
delivered. Failures raise ``legato.RpcError``, as the subclass of their status
(``legato.NotFound``, ``legato.InvalidSpec`` with every field violation, ...)."""

from __future__ import annotations

import getpass
import hashlib
import io
import json
import os
import time
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeVar

import grpc

from legato import messages
from legato.connection import DEFAULT_SERVER, Connection, resolve
from legato.errors import DeadlineExceeded, from_grpc_error
from legato.runs import RunHandle
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

__all__ = [
    "CHANNEL_OPTIONS",
    "DEFAULT_SERVER",
    "Client",
    "call_metadata",
    "default_server",
    "default_user",
    "spec_of",
    "watch_deadline",
]

USER_METADATA_KEY = "legato-user"

T = TypeVar("T")
R = TypeVar("R")

# Unary calls are retried on UNAVAILABLE. A method-level entry overrides its service's, so
# WatchRun gets none: Client.watch_run reconnects itself, resuming after the last log line.
_SERVICE_CONFIG = json.dumps(
    {
        "methodConfig": [
            {
                "name": [
                    {"service": "legato.v1.PipelineService"},
                    {"service": "legato.v1.RunService"},
                    {"service": "legato.v1.AgentService"},
                    {"service": "legato.v1.EventService"},
                ],
                "retryPolicy": {
                    "maxAttempts": 4,
                    "initialBackoff": "0.2s",
                    "maxBackoff": "2s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            },
            {"name": [{"service": "legato.v1.RunService", "method": "WatchRun"}]},
        ]
    }
)

CHANNEL_OPTIONS = [
    ("grpc.service_config", _SERVICE_CONFIG),
    ("grpc.enable_retries", 1),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
]
"""Options of every client's channel (sync and ``grpc.aio``)."""


def call_metadata(connection: Connection, user: str | None) -> tuple[tuple[str, str], ...]:
    """The metadata of every call: the user it is made for and the token."""
    metadata = [(USER_METADATA_KEY, user or default_user())]
    if connection.token:
        metadata.append(("authorization", f"Bearer {connection.token}"))
    return tuple(metadata)


# watch_run: reconnections after UNAVAILABLE before giving up, and the waits between them
# (doubling up to the maximum); ~20 s in all, enough for a control plane to restart.
WATCH_RECONNECTS = 8
WATCH_BACKOFF_INITIAL = 0.2
WATCH_BACKOFF_MAX = 5.0


def spec_of(pipeline: Pipeline | spec_pb2.PipelineSpec | LoadedSpec) -> spec_pb2.PipelineSpec:
    """The ``PipelineSpec`` of what ``apply`` and ``validate`` take; a Pipeline with
    problems raises ``legato.spec.SpecFormatError`` (one ``FILE:LINE: path: message``
    per problem)."""
    if isinstance(pipeline, spec_pb2.PipelineSpec):
        return pipeline
    from legato.pipeline import Pipeline
    from legato.spec import LoadedSpec

    if isinstance(pipeline, Pipeline):
        return pipeline.to_spec()
    if isinstance(pipeline, LoadedSpec):
        return pipeline.spec
    raise TypeError(
        f"expected a legato.Pipeline, a PipelineSpec or a LoadedSpec, got {type(pipeline).__name__}"
    )


def default_server() -> str:
    return os.environ.get("LEGATO_SERVER") or DEFAULT_SERVER


def default_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


class Client:
    """A connection to a Legato control plane. Keyword-only options:

    - ``token``: the API token (``lgt_...``) sent as ``authorization: Bearer``;
    - ``ca``, ``cert``, ``key``: PEM files for TLS (the CA that signed the server's
      certificate) and, when the server requires one, this client's certificate;
    - ``context``: a context of the config file (``legato config set-context``);
    - ``user``: sent as the user the calls are made for; the activity log keeps it beside
      the token's name (default: the OS user);
    - ``timeout``: deadline of each call in seconds.

    What is not given comes from ``LEGATO_SERVER``, ``LEGATO_TOKEN``, ``LEGATO_CA``,
    ``LEGATO_CERT``, ``LEGATO_KEY``, the current context, or the credentials ``legato up``
    wrote under ``./.legato/`` (see ``legato.connection``).
    """

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
        self._metadata = call_metadata(connection, user)
        options = CHANNEL_OPTIONS
        credentials = connection.channel_credentials()
        if credentials is None:
            self._channel = grpc.insecure_channel(self.target, options=options)
        else:
            self._channel = grpc.secure_channel(self.target, credentials, options=options)
        self._pipelines = pipeline_service_pb2_grpc.PipelineServiceStub(self._channel)
        self._runs = run_service_pb2_grpc.RunServiceStub(self._channel)
        self._agents = agent_service_pb2_grpc.AgentServiceStub(self._channel)
        self._events = event_service_pb2_grpc.EventServiceStub(self._channel)
        self._access = access_service_pb2_grpc.AccessServiceStub(self._channel)
        self._audit = audit_service_pb2_grpc.AuditServiceStub(self._channel)
        self._lineage = lineage_service_pb2_grpc.LineageServiceStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- pipelines ----------------------------------------------------------------------

    def validate_pipeline(self, spec: spec_pb2.PipelineSpec) -> pipelines.ValidatePipelineResponse:
        """The canonical form and content hash; raises RpcError (INVALID_ARGUMENT, with
        field violations) when the spec is invalid."""
        return self._call(
            self._pipelines.ValidatePipeline, pipelines.ValidatePipelineRequest(spec=spec)
        )

    def apply_pipeline(
        self, spec: spec_pb2.PipelineSpec, *, message: str = "", request_id: str | None = None
    ) -> pipelines.ApplyPipelineResponse:
        request = messages.apply_pipeline(spec, message, request_id)
        return self._call(self._pipelines.ApplyPipeline, request)

    def apply(
        self,
        pipeline: Pipeline | spec_pb2.PipelineSpec | LoadedSpec,
        *,
        message: str = "",
        request_id: str | None = None,
    ) -> pipelines.ApplyPipelineResponse:
        """Save ``pipeline`` (a :class:`legato.Pipeline`, a ``PipelineSpec`` or a loaded
        spec file) as its next version, or find it unchanged (``created`` false). A spec
        the server refuses raises :class:`legato.InvalidSpec` with every violation."""
        return self.apply_pipeline(spec_of(pipeline), message=message, request_id=request_id)

    def validate(
        self, pipeline: Pipeline | spec_pb2.PipelineSpec | LoadedSpec
    ) -> pipelines.ValidatePipelineResponse:
        """Check ``pipeline`` as ``apply`` would, saving nothing: its canonical form and
        content hash, or :class:`legato.InvalidSpec` with every violation."""
        return self.validate_pipeline(spec_of(pipeline))

    def get_pipeline(self, name: str) -> pipeline_pb2.Pipeline:
        return self._call(
            self._pipelines.GetPipeline, pipelines.GetPipelineRequest(name=name)
        ).pipeline

    def list_pipelines(
        self, *, show_archived: bool = False, name_prefix: str = "", page_size: int = 0
    ) -> Iterator[pipeline_pb2.Pipeline]:
        """Every pipeline, fetching pages as the iterator advances."""

        def fetch(token: str) -> tuple[list[pipeline_pb2.Pipeline], str]:
            response = self._call(
                self._pipelines.ListPipelines,
                messages.list_pipelines(
                    token, show_archived=show_archived, name_prefix=name_prefix, page_size=page_size
                ),
            )
            return list(response.pipelines), response.next_page_token

        return _paged(fetch)

    def get_pipeline_version(self, pipeline: str, version: int = 0) -> pipeline_pb2.PipelineVersion:
        """Version ``version`` of the pipeline; 0 means the latest."""
        request = pipelines.GetPipelineVersionRequest(pipeline=pipeline, version=version)
        return self._call(self._pipelines.GetPipelineVersion, request).version

    def list_pipeline_versions(
        self, pipeline: str, *, page_size: int = 0
    ) -> Iterator[pipeline_pb2.PipelineVersion]:
        """Versions newest first."""

        def fetch(token: str) -> tuple[list[pipeline_pb2.PipelineVersion], str]:
            response = self._call(
                self._pipelines.ListPipelineVersions,
                pipelines.ListPipelineVersionsRequest(
                    pipeline=pipeline, page_size=page_size, page_token=token
                ),
            )
            return list(response.versions), response.next_page_token

        return _paged(fetch)

    def diff_pipeline_versions(
        self, pipeline: str, from_version: int, to_version: int = 0
    ) -> pipeline_pb2.PipelineDiff:
        request = pipelines.DiffPipelineVersionsRequest(
            pipeline=pipeline, from_version=from_version, to_version=to_version
        )
        return self._call(self._pipelines.DiffPipelineVersions, request).diff

    def rollback_pipeline(
        self, pipeline: str, version: int, *, message: str = "", request_id: str | None = None
    ) -> pipelines.RollbackPipelineResponse:
        request = messages.rollback_pipeline(pipeline, version, message, request_id)
        return self._call(self._pipelines.RollbackPipeline, request)

    def archive_pipeline(
        self, name: str, *, request_id: str | None = None
    ) -> pipeline_pb2.Pipeline:
        request = pipelines.ArchivePipelineRequest(
            name=name, request_id=messages.request_id(request_id)
        )
        return self._call(self._pipelines.ArchivePipeline, request).pipeline

    def restore_pipeline(
        self, name: str, *, request_id: str | None = None
    ) -> pipeline_pb2.Pipeline:
        request = pipelines.RestorePipelineRequest(
            name=name, request_id=messages.request_id(request_id)
        )
        return self._call(self._pipelines.RestorePipeline, request).pipeline

    # -- schedules ----------------------------------------------------------------------

    def preview_schedule(
        self, pipeline: str, *, count: int = 10, start: datetime | None = None
    ) -> pipelines.PreviewScheduleResponse:
        """The next ``count`` fire times (after ``start``, default now), the schedule's
        state and why it is not firing, when it is not."""
        request = messages.preview_schedule(pipeline, count, start)
        return self._call(self._pipelines.PreviewSchedule, request)

    def pause_schedule(
        self, pipeline: str, *, reason: str = "", request_id: str | None = None
    ) -> pipeline_pb2.Pipeline:
        request = pipelines.PauseScheduleRequest(
            pipeline=pipeline, reason=reason, request_id=messages.request_id(request_id)
        )
        return self._call(self._pipelines.PauseSchedule, request).pipeline

    def resume_schedule(
        self, pipeline: str, *, request_id: str | None = None
    ) -> pipeline_pb2.Pipeline:
        """Resume a paused schedule from its next fire time (the paused period is not
        caught up) and clear its count of failed runs."""
        request = pipelines.ResumeScheduleRequest(
            pipeline=pipeline, request_id=messages.request_id(request_id)
        )
        return self._call(self._pipelines.ResumeSchedule, request).pipeline

    # -- stats ---------------------------------------------------------------------------

    def pipeline_stats(self, name: str, *, runs: int = 30) -> pipelines.GetPipelineStatsResponse:
        """Per step p50/p95 duration, peak memory, CPU time and records over the
        pipeline's latest ``runs`` finished runs (at most 1000; test runs never count),
        with each step's samples oldest first and the slowest step. RpcError NOT_FOUND
        (PIPELINE_NOT_FOUND) for an unknown pipeline; no finished run gives no steps."""
        request = pipelines.GetPipelineStatsRequest(pipeline=name, runs=max(0, runs))
        return self._call(self._pipelines.GetPipelineStats, request)

    # -- notifications ------------------------------------------------------------------

    def test_notifications(
        self,
        *,
        pipeline: str = "",
        spec: spec_pb2.PipelineSpec | None = None,
        positions: Sequence[int] = (),
        request_id: str | None = None,
    ) -> pipelines.TestNotificationsResponse:
        """Send a test message now through each notification of an applied ``pipeline``
        (its latest version) or of a ``spec`` not applied yet (validated first: RpcError
        INVALID_ARGUMENT with field violations), or only those at ``positions`` (indexes in
        its ``notifications``). Each result says whether the receiver took it and what it
        answered; nothing is stored and no run is made. Give exactly one of ``pipeline``
        and ``spec``."""
        request = messages.test_notifications(pipeline, spec, positions, request_id)
        return self._call(self._pipelines.TestNotifications, request)

    # -- backfills ----------------------------------------------------------------------

    def create_backfill(
        self,
        pipeline: str,
        start: datetime,
        end: datetime,
        *,
        dry_run: bool = False,
        only_missing: bool = False,
        request_id: str | None = None,
    ) -> runs.CreateBackfillResponse:
        """Runs for the schedule's fire times in ``[start, end)``; with ``dry_run`` only
        their logical times. Naive datetimes are local time."""
        request = messages.create_backfill(
            pipeline, start, end, dry_run=dry_run, only_missing=only_missing, given_id=request_id
        )
        return self._call(self._runs.CreateBackfill, request)

    def get_backfill(self, backfill_id: str) -> run_pb2.Backfill:
        return self._call(self._runs.GetBackfill, runs.GetBackfillRequest(id=backfill_id)).backfill

    def cancel_backfill(
        self, backfill_id: str, *, request_id: str | None = None
    ) -> run_pb2.Backfill:
        """Cancel the backfill's queued and running runs."""
        request = runs.CancelBackfillRequest(
            id=backfill_id, request_id=messages.request_id(request_id)
        )
        return self._call(self._runs.CancelBackfill, request).backfill

    # -- runs ---------------------------------------------------------------------------

    def trigger_run(
        self,
        pipeline: str,
        *,
        params: Mapping[str, Any] | None = None,
        version: int = 0,
        request_id: str | None = None,
        kind: TriggerKind | run_pb2.TriggerKind.ValueType = run_pb2.TRIGGER_KIND_API,
    ) -> runs.TriggerRunResponse:
        """Start a run of ``version`` (0: the latest). ``params`` are JSON values (dates
        are sent as ISO strings); ``kind`` is API, or MANUAL when a person asked for it."""
        request = messages.trigger_run(
            pipeline, params=params, version=version, given_id=request_id, kind=kind
        )
        return self._call(self._runs.TriggerRun, request)

    def run(
        self,
        pipeline: str,
        params: Mapping[str, Any] | None = None,
        *,
        version: int = 0,
        request_id: str | None = None,
        kind: TriggerKind | run_pb2.TriggerKind.ValueType = run_pb2.TRIGGER_KIND_API,
    ) -> RunHandle:
        """Start a run of ``pipeline`` and return its :class:`legato.RunHandle`:
        ``.wait(timeout=...)`` returns the finished :class:`legato.Run`, ``.logs()`` and
        ``.output(step)`` read what it did. ``params`` are JSON values (dates as ISO
        strings), checked against the pipeline's declared params."""
        started = self.trigger_run(
            pipeline, params=params, version=version, request_id=request_id, kind=kind
        )
        return RunHandle(self, started.run.id, created=started.created)

    def run_handle(self, run_id: str) -> RunHandle:
        """A :class:`legato.RunHandle` for a run started elsewhere (no call is made)."""
        return RunHandle(self, run_id)

    def get_run(self, run_id: str) -> run_pb2.Run:
        """The run with its steps in DAG order."""
        return self._call(self._runs.GetRun, runs.GetRunRequest(id=run_id)).run

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
    ) -> Iterator[run_pb2.Run]:
        """Runs newest first (without their steps), fetching pages as the iterator
        advances. ``since`` (timezone-aware) keeps runs created at or after it;
        ``backfill_id`` keeps the runs of one backfill. ``statuses`` and ``triggers``
        take :class:`legato.RunStatus` and :class:`legato.TriggerKind` members or proto
        numbers. Test runs (``test_step``) are listed only with ``include_tests`` or when
        ``triggers`` has ``TriggerKind.TEST``."""
        request = messages.list_runs(
            pipeline=pipeline,
            statuses=statuses,
            triggers=triggers,
            since=since,
            page_size=page_size,
            backfill_id=backfill_id,
            include_tests=include_tests,
        )

        def fetch(token: str) -> tuple[list[run_pb2.Run], str]:
            request.page_token = token
            response = self._call(self._runs.ListRuns, request)
            return list(response.runs), response.next_page_token

        return _paged(fetch)

    def list_notifications(
        self, *, run_id: str = "", page_size: int = 0
    ) -> Iterator[runs.NotificationDelivery]:
        """Notifications newest first (of one run, with ``run_id``) with their delivery
        status, fetching pages as the iterator advances."""

        def fetch(token: str) -> tuple[list[runs.NotificationDelivery], str]:
            request = runs.ListNotificationsRequest(
                run_id=run_id, page_size=page_size, page_token=token
            )
            response = self._call(self._runs.ListNotifications, request)
            return list(response.notifications), response.next_page_token

        return _paged(fetch)

    def cancel_run(
        self, run_id: str, *, reason: str = "", request_id: str | None = None
    ) -> run_pb2.Run:
        """Cancel a run; a run that had already ended comes back unchanged."""
        request = runs.CancelRunRequest(
            id=run_id, reason=reason, request_id=messages.request_id(request_id)
        )
        return self._call(self._runs.CancelRun, request).run

    def test_step(
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
            spec_of(pipeline),
            step,
            agent=agent,
            params=params,
            inputs=inputs,
            given_id=request_id,
        )
        return self._call(self._runs.TestStep, request).run

    def rerun_run(
        self,
        run_id: str,
        *,
        all_steps: bool = False,
        latest_version: bool = False,
        request_id: str | None = None,
    ) -> run_pb2.Run:
        """Start a new run from a finished one: its failed and cancelled steps, or with
        ``all_steps`` every step; on the run's version, or with ``latest_version`` the
        pipeline's latest. Returns the new run."""
        request = messages.rerun_run(
            run_id, all_steps=all_steps, latest_version=latest_version, given_id=request_id
        )
        return self._call(self._runs.RerunRun, request).run

    def watch_run(
        self,
        run_id: str,
        *,
        include_logs: bool = True,
        after_seq: int = 0,
        timeout: float | None = None,
    ) -> Generator[runs.WatchRunResponse, None, None]:
        """Events of a run until it ends: the ``run`` first and on each status change,
        ``step`` changes and (with ``include_logs``) the ``log`` lines after ``after_seq``;
        the last message is the whole ended run.

        The call has no deadline unless ``timeout`` (seconds, over all reconnections)
        gives one: then it raises :class:`legato.DeadlineExceeded`. When the connection
        is lost (UNAVAILABLE, e.g. the control plane restarts) it reconnects with
        backoff, up to WATCH_RECONNECTS times in a row, asking for the lines after the
        last one delivered; the server then sends the run again. Closing the generator
        cancels the call."""
        last_seq = after_seq
        failures = 0
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            request = runs.WatchRunRequest(id=run_id, include_logs=include_logs, after_seq=last_seq)
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise watch_deadline(run_id, timeout or 0.0)
            stream = self._runs.WatchRun(request, metadata=self._metadata, timeout=remaining)
            try:
                for event in stream:
                    failures = 0
                    if event.HasField("log"):
                        last_seq = max(last_seq, event.log.seq)
                    yield event
                return
            except grpc.RpcError as error:
                call: grpc.Call = error  # type: ignore[assignment]
                if call.code() != grpc.StatusCode.UNAVAILABLE or failures >= WATCH_RECONNECTS:
                    raise from_grpc_error(
                        error, self.target, tls=self.connection.uses_tls
                    ) from None
            finally:
                stream.cancel()
            time.sleep(min(WATCH_BACKOFF_INITIAL * 2**failures, WATCH_BACKOFF_MAX))
            failures += 1

    def get_run_logs(
        self, run_id: str, *, step: str = "", attempt: int = 0, page_size: int = 0
    ) -> Iterator[run_pb2.LogLine]:
        """The run's log lines in order, fetching pages as the iterator advances. With
        ``step``, only that step's lines (and with ``attempt``, only that attempt's)."""

        def fetch(token: str) -> tuple[list[run_pb2.LogLine], str]:
            response = self._call(
                self._runs.GetRunLogs,
                messages.get_run_logs(
                    run_id, token, step=step, attempt=attempt, page_size=page_size
                ),
            )
            return list(response.lines), response.next_page_token

        return _paged(fetch)

    def get_step_output(
        self, run_id: str, step: str, *, limit: int = 20
    ) -> runs.GetStepOutputResponse:
        """The summary of a step's output and the first ``limit`` rows of its table."""
        request = runs.GetStepOutputRequest(run_id=run_id, step=step, limit=limit)
        return self._call(self._runs.GetStepOutput, request)

    def download_artifact(self, artifact_id: str, destination: Path) -> run_pb2.Artifact:
        """Write an artifact (a step's output table or a file it produced) to
        ``destination``, checking its SHA-256; returns its description."""
        partial = destination.with_name(destination.name + ".part")
        try:
            with partial.open("wb") as out:
                info = self._stream_artifact(artifact_id, out)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        partial.replace(destination)
        return info

    def read_artifact(self, artifact_id: str) -> tuple[run_pb2.Artifact, bytes]:
        """An artifact's description and content, in memory, its SHA-256 checked."""
        buffer = io.BytesIO()
        info = self._stream_artifact(artifact_id, buffer)
        return info, buffer.getvalue()

    def _stream_artifact(self, artifact_id: str, out: IO[bytes]) -> run_pb2.Artifact:
        request = agents.DownloadArtifactRequest(artifact_id=artifact_id)
        digest = hashlib.sha256()
        info = run_pb2.Artifact()
        try:
            stream = self._agents.DownloadArtifact(
                request, timeout=self._timeout, metadata=self._metadata
            )
            for message in stream:
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

    # -- events -------------------------------------------------------------------------

    def publish_event(
        self,
        type: str,
        payload: Mapping[str, Any] | None = None,
        *,
        request_id: str | None = None,
        source: str = "",
    ) -> events.PublishResponse:
        """Publish an event: every pipeline with an event trigger of ``type`` whose filter
        matches starts a run. ``payload`` holds JSON values (dates as ISO strings). A
        repeated ``request_id`` starts nothing new and returns the first event's id and
        runs with ``duplicate`` set."""
        request = messages.publish_event(type, payload, request_id, source)
        return self._call(self._events.Publish, request)

    # -- agents -------------------------------------------------------------------------

    def list_agents(
        self, *, show_disconnected: bool = False, page_size: int = 0
    ) -> Iterator[agent_pb2.Agent]:
        """Connected and draining agents (with ``show_disconnected``, also those gone),
        fetching pages as the iterator advances."""

        def fetch(token: str) -> tuple[list[agent_pb2.Agent], str]:
            response = self._call(
                self._agents.ListAgents,
                messages.list_agents(
                    token, show_disconnected=show_disconnected, page_size=page_size
                ),
            )
            return list(response.agents), response.next_page_token

        return _paged(fetch)

    def drain_agent(self, name: str, *, request_id: str | None = None) -> agent_pb2.Agent:
        """Ask an agent to finish its tasks and take no new ones."""
        request = agents.DrainAgentRequest(name=name, request_id=messages.request_id(request_id))
        return self._call(self._agents.DrainAgent, request).agent

    # -- access -------------------------------------------------------------------------

    def get_caller(self) -> access.GetCallerResponse:
        """Who the server takes this client for: the token's name and role."""
        return self._call(self._access.GetCaller, access.GetCallerRequest())

    def create_sign_in_link(
        self, *, next_path: str = "/", request_id: str | None = None
    ) -> access.CreateSignInLinkResponse:
        """A one-time link that opens the web UI signed in as this client's token (it
        works once, within a few minutes)."""
        return self._call(
            self._access.CreateSignInLink,
            access.CreateSignInLinkRequest(
                next_path=next_path, request_id=messages.request_id(request_id)
            ),
        )

    def create_token(
        self,
        name: str,
        role: access_pb2.Role.ValueType,
        *,
        description: str = "",
        expire_time: datetime | None = None,
        request_id: str | None = None,
    ) -> access.CreateTokenResponse:
        """A new API token; its ``secret`` is in this response only."""
        request = messages.create_token(
            name, role, description=description, expire_time=expire_time, given_id=request_id
        )
        return self._call(self._access.CreateToken, request)

    def list_tokens(
        self, *, show_revoked: bool = False, page_size: int = 0
    ) -> Iterator[access_pb2.ApiToken]:
        def fetch(token: str) -> tuple[list[access_pb2.ApiToken], str]:
            response = self._call(
                self._access.ListTokens,
                access.ListTokensRequest(
                    page_size=page_size, page_token=token, show_revoked=show_revoked
                ),
            )
            return list(response.tokens), response.next_page_token

        return _paged(fetch)

    def revoke_token(self, name: str, *, request_id: str | None = None) -> access_pb2.ApiToken:
        """Revoke an API token by name (or id); it stops working within seconds."""
        request = access.RevokeTokenRequest(name=name, request_id=messages.request_id(request_id))
        return self._call(self._access.RevokeToken, request).token

    def create_agent_token(
        self,
        agent: str,
        *,
        labels: Mapping[str, str] | None = None,
        connections: Sequence[str] = (),
        expire_time: datetime | None = None,
        request_id: str | None = None,
    ) -> access.CreateAgentTokenResponse:
        """Enrol an agent: its ``secret`` is in this response only."""
        request = messages.create_agent_token(
            agent,
            labels=labels,
            connections=connections,
            expire_time=expire_time,
            given_id=request_id,
        )
        return self._call(self._access.CreateAgentToken, request)

    def list_agent_tokens(
        self, *, agent: str = "", show_revoked: bool = False, page_size: int = 0
    ) -> Iterator[access_pb2.AgentToken]:
        def fetch(token: str) -> tuple[list[access_pb2.AgentToken], str]:
            response = self._call(
                self._access.ListAgentTokens,
                messages.list_agent_tokens(
                    token, agent=agent, show_revoked=show_revoked, page_size=page_size
                ),
            )
            return list(response.tokens), response.next_page_token

        return _paged(fetch)

    def revoke_agent_token(
        self, token_id: str, *, request_id: str | None = None
    ) -> access_pb2.AgentToken:
        """Revoke an enrolment token: the agent is disconnected within seconds."""
        request = access.RevokeAgentTokenRequest(
            id=token_id, request_id=messages.request_id(request_id)
        )
        return self._call(self._access.RevokeAgentToken, request).token

    # -- activity -----------------------------------------------------------------------

    def list_audit_events(
        self,
        *,
        pipeline: str = "",
        actor: str = "",
        action: str = "",
        since: datetime | None = None,
        until: datetime | None = None,
        page_size: int = 0,
    ) -> Iterator[access_pb2.AuditEvent]:
        """The activity log, newest first, fetching pages as the iterator advances."""
        request = messages.list_audit_events(
            pipeline=pipeline,
            actor=actor,
            action=action,
            since=since,
            until=until,
            page_size=page_size,
        )

        def fetch(token: str) -> tuple[list[access_pb2.AuditEvent], str]:
            request.page_token = token
            response = self._call(self._audit.ListAuditEvents, request)
            return list(response.events), response.next_page_token

        return _paged(fetch)

    # -- lineage ------------------------------------------------------------------------

    def lineage(
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
        return self._call(self._lineage.GetLineage, request)

    # -- plumbing -----------------------------------------------------------------------

    def _call(self, method: Callable[..., R], request: Any) -> R:
        """One call; sent again (the same request, so the same ``request_id``: a mutation
        acts once) while the control plane answers that its database is unavailable, for
        up to :data:`DATABASE_RETRY_SECONDS`."""
        deadline = time.monotonic() + DATABASE_RETRY_SECONDS
        delay = 0.1
        while True:
            try:
                return method(request, timeout=self._timeout, metadata=self._metadata)
            except grpc.RpcError as error:
                failure = from_grpc_error(error, self.target, tls=self.connection.uses_tls)
            if failure.reason != "DATABASE_UNAVAILABLE" or time.monotonic() + delay > deadline:
                raise failure from None
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


DATABASE_RETRY_SECONDS = 10.0
"""How long a call is retried while the control plane's database restarts."""


def watch_deadline(run_id: str, timeout: float) -> DeadlineExceeded:
    return DeadlineExceeded(
        code=grpc.StatusCode.DEADLINE_EXCEEDED,
        message=f"run {run_id} did not end within {timeout:g}s of watching",
        reason="DEADLINE_EXCEEDED",
    )


def _paged(fetch: Callable[[str], tuple[list[T], str]]) -> Iterator[T]:
    token = ""
    while True:
        items, token = fetch(token)
        yield from items
        if not token:
            return
