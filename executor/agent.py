"""The executor agent: dials the control plane, registers, grants credits for its free
slots, runs the attempts it is assigned and reports on them.

- **Reconnects** with jittered exponential backoff when the stream breaks; running
  children are kept meanwhile, and re-registering names their leases so the control
  plane can adopt them (or say which are stale, which are then stopped).
- **Reports** (started, log batches, results) are numbered, kept until acknowledged and
  sent again after a reconnect (``ReportBuffer``); the control plane refuses those whose
  lease is no longer current, which changes nothing.
- **Lost leases**: if the agent cannot reach the control plane for longer than the lease,
  it stops its children — their leases have expired and the steps run elsewhere — unless
  the control plane's address refuses connections (it is not running, so it reaps no
  lease, and gives agents a grace period when it starts) or it answers that its database is
  unavailable (then no replica can reap either): the steps run on and their results are
  reported once it is back (:mod:`executor.reachability`).
- **Backoff** between reconnects is jittered, exponential and capped at half a lease (and
  at :data:`MAX_BACKOFF_SECONDS`), so an agent is back within the control plane's start-up
  grace; the channel's own reconnect backoff is kept below it.
- **Drain** (from the control plane or a first SIGTERM): take nothing new, finish what
  runs, exit. A second SIGTERM stops the children at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import structlog

from executor.config import AgentConfig, ConfigError
from executor.connections import load_connections
from executor.files import OUTPUT_NAME, TooManyFilesError, media_type, step_files
from executor.lineage import lineage_of
from executor.logship import LogBatcher
from executor.masking import Masker
from executor.metrics import AgentMetrics, AgentState
from executor.reachability import refuses_connections
from executor.reports import ReportBuffer
from executor.runner import Outcome, Runner
from executor.runner.runner import ARTIFACTS_DIR
from executor.tasks import result_message, started_time, to_task
from executor.watchers import Watchers
from executor.workdirs import claim_workdir, remove_attempt
from legato import __version__
from legato.errors import from_grpc_error
from legato.pemfiles import PemError, read_certificates, read_key_pair, signature
from legato.spec.artifacts import too_large_message
from legato.spec.connections import connections_of
from legato.v1 import agent_pb2, agent_service_pb2, agent_service_pb2_grpc, run_pb2
from observability.tracing import Tracing, parse_traceparent

__all__ = ["Agent", "AgentRefusedError"]

pb = agent_service_pb2
log = structlog.get_logger("legato.agent")

LOG_FLUSH_SECONDS = 0.05
UPLOAD_CHUNK = 1024 * 1024
# How long a stopping agent waits for its last reports to be acknowledged.
STOP_REPORT_SECONDS = 10.0
MAX_BACKOFF_SECONDS = 10.0
# How long one attempt to reconnect waits for the channel to be ready.
DIAL_SECONDS = 5.0
# Statuses of Connect that retrying cannot fix: the agent stops.
_REFUSED = {grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED}
_CHANNEL_OPTIONS = [
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    # gRPC's own reconnect backoff (up to 120 s by default) would hold the channel in
    # TRANSIENT_FAILURE long after the control plane is back, failing every new stream at
    # once: keep it short, so the agent's backoff decides when it dials.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1_000),
]


class OutputTooLargeError(Exception):
    """A step's output is over the control plane's artifact size limit."""


class AgentRefusedError(Exception):
    """The control plane refused this agent's credential or identity; retrying cannot
    help (the message says what to fix)."""


class Agent:
    def __init__(self, config: AgentConfig, *, runner: Runner | None = None) -> None:
        self.config = config
        # Absolute: children run with another working directory.
        self._workdir = config.workdir.expanduser().resolve()
        self.instance_id = uuid.uuid4().hex
        self.connections = load_connections(config.connections_file)
        self._mask = Masker(self.connections.values())
        self._runner = runner or Runner(grace_seconds=config.grace, slots=config.slots)
        self._tracing = Tracing("legato-agent")
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._batchers: dict[str, LogBatcher] = {}
        self._reports = ReportBuffer()
        # Database triggers watched here; their changes go out as reports.
        self._watchers = Watchers(self.connections, self._mask, self._report)
        self._outbox: asyncio.Queue[pb.ConnectRequest] | None = None
        self._urgent: deque[pb.ConnectRequest] = deque()
        self._wake = asyncio.Event()
        self._stop_deadline: float | None = None
        self._stop = asyncio.Event()
        self._draining = False
        self._last_contact = time.monotonic()
        # Whether the control plane's address refused connections when the stream last
        # failed: it is not running, so the steps here keep their leases.
        self._server_stopped = False
        self._lease_seconds = 20.0
        self._heartbeat_seconds = 5.0
        self._artifact_max: int | None = None
        self.connected = asyncio.Event()
        self._channel: grpc.aio.Channel | None = None
        self._tls_files = signature(config.ca, config.cert, config.key)
        self._stub: Any = None
        self.name = config.display_name
        """The name the control plane knows this agent by (its enrolment's, once connected)."""
        self._metadata: tuple[tuple[str, str], ...] = (
            (("authorization", f"Bearer {config.token}"),) if config.token else ()
        )
        self._registrations = 0
        self.metrics = AgentMetrics(
            AgentState(
                slots=lambda: config.slots,
                running=lambda: len(self._tasks),
                buffered=lambda: len(self._reports),
                connected=self.connected.is_set,
            )
        )
        """Its Prometheus metrics, served by ``executor.app`` on ``--metrics-listen``."""

    # -- life cycle ---------------------------------------------------------------------

    async def run(self) -> None:
        """Serve until stopped or drained."""
        # Refused while another agent holds the directory; what a killed one left goes.
        workdir = await asyncio.to_thread(claim_workdir, self._workdir)
        self._channel = _channel(self.config)
        self._stub = agent_service_pb2_grpc.AgentServiceStub(self._channel)
        await self._runner.start()
        helpers = [
            asyncio.create_task(self._watch_leases(), name="legato-agent-watchdog"),
            asyncio.create_task(self._flush_logs_forever(), name="legato-agent-logs"),
        ]
        backoff = 0.1
        try:
            while not self._stop.is_set():
                store_down = False
                try:
                    await self._serve_stream()
                    backoff = 0.1
                except grpc.aio.AioRpcError as error:
                    reason = from_grpc_error(error, self.config.server).reason
                    store_down = reason == "DATABASE_UNAVAILABLE"
                    if error.code() in _REFUSED:
                        log.error(
                            "agent_refused",
                            code=error.code().name,
                            reason=reason,
                            details=error.details(),
                        )
                        raise AgentRefusedError(
                            f"the control plane at {self.config.server} refused this agent "
                            f"({reason}): {error.details()}"
                        ) from None
                    log.warning("stream_failed", code=error.code().name, details=error.details())
                except ConnectionError as error:
                    log.warning("stream_failed", details=str(error))
                if self._stop.is_set():
                    break
                # No control plane can be reaping these leases if none is listening, or
                # if their (shared) database is down: the steps keep running then.
                self._server_stopped = store_down or await refuses_connections(self.config.server)
                await self._renew_channel()
                delay = backoff * random.uniform(0.5, 1.5)
                backoff = min(backoff * 2, self._max_backoff)
                try:
                    async with asyncio.timeout(delay):
                        await self._stop.wait()
                except TimeoutError:
                    pass
        finally:
            for helper in helpers:
                helper.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            await self._watchers.close()
            # Also what is still downloading its inputs: it must not start afterwards.
            await self._runner.close("the agent is stopping")
            await asyncio.gather(*self._tasks.values(), return_exceptions=True)
            await self._runner.stop()
            await asyncio.to_thread(self._tracing.shutdown)
            if self._channel is not None:
                await self._channel.close()
            workdir.release()

    def drain(self, reason: str) -> None:
        """Take no new tasks; stop once the running ones are done."""
        if not self._draining:
            log.info("draining", reason=reason, running=len(self._tasks))
        self._draining = True
        if not self._tasks:
            self._stop.set()

    def stop(self) -> None:
        self._stop.set()

    @property
    def _max_backoff(self) -> float:
        """Half a lease at most: back within the control plane's start-up grace."""
        return max(0.1, min(MAX_BACKOFF_SECONDS, self._lease_seconds / 2))

    @property
    def running(self) -> list[str]:
        return list(self._tasks)

    async def _renew_channel(self) -> None:
        """After a broken stream: dial with the TLS files again if they changed (renewed
        certificates), keeping the current channel when the new files cannot be used."""
        files = signature(self.config.ca, self.config.cert, self.config.key)
        if files == self._tls_files:
            return
        self._tls_files = files
        try:
            channel = _channel(self.config)
        except ConfigError as exc:
            log.warning("tls_renewal_skipped", error=str(exc))
            return
        old, self._channel = self._channel, channel
        self._stub = agent_service_pb2_grpc.AgentServiceStub(channel)
        log.info("tls_renewed", ca=self.config.ca, cert=self.config.cert)
        if old is not None:
            await old.close()

    # -- the stream ---------------------------------------------------------------------

    async def _serve_stream(self) -> None:
        assert self._channel is not None
        # A real dial now (after the channel's short backoff), not a stream failed at once
        # because the channel is still backing off from the outage. If it does not get
        # ready, the stream below fails with the channel's reason (refused, TLS, ...).
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(DIAL_SECONDS):
                await self._channel.channel_ready()
        call: Any = self._stub.Connect(metadata=self._metadata)
        await call.write(pb.ConnectRequest(register=self._registration()))
        first = await call.read()
        if first is grpc.aio.EOF:
            raise ConnectionError(
                "the control plane closed the stream before registering the agent"
            )
        registered = first.registered
        self.name = registered.agent_id or self.name
        self._lease_seconds = registered.lease_duration.ToTimedelta().total_seconds() or 20.0
        self._heartbeat_seconds = registered.heartbeat_interval.ToTimedelta().total_seconds() or 5.0
        self._artifact_max = registered.artifact_max_bytes or None
        self._last_contact = time.monotonic()
        self._server_stopped = False
        self._registrations += 1
        if self._registrations > 1:
            self.metrics.reconnected()
        for lease_id in registered.stale_lease_ids:
            self._runner.cancel(lease_id, "the control plane no longer holds this lease")
        outbox: asyncio.Queue[pb.ConnectRequest] = asyncio.Queue()
        for request in self._reports.unacknowledged():
            outbox.put_nowait(request)
        free = self.config.slots - len(self._tasks)
        if free > 0 and not self._draining:
            outbox.put_nowait(pb.ConnectRequest(credit=pb.CreditGrant(credits=free)))
        self._urgent.clear()
        self._outbox = outbox
        self._wake.set()
        self.connected.set()
        log.info("connected", server=self.config.server, name=self.name, running=len(self._tasks))
        writer = asyncio.create_task(self._write(call, outbox))
        beat = asyncio.create_task(self._heartbeats(outbox))
        try:
            # One read stays pending across iterations: cancelling it would cancel the call.
            reading: asyncio.Future[Any] | None = None
            while True:
                if self._stop.is_set() and self._done_reporting():
                    break
                if reading is None:
                    reading = asyncio.ensure_future(call.read())
                if not self._stop.is_set():
                    stopping = asyncio.ensure_future(self._stop.wait())
                    await asyncio.wait({reading, stopping}, return_when=asyncio.FIRST_COMPLETED)
                    stopping.cancel()
                else:
                    # Stopping: keep reading acknowledgements until every report has one.
                    await asyncio.wait({reading}, timeout=0.2)
                if not reading.done():
                    continue
                message, reading = reading.result(), None
                if message is grpc.aio.EOF:
                    raise ConnectionError("the control plane closed the stream")
                self._last_contact = time.monotonic()
                self._handle(message)
        finally:
            self.connected.clear()
            self._outbox = None
            # The control plane assigns the watches again once the agent is back.
            self._watchers.cancel_all()
            writer.cancel()
            beat.cancel()
            await asyncio.gather(writer, beat, return_exceptions=True)
            call.cancel()

    @property
    def _identified(self) -> bool:
        """Whether a credential gives this agent its name (a token or a certificate)."""
        return bool(self.config.token or self.config.cert)

    def _registration(self) -> pb.AgentRegistration:
        return pb.AgentRegistration(
            name=self.config.name or ("" if self._identified else socket.gethostname()),
            labels=self.config.labels,
            slots=self.config.slots,
            version=__version__,
            hostname=socket.gethostname(),
            connections=sorted(self.connections),
            instance_id=self.instance_id,
            running_lease_ids=list(self._tasks),
        )

    async def _write(self, call: Any, outbox: asyncio.Queue[pb.ConnectRequest]) -> None:
        """Send queued messages in order, but heartbeats and credits first: they must not
        wait behind a backlog of log batches."""
        while True:
            if self._urgent:
                request = self._urgent.popleft()
            elif not outbox.empty():
                request = outbox.get_nowait()
            else:
                self._wake.clear()
                await self._wake.wait()
                continue
            request.seq = self._reports.next_seq()
            await call.write(request)

    def _done_reporting(self) -> bool:
        """When stopping: every report acknowledged, or too long spent waiting for that."""
        if self._stop_deadline is None:
            self._stop_deadline = time.monotonic() + STOP_REPORT_SECONDS
        return len(self._reports) == 0 or time.monotonic() > self._stop_deadline

    async def _heartbeats(self, outbox: asyncio.Queue[pb.ConnectRequest]) -> None:
        while True:
            await asyncio.sleep(self._heartbeat_seconds)
            self._send_urgent(
                pb.ConnectRequest(heartbeat=pb.Heartbeat(lease_ids=list(self._tasks)))
            )

    def _send_urgent(self, request: pb.ConnectRequest) -> None:
        if self._outbox is not None:
            self._urgent.append(request)
            self._wake.set()

    def _send(self, request: pb.ConnectRequest) -> None:
        if self._outbox is not None:
            self._outbox.put_nowait(request)
            self._wake.set()

    def _report(self, request: pb.ConnectRequest) -> None:
        self._send(self._reports.add(request))

    def _handle(self, message: pb.ConnectResponse) -> None:
        kind = message.WhichOneof("message")
        if kind == "assignment":
            self._start(message.assignment)
        elif kind == "cancel":
            self._runner.cancel(message.cancel.lease_id, message.cancel.reason or "cancelled")
        elif kind == "drain":
            self.drain(message.drain.reason or "drained by the control plane")
        elif kind == "watch":
            self._watchers.start(message.watch)
        elif kind == "unwatch":
            self._watchers.cancel(message.unwatch.watch_id)
        elif kind == "ack":
            self._reports.ack(message.ack.through_seq)
            for rejection in message.ack.rejections:
                if rejection.lease_id in self._tasks:
                    self._runner.cancel(rejection.lease_id, f"lease lost: {rejection.message}")
                log.info("report_refused", lease=rejection.lease_id, reason=rejection.message)

    # -- tasks --------------------------------------------------------------------------

    def _start(self, assignment: agent_pb2.TaskAssignment) -> None:
        lease_id = assignment.lease_id
        if lease_id in self._tasks:
            return
        workdir = self._workdir / lease_id
        workdir.mkdir(parents=True, exist_ok=True)
        self._batchers[lease_id] = LogBatcher(
            on_batch=lambda: self._flush_logs(lease_id, everything=False), mask=self._mask
        )
        self._tasks[lease_id] = asyncio.create_task(
            self._execute(assignment, workdir), name=f"task-{lease_id}"
        )

    async def _execute(self, assignment: agent_pb2.TaskAssignment, workdir: Path) -> None:
        lease_id = assignment.lease_id
        batcher = self._batchers[lease_id]

        def on_started(_pid: int, moment: datetime) -> None:
            started = pb.TaskStarted(lease_id=lease_id, time=started_time(moment))
            self._report(pb.ConnectRequest(started=started))

        try:
            tables = await self._download_inputs(assignment, workdir)
            names = connections_of(assignment.step)
            named = {n: self.connections[n] for n in names if n in self.connections}
            task = to_task(assignment, workdir, tables, named)
            lineage = asyncio.ensure_future(lineage_of(assignment.step, named))
            outcome = await self._runner.run(task, batcher.add, on_started)
            outcome = await self._mask.outcome(outcome)  # error, values, table: no secrets
            artifact_id = ""
            files: list[run_pb2.Artifact] = []
            if outcome.status == "succeeded":
                try:
                    step = assignment.step_name
                    if outcome.table_path is not None:
                        artifact_id = (await self._upload(lease_id, step, outcome.table_path)).id
                    for path, name in step_files(workdir / ARTIFACTS_DIR):
                        files.append(await self._upload(lease_id, step, path, name))
                except grpc.aio.AioRpcError as error:
                    outcome = replace(
                        outcome,
                        status="failed",
                        failure_kind="error",
                        error=f"storing the output failed: {error.details()}",
                    )
                except (TooManyFilesError, OutputTooLargeError) as error:
                    outcome = replace(
                        outcome, status="failed", failure_kind="error", error=str(error)
                    )
            result = result_message(lease_id, outcome, artifact_id, files, await lineage)
            self._trace(assignment, outcome)
            self.metrics.step_ended(
                outcome.status
                if outcome.status in ("succeeded", "cancelled")
                else outcome.failure_kind or "error"
            )
        except Exception as exc:
            log.exception("task_failed_in_agent", lease=lease_id)
            self.metrics.step_ended("error")
            result = pb.TaskResult(
                lease_id=lease_id,
                outcome=agent_pb2.TASK_OUTCOME_FAILED,
                error=self._mask(f"the agent failed to run the step: {type(exc).__name__}: {exc}"),
            )
            result.end_time.FromDatetime(datetime.now(UTC))
        finally:
            self._flush_logs(lease_id, everything=True)
            del self._batchers[lease_id]
            remove_attempt(workdir)
        self._report(pb.ConnectRequest(result=result))
        del self._tasks[lease_id]
        if self._draining:
            if not self._tasks:
                self._stop.set()
        else:
            self._send_urgent(pb.ConnectRequest(credit=pb.CreditGrant(credits=1)))

    def _trace(self, assignment: agent_pb2.TaskAssignment, outcome: Outcome) -> None:
        """The attempt's span, a child of the run's span (from the assignment)."""
        parent = parse_traceparent(assignment.traceparent)
        if parent is None:
            return
        self._tracing.span(
            f"step {assignment.step_name}",
            trace_id=f"{parent[0]:032x}",
            parent_span_id=f"{parent[1]:016x}",
            start=outcome.started_at,
            end=outcome.ended_at,
            attributes={
                "legato.run_id": assignment.run_id,
                "legato.pipeline": assignment.pipeline,
                "legato.step": assignment.step_name,
                "legato.attempt": assignment.attempt,
                "legato.agent": self.name,
                "legato.records_in": outcome.records_in,
                "legato.records_out": outcome.records_out,
                "legato.outcome": outcome.status,
                "legato.failure_kind": outcome.failure_kind,
            },
            error=outcome.error if outcome.status != "succeeded" else "",
        )

    async def _download_inputs(
        self, assignment: agent_pb2.TaskAssignment, workdir: Path
    ) -> dict[str, Path]:
        tables: dict[str, Path] = {}
        inputs = workdir / "inputs"
        for item in assignment.inputs:
            if not item.artifact_id:
                continue
            inputs.mkdir(exist_ok=True)
            path = inputs / f"{item.step}.arrow"
            call = self._stub.DownloadArtifact(
                pb.DownloadArtifactRequest(
                    artifact_id=item.artifact_id, lease_id=assignment.lease_id
                ),
                metadata=self._metadata,
            )
            with path.open("wb") as handle:
                async for message in call:
                    if message.WhichOneof("message") == "chunk":
                        handle.write(message.chunk)
            tables[item.step] = path
        return tables

    async def _upload(
        self, lease_id: str, step: str, path: Path, name: str = OUTPUT_NAME
    ) -> run_pb2.Artifact:
        size = (await asyncio.to_thread(path.stat)).st_size
        if self._artifact_max is not None and size > self._artifact_max:
            # The control plane would refuse it; saying so here spares the upload (and a
            # refusal racing the upload's last chunks, which grpcio reports as INTERNAL).
            raise OutputTooLargeError(
                "storing the output failed: " + too_large_message(step, size, self._artifact_max)
            )

        async def requests() -> AsyncIterator[pb.UploadArtifactRequest]:
            header = pb.ArtifactHeader(
                lease_id=lease_id, name=name, media_type=media_type(name), size_bytes=size
            )
            yield pb.UploadArtifactRequest(header=header)
            with path.open("rb") as handle:
                while chunk := handle.read(UPLOAD_CHUNK):
                    yield pb.UploadArtifactRequest(chunk=chunk)

        response = await self._stub.UploadArtifact(requests(), metadata=self._metadata)
        artifact: run_pb2.Artifact = response.artifact
        return artifact

    async def _flush_logs_forever(self) -> None:
        while True:
            await asyncio.sleep(LOG_FLUSH_SECONDS)
            for lease_id in list(self._batchers):
                self._flush_logs(lease_id, everything=True)

    def _flush_logs(self, lease_id: str, *, everything: bool) -> None:
        batcher = self._batchers.get(lease_id)
        if batcher is not None:
            # Lines the report buffer had to drop while the stream was down.
            batcher.dropped += self._reports.take_dropped(lease_id)
        while batcher is not None and (len(batcher) or batcher.dropped):
            lines, dropped = batcher.take()
            self._report(
                pb.ConnectRequest(logs=pb.TaskLogs(lease_id=lease_id, lines=lines, dropped=dropped))
            )
            if not everything:
                return

    async def _watch_leases(self) -> None:
        """Stop the children once the leases they run under must have expired (not while
        the control plane is known to be stopped: it cannot have given them away)."""
        kept = False
        while True:
            await asyncio.sleep(1)
            silent = time.monotonic() - self._last_contact
            if not self._tasks or self.connected.is_set() or silent <= self._lease_seconds:
                kept = False
                continue
            if self._server_stopped:
                if not kept:
                    log.warning(
                        "control_plane_stopped_steps_kept",
                        silent_seconds=round(silent, 1),
                        tasks=len(self._tasks),
                        server=self.config.server,
                    )
                kept = True
            else:
                log.warning("leases_lost", silent_seconds=round(silent, 1), tasks=len(self._tasks))
                await self._runner.kill_all(
                    f"the agent could not reach the control plane for {silent:.0f}s, longer than "
                    f"its {self._lease_seconds:.0f}s lease; the step runs again elsewhere"
                )


def _channel(config: AgentConfig) -> grpc.aio.Channel:
    """A channel to the control plane; ConfigError names a TLS file that cannot be used."""
    if not config.uses_tls:
        return grpc.aio.insecure_channel(config.server, options=_CHANNEL_OPTIONS)
    try:
        root = read_certificates(config.ca, "--ca") if config.ca else None
        chain, key = read_key_pair(config.cert, config.key) if config.cert else (None, None)
    except PemError as exc:
        raise ConfigError(str(exc)) from None
    credentials = grpc.ssl_channel_credentials(
        root_certificates=root, private_key=key, certificate_chain=chain
    )
    return grpc.aio.secure_channel(config.server, credentials, options=_CHANNEL_OPTIONS)
