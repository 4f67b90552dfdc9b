"""legato.v1.AgentService: the agents' stream, and listing and draining agents."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import grpc
import structlog
from google.protobuf import duration_pb2, json_format

from control_plane.access.principals import Principal
from control_plane.api.bounded import bounded_items
from control_plane.api.context import actor_from, caller
from control_plane.api.convert import timestamp
from control_plane.api.errors import MAX_MESSAGE, bounded_text, status_code
from control_plane.api.run_convert import agent_message, struct
from control_plane.errors import (
    InvalidArgument,
    LegatoError,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
)
from control_plane.execution.agents import MAX_LOG_LINE, Agents, LeaseReports, LogRecord
from control_plane.execution.artifacts import ArtifactInfo, ArtifactStore
from control_plane.execution.hub import MAX_SLOTS, AgentSession, Assignment, Outgoing
from control_plane.execution.transitions import AttemptOutcome
from control_plane.lineage.records import to_json
from control_plane.store.outages import UNAVAILABLE_MESSAGE, store_unavailable
from control_plane.triggers.watch_assignment import WatchMessage
from control_plane.triggers.watches import Watches
from legato.spec.connections import connection_label
from legato.v1 import agent_pb2, agent_service_pb2, agent_service_pb2_grpc, run_pb2, spec_pb2

__all__ = ["AgentServicer"]

Context = grpc.aio.ServicerContext[Any, Any]
log = structlog.get_logger("legato.agents")
pb = agent_service_pb2

DOWNLOAD_MESSAGE_BYTES = 64 * 1024
# The most reports applied as one batch (and held read ahead of the one being applied).
MAX_BATCH = 256
MAX_ERROR = 64 * 1024
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_STREAMS = {run_pb2.LOG_STREAM_STDOUT: "stdout", run_pb2.LOG_STREAM_STDERR: "stderr"}
_OUTCOMES = {
    agent_pb2.TASK_OUTCOME_SUCCEEDED: "succeeded",
    agent_pb2.TASK_OUTCOME_FAILED: "failed",
    agent_pb2.TASK_OUTCOME_CANCELLED: "cancelled",
}


class AgentServicer(agent_service_pb2_grpc.AgentServiceServicer):
    def __init__(
        self,
        agents: Agents,
        artifacts: ArtifactStore,
        *,
        lease_seconds: float,
        heartbeat_seconds: float,
        watches: Watches | None = None,
    ) -> None:
        self._agents = agents
        self._watches = watches
        self._artifacts = artifacts
        self._lease = lease_seconds
        self._heartbeat = heartbeat_seconds

    async def Connect(
        self, request_iterator: AsyncIterator[pb.ConnectRequest], context: Context
    ) -> AsyncIterator[pb.ConnectResponse]:
        requests = request_iterator.__aiter__()
        try:
            first = await anext(requests)
        except StopAsyncIteration:
            return
        if first.WhichOneof("message") != "register":
            raise InvalidArgument("the first message of AgentService.Connect must be `register`")
        session = _session(first.register, caller())
        stale = await self._agents.connect(session, list(first.register.running_lease_ids))
        log.info("agent_connected", agent=session.name, slots=session.slots, labels=session.labels)
        if self._watches is not None:
            self._watches.agents_changed()
        yield pb.ConnectResponse(
            registered=pb.AgentRegistered(
                agent_id=session.name,
                lease_duration=_seconds(self._lease),
                heartbeat_interval=_seconds(self._heartbeat),
                stale_lease_ids=stale,
                artifact_max_bytes=self._artifacts.max_bytes,
            )
        )
        reader = asyncio.create_task(self._read(requests, session))
        try:
            while True:
                message = await session.outbox.get()
                if message is None:
                    if session.closed_reason:
                        raise Unauthenticated(session.closed_reason, reason="TOKEN_REVOKED")
                    if session.store_failed:
                        raise Unavailable(UNAVAILABLE_MESSAGE, reason="DATABASE_UNAVAILABLE")
                    return
                yield _outgoing(message)
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
            # Shielded: when the agent cancels the call, this handler is cancelled too, and
            # the agent must still be recorded as disconnected.
            await asyncio.shield(self._agents.disconnect(session))
            if self._watches is not None:
                self._watches.agents_changed()
            log.info("agent_disconnected", agent=session.name)

    async def _read(
        self, requests: AsyncIterator[pb.ConnectRequest], session: AgentSession
    ) -> None:
        """Apply the agent's reports. What arrived together is a batch (what the stream
        holds when the last batch is done, at most ``MAX_BATCH``): a lease's started, log
        and result reports in it are applied in one transaction (``Agents.report``), the
        others one by one, and one acknowledgement covers the batch."""
        # Read ahead at most MAX_BATCH reports (the queue itself is unbounded, so that
        # the end of the stream can always be put in it, even by a cancelled reader).
        queue: asyncio.Queue[pb.ConnectRequest | None] = asyncio.Queue()
        room = asyncio.Semaphore(MAX_BATCH)

        async def pump() -> None:
            try:
                async for request in requests:
                    await room.acquire()
                    queue.put_nowait(request)
            finally:
                queue.put_nowait(None)

        pumping = asyncio.create_task(pump())
        try:
            ended = False
            while not ended:
                first = await queue.get()
                if first is None:
                    return
                batch = [first]
                while len(batch) < MAX_BATCH and not queue.empty():
                    item = queue.get_nowait()
                    if item is None:
                        ended = True
                        break
                    batch.append(item)
                for _ in batch:
                    room.release()
                if not await self._apply_batch(batch, session):
                    return
        except (grpc.aio.AioRpcError, asyncio.CancelledError):
            pass
        finally:
            pumping.cancel()
            await asyncio.gather(pumping, return_exceptions=True)
            session.send(None)

    async def _apply_batch(self, batch: list[pb.ConnectRequest], session: AgentSession) -> bool:
        """Apply a batch in order — a lease's reports together, where its last one was —
        and acknowledge what was applied; False when the store failed (the rest is not
        acknowledged: the agent sends it again after reconnecting)."""
        rejections: list[tuple[int, str, int, str]] = []
        groups = _lease_groups(batch)
        applied: list[pb.ConnectRequest] = []
        finished: set[str] = set()  # leases whose result this batch applied
        for index, request in enumerate(batch):
            group = groups.get(index)
            if group is None and _lease_of(request):
                continue  # applied with its lease's last report
            members = group or [request]
            if not await self._apply(members, session, rejections, finished):
                _acknowledge(session, batch, applied, rejections)
                return False
            applied.extend(members)
        _acknowledge(session, batch, applied, rejections)
        return True

    async def _apply(
        self,
        members: list[pb.ConnectRequest],
        session: AgentSession,
        rejections: list[tuple[int, str, int, str]],
        finished: set[str],
    ) -> bool:
        """Apply one report, or a lease's reports together; a refusal rejects each of
        them. False when the store failed."""
        lease = _lease_of(members[0])
        try:
            if lease:
                reports = _lease_reports(lease, members)
                await self._agents.report(session, reports)
                if reports.outcome is not None:
                    finished.add(lease)
            else:
                await self._handle(members[0], session, rejections, finished)
        except LegatoError as error:
            code = status_code(error).value[0]
            if isinstance(error, PermissionDenied):
                log.warning(
                    "agent_report_refused", agent=session.name, lease=lease, reason=error.reason
                )
            message = bounded_text(error.message, MAX_MESSAGE)
            rejections.extend((m.seq, _lease_of(m), code, message) for m in members)
        except Exception as error:
            if store_unavailable(error):
                # Not acknowledged (acknowledgements are cumulative, so nothing after it
                # either): the agent keeps it and sends it again after reconnecting,
                # once the database is back.
                log.warning(
                    "agent_report_deferred",
                    agent=session.name,
                    seq=members[0].seq,
                    error=str(error)[:200],
                )
                session.store_failed = True
                return False
            log.exception("agent_report_failed", agent=session.name, seq=members[0].seq)
            failed = "the control plane failed to apply this report"
            rejections.extend((m.seq, _lease_of(m), 13, failed) for m in members)
        return True

    async def _handle(
        self,
        request: pb.ConnectRequest,
        session: AgentSession,
        rejections: list[tuple[int, str, int, str]],
        finished: set[str],
    ) -> None:
        """Apply a report that names no lease (credits, heartbeats, watch changes)."""
        kind = request.WhichOneof("message")
        if kind == "credit":
            credits = request.credit.credits
            balance, held = session.balance, session.held
            refused = self._agents.grant(session, credits)
            if refused and not session.violation_logged:
                # Capped, not closed: the cap already protects the other pipelines, and
                # closing would make an agent with this bug reconnect and do it again.
                session.violation_logged = True
                log.warning(
                    "agent_protocol_violation",
                    agent=session.name,
                    problem="granted credits beyond its slots",
                    granted=credits,
                    refused=refused,
                    slots=session.slots,
                    credits=balance,
                    held=held,
                )
        elif kind == "heartbeat":
            # Not the leases this batch has just finished: their results came with it.
            beating = [lease for lease in request.heartbeat.lease_ids if lease not in finished]
            stale = await self._agents.heartbeat(session, beating)
            for lease_id in stale:
                rejections.append(
                    (
                        request.seq,
                        lease_id,
                        grpc.StatusCode.FAILED_PRECONDITION.value[0],
                        f"lease {lease_id} is no longer current; stop its task",
                    )
                )
        elif kind == "change" and self._watches is not None:
            change = request.change
            await self._watches.change(
                session.name, change.watch_id, change.payload, change.watermark
            )
        elif kind == "register":
            raise InvalidArgument("an agent registers once, in the first message of the stream")

    async def ListAgents(
        self, request: pb.ListAgentsRequest, context: Context
    ) -> pb.ListAgentsResponse:
        page = await self._agents.list_agents(
            show_disconnected=request.show_disconnected,
            page_size=request.page_size,
            page_token=request.page_token,
        )
        agents, next_token = bounded_items(page, agent_message)
        return pb.ListAgentsResponse(agents=agents, next_page_token=next_token)

    async def DrainAgent(
        self, request: pb.DrainAgentRequest, context: Context
    ) -> pb.DrainAgentResponse:
        info = await self._agents.drain(request.name, actor_from(context, request.request_id))
        return pb.DrainAgentResponse(agent=agent_message(info))

    async def UploadArtifact(
        self, request_iterator: AsyncIterator[pb.UploadArtifactRequest], context: Context
    ) -> pb.UploadArtifactResponse:
        requests = request_iterator.__aiter__()
        first = await anext(requests, None)
        if first is None or first.WhichOneof("message") != "header":
            raise InvalidArgument("the first message of UploadArtifact must be the header")
        header = first.header

        async def chunks() -> AsyncIterator[bytes]:
            async for request in requests:
                if request.WhichOneof("message") != "chunk":
                    raise InvalidArgument("after the header, UploadArtifact takes only chunks")
                yield request.chunk

        info = await self._artifacts.put(
            header.lease_id,
            header.name,
            header.media_type,
            header.size_bytes,
            chunks(),
            agent=caller().name if caller().is_agent else None,
        )
        return pb.UploadArtifactResponse(artifact=_artifact(info))

    async def DownloadArtifact(
        self, request: pb.DownloadArtifactRequest, context: Context
    ) -> AsyncIterator[pb.DownloadArtifactResponse]:
        who = caller()
        if who.is_agent:
            # An agent reads only what a lease it holds was given.
            await self._artifacts.authorize(request.artifact_id, request.lease_id, who.name)
        info = await self._artifacts.describe(request.artifact_id)
        yield pb.DownloadArtifactResponse(artifact=_artifact(info))
        async for chunk in self._artifacts.read(request.artifact_id):
            # Small messages: a reader that stops holds a piece in the transport, not a chunk.
            for start in range(0, len(chunk), DOWNLOAD_MESSAGE_BYTES):
                yield pb.DownloadArtifactResponse(
                    chunk=chunk[start : start + DOWNLOAD_MESSAGE_BYTES]
                )


def _artifact(info: ArtifactInfo) -> run_pb2.Artifact:
    return run_pb2.Artifact(
        id=info.id,
        name=info.name,
        media_type=info.media_type,
        size_bytes=info.size_bytes,
        sha256=info.sha256,
        create_time=timestamp(info.create_time),
    )


def _session(register: pb.AgentRegistration, who: Principal) -> AgentSession:
    """The session of a registering agent. An authenticated agent's name and labels are
    its enrolment's: it may repeat them, claim fewer, and advertise the connections its
    enrolment allows; any other claim is refused, naming it. Under ``--auth none`` the
    registration is taken as it is."""
    enrolled = who.is_agent
    name = who.name if enrolled else register.name
    if enrolled and register.name and register.name != who.name:
        raise PermissionDenied(
            f"this agent calls itself {_quote(register.name)} but its credential "
            f"({who.credential}) enrols agent {who.name!r}; start it with --name {who.name} "
            "or give it that agent's token",
            reason="AGENT_NAME_MISMATCH",
        )
    if not _NAME.fullmatch(name):
        raise InvalidArgument(
            f"agent name {_quote(name)} is not valid; use letters, digits, '.', '_' and '-' "
            "(at most 100)",
            reason="INVALID_AGENT",
        )
    if not 1 <= register.slots <= MAX_SLOTS:
        raise InvalidArgument(
            f"agent {name!r} offers {register.slots} slots; it needs between 1 and {MAX_SLOTS}",
            reason="INVALID_AGENT",
        )
    labels = dict(who.labels) if enrolled else dict(register.labels)
    if enrolled:
        for key, value in register.labels.items():
            if who.labels.get(key) != value:
                allowed = ", ".join(f"{k}={v}" for k, v in sorted(who.labels.items())) or "none"
                raise PermissionDenied(
                    f"agent {name!r} claims the label {_quote(key)}={_quote(value)}, which its "
                    f"enrolment does not give it (its labels: {allowed}); labels come from "
                    f"`legato agents token create --name {name} --labels ...`",
                    reason="LABEL_NOT_ALLOWED",
                )
        for connection in register.connections:
            if not who.allows_connection(connection):
                raise PermissionDenied(
                    f"agent {name!r} advertises the connection {_quote(connection)}, which its "
                    "enrolment does not allow; enrol it with `legato agents token create "
                    f"--name {name} --connections {connection}` (or '*')",
                    reason="CONNECTION_NOT_ALLOWED",
                )
    for connection in register.connections:
        labels[connection_label(connection)] = "true"
    return AgentSession(
        name=name,
        instance_id=register.instance_id or name,
        labels=labels,
        slots=register.slots,
        version=register.version,
        hostname=register.hostname,
        connections=list(register.connections),
        token_id=who.token_id,
        credential=who.credential,
    )


def _quote(value: str) -> str:
    return repr(value) if len(value) <= 60 else repr(value[:60]) + "…"


def _clean(text: str, limit: int) -> str:
    """Text an agent sent, storable everywhere (PostgreSQL refuses NUL characters) and at
    most ``limit`` characters."""
    if len(text) > limit:
        text = bounded_text(text, limit)
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


def _outcome(result: pb.TaskResult) -> AttemptOutcome:
    if result.outcome not in _OUTCOMES:
        raise InvalidArgument(
            f"result.outcome {result.outcome} is not succeeded, failed or cancelled",
            reason="INVALID_REPORT",
        )
    if result.failure_kind not in spec_pb2.FailureKind.values():
        raise InvalidArgument(
            f"result.failure_kind {result.failure_kind} is not a FailureKind",
            reason="INVALID_REPORT",
        )
    usage = result.usage
    if usage.peak_memory_bytes < 0 or usage.cpu_time.seconds < 0 or usage.cpu_time.nanos < 0:
        raise InvalidArgument(
            f"result.usage has a negative figure (peak_memory_bytes "
            f"{usage.peak_memory_bytes}, cpu_time {usage.cpu_time.ToTimedelta()}); an "
            "agent measures use as zero or more",
            reason="INVALID_REPORT",
        )
    output: dict[str, Any] = {}
    if result.HasField("output"):
        summary = result.output
        output = {
            "values": json_format.MessageToDict(summary.values),
            "columns": [{"name": c.name, "type": c.type} for c in summary.columns],
            "artifact_id": summary.artifact_id,
            "artifacts": [
                {
                    "id": a.id,
                    "name": a.name,
                    "media_type": a.media_type,
                    "size_bytes": a.size_bytes,
                    "sha256": a.sha256,
                }
                for a in summary.artifacts
            ],
        }
        if summary.HasField("rows"):
            output["rows"] = summary.rows
    kind = spec_pb2.FailureKind.Name(result.failure_kind).removeprefix("FAILURE_KIND_").lower()
    return AttemptOutcome(
        status=_OUTCOMES[result.outcome],
        failure_kind="" if kind == "unspecified" else kind,
        error=_clean(result.error, MAX_ERROR),
        records_in=result.records_in if result.HasField("records_in") else None,
        records_out=result.records_out if result.HasField("records_out") else None,
        output=output,
        end_time=result.end_time.ToDatetime(tzinfo=UTC) if result.HasField("end_time") else None,
        peak_memory_bytes=(
            result.usage.peak_memory_bytes if result.usage.HasField("peak_memory_bytes") else None
        ),
        cpu_seconds=(
            result.usage.cpu_time.ToTimedelta().total_seconds()
            if result.usage.HasField("cpu_time")
            else None
        ),
        lineage=to_json(result.lineage) if result.HasField("lineage") else None,
    )


def _lease_groups(batch: list[pb.ConnectRequest]) -> dict[int, list[pb.ConnectRequest]]:
    """The reports of each lease in ``batch`` (started, logs, result), by the index of
    the last of them, where they are applied; a result ends its lease's group."""
    open_groups: dict[str, list[pb.ConnectRequest]] = {}
    last: dict[str, int] = {}
    groups: dict[int, list[pb.ConnectRequest]] = {}
    for index, request in enumerate(batch):
        lease = _lease_of(request)
        if not lease:
            continue
        members = open_groups.setdefault(lease, [])
        members.append(request)
        last[lease] = index
        if request.WhichOneof("message") == "result":
            groups[index] = open_groups.pop(lease)
    for lease, members in open_groups.items():
        groups[last[lease]] = members
    return groups


def _lease_reports(lease_id: str, members: list[pb.ConnectRequest]) -> LeaseReports:
    started, started_time = False, None
    logs: list[tuple[tuple[LogRecord, ...], int]] = []
    outcome = None
    for request in members:
        kind = request.WhichOneof("message")
        if kind == "started":
            started = True
            if request.started.HasField("time"):
                started_time = request.started.time.ToDatetime(tzinfo=UTC)
        elif kind == "logs":
            lines = tuple(
                LogRecord(
                    time=line.time.ToDatetime(tzinfo=UTC)
                    if line.HasField("time")
                    else datetime.now(UTC),
                    stream=_STREAMS.get(line.stream, "stdout"),
                    text=_clean(line.text, MAX_LOG_LINE),
                )
                for line in request.logs.lines
            )
            logs.append((lines, request.logs.dropped))
        elif kind == "result":
            outcome = _outcome(request.result)
    return LeaseReports(lease_id, started, started_time, tuple(logs), outcome)


def _acknowledge(
    session: AgentSession,
    batch: list[pb.ConnectRequest],
    applied: list[pb.ConnectRequest],
    rejections: list[tuple[int, str, int, str]],
) -> None:
    """Acknowledge the batch through the last sequence number before the first report
    not applied (acknowledgements are cumulative), with the rejections up to it."""
    done = {id(request) for request in applied}
    pending = [r.seq for r in batch if r.seq and id(r) not in done]
    limit = min(pending) if pending else None
    through = max((r.seq for r in applied if r.seq and (limit is None or r.seq < limit)), default=0)
    if through:
        shown = tuple(r for r in rejections if r[0] <= through)
        session.send(Outgoing(kind="ack", through_seq=through, rejections=shown))


def _lease_of(request: pb.ConnectRequest) -> str:
    kind = request.WhichOneof("message")
    if kind in ("started", "logs", "result"):
        return str(getattr(request, kind).lease_id)
    return ""


def _seconds(value: float) -> duration_pb2.Duration:
    message = duration_pb2.Duration()
    message.FromNanoseconds(int(value * 1e9))
    return message


def _outgoing(message: Outgoing) -> pb.ConnectResponse:
    if isinstance(message, WatchMessage):
        return _watch(message)
    if message.kind == "assignment" and message.assignment is not None:
        return pb.ConnectResponse(assignment=_assignment(message.assignment))
    if message.kind == "cancel":
        return pb.ConnectResponse(
            cancel=pb.CancelTask(lease_id=message.lease_id, reason=message.reason)
        )
    if message.kind == "drain":
        return pb.ConnectResponse(drain=pb.DrainRequested(reason=message.reason))
    return pb.ConnectResponse(
        ack=pb.ReportAck(
            through_seq=message.through_seq,
            rejections=[
                pb.ReportRejection(seq=seq, lease_id=lease, code=code, message=text)
                for seq, lease, code, text in message.rejections
            ],
        )
    )


def _watch(message: WatchMessage) -> pb.ConnectResponse:
    if message.kind == "unwatch":
        return pb.ConnectResponse(unwatch=pb.WatchCancelled(watch_id=message.watch_id))
    trigger = json_format.ParseDict(
        message.trigger, spec_pb2.DatabaseTrigger(), ignore_unknown_fields=True
    )
    return pb.ConnectResponse(
        watch=pb.WatchAssignment(
            watch_id=message.watch_id,
            pipeline=message.pipeline,
            trigger=trigger,
            watermark=message.watermark,
        )
    )


def _assignment(a: Assignment) -> agent_pb2.TaskAssignment:
    message = agent_pb2.TaskAssignment(
        lease_id=a.lease_id,
        lease_expire_time=timestamp(a.lease_expire_time),
        run_id=a.run_id,
        pipeline=a.pipeline,
        pipeline_version=max(a.version, 0),  # 0 for a test run (a hidden version)
        step_name=a.step_name,
        attempt=a.attempt,
        step=a.step,
        params=struct(a.params),
        inputs=[
            agent_pb2.TaskInput(
                step=i.step,
                artifact_id=i.artifact_id,
                values=struct(i.values),
                rows=i.rows,
                status=run_pb2.StepStatus.Value(f"STEP_STATUS_{i.status.upper()}"),
            )
            for i in a.inputs
        ],
        memory_bytes=a.memory_bytes or 0,
        traceparent=a.traceparent,
        run_context=struct(a.run_context),
        resolved=struct(a.resolved),
    )
    if a.timeout is not None:
        message.timeout.CopyFrom(_seconds(a.timeout))
    return message
