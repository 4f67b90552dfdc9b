"""legato.v1.RunService."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC
from typing import Any

import grpc
from google.protobuf import json_format

from control_plane.api.bounded import bounded_items
from control_plane.api.context import actor_from
from control_plane.api.run_convert import (
    backfill_message,
    log_message,
    notification_message,
    run_message,
    step_message,
    struct,
    trigger_kind_name,
)
from control_plane.errors import FieldViolation, InvalidArgument, NotFound, Unimplemented
from control_plane.execution.artifacts import ArtifactStore
from control_plane.execution.previews import preview_rows_at
from control_plane.execution.runs import Runs, TriggerSpec
from control_plane.execution.signals import Signals
from control_plane.execution.test_runs import GivenInput, TestRuns
from control_plane.notifications.listing import list_notifications
from control_plane.quoting import quote
from control_plane.scheduling.backfills import Backfills
from control_plane.statuses import RUN_TERMINAL
from control_plane.store.db import Database
from control_plane.store.steps import StepState
from legato.v1 import run_pb2, run_service_pb2_grpc
from legato.v1 import run_service_pb2 as pb

__all__ = ["RunServicer"]

Context = grpc.aio.ServicerContext[Any, Any]
WATCH_POLL_SECONDS = 1.0
# A follower woken all the time still compares the whole run this often.
WATCH_FULL_READ_SECONDS = 5.0
# How long a follower waits after a wake-up for more changes to read with it.
WATCH_COALESCE_SECONDS = 0.05
WATCH_LOG_BATCH = 200
WATCH_BATCH_BYTES = 256 * 1024
MAX_PREVIEW_ROWS = 1000


class RunServicer(run_service_pb2_grpc.RunServiceServicer):
    def __init__(
        self,
        runs: Runs,
        signals: Signals,
        db: Database,
        artifacts: ArtifactStore,
        backfills: Backfills,
        tests: TestRuns | None = None,
    ) -> None:
        self._tests = tests
        self._artifacts = artifacts
        self._backfills = backfills
        self._runs = runs
        self._signals = signals
        self._db = db

    async def TriggerRun(
        self, request: pb.TriggerRunRequest, context: Context
    ) -> pb.TriggerRunResponse:
        kind = request.kind or run_pb2.TRIGGER_KIND_API
        if kind not in (run_pb2.TRIGGER_KIND_API, run_pb2.TRIGGER_KIND_MANUAL):
            raise InvalidArgument(
                f"kind {trigger_kind_name(kind)} cannot be set by a caller; use manual or api",
                reason="INVALID_TRIGGER_KIND",
            )
        view, created = await self._runs.trigger(
            request.pipeline,
            version=request.version,
            params=request.params,
            trigger=TriggerSpec(kind=trigger_kind_name(kind)),
            actor=actor_from(context, request.request_id),
        )
        return pb.TriggerRunResponse(run=run_message(view.run, view), created=created)

    async def TestStep(self, request: pb.TestStepRequest, context: Context) -> pb.TestStepResponse:
        if self._tests is None:
            raise Unimplemented("this control plane was started without test runs")
        view = await self._tests.test_step(
            request.spec,
            request.step,
            params=request.params,
            agent=request.agent,
            inputs=[
                GivenInput(i.step, i.table, json_format.MessageToDict(i.values))
                for i in request.inputs
            ],
            actor=actor_from(context, request.request_id),
        )
        return pb.TestStepResponse(run=run_message(view.run, view))

    async def GetRun(self, request: pb.GetRunRequest, context: Context) -> pb.GetRunResponse:
        view = await self._runs.get(request.id)
        return pb.GetRunResponse(run=run_message(view.run, view))

    async def ListRuns(self, request: pb.ListRunsRequest, context: Context) -> pb.ListRunsResponse:
        page = await self._runs.list_runs(
            pipeline=request.pipeline,
            statuses=[
                run_pb2.RunStatus.Name(s).removeprefix("RUN_STATUS_").lower()
                for s in request.statuses
            ],
            triggers=[trigger_kind_name(t) for t in request.triggers],
            since=request.since.ToDatetime(tzinfo=UTC) if request.HasField("since") else None,
            page_size=request.page_size,
            page_token=request.page_token,
            backfill_id=request.backfill_id,
            include_tests=request.include_tests,
        )
        runs, next_token = bounded_items(page, run_message)
        return pb.ListRunsResponse(runs=runs, next_page_token=next_token)

    async def CancelRun(
        self, request: pb.CancelRunRequest, context: Context
    ) -> pb.CancelRunResponse:
        view = await self._runs.cancel(
            request.id, request.reason, actor_from(context, request.request_id)
        )
        return pb.CancelRunResponse(run=run_message(view.run, view))

    async def RerunRun(self, request: pb.RerunRunRequest, context: Context) -> pb.RerunRunResponse:
        view = await self._runs.rerun(
            request.id,
            all_steps=request.all_steps,
            latest_version=request.latest_version,
            actor=actor_from(context, request.request_id),
        )
        return pb.RerunRunResponse(run=run_message(view.run, view))

    async def GetRunLogs(
        self, request: pb.GetRunLogsRequest, context: Context
    ) -> pb.GetRunLogsResponse:
        page = await self._runs.logs(
            request.run_id,
            step=request.step,
            attempt=request.attempt,
            page_size=request.page_size,
            page_token=request.page_token,
        )
        lines, next_token = bounded_items(page, log_message)
        return pb.GetRunLogsResponse(lines=lines, next_page_token=next_token)

    async def ListNotifications(
        self, request: pb.ListNotificationsRequest, context: Context
    ) -> pb.ListNotificationsResponse:
        page = await list_notifications(
            self._db,
            run_id=request.run_id,
            page_size=request.page_size,
            page_token=request.page_token,
        )
        items, next_token = bounded_items(page, notification_message)
        return pb.ListNotificationsResponse(notifications=items, next_page_token=next_token)

    async def WatchRun(
        self, request: pb.WatchRunRequest, context: Context
    ) -> AsyncIterator[pb.WatchRunResponse]:
        """The run first, then step changes and log lines as they happen; the stream ends
        once the run has ended and every log line was sent."""
        with self._signals.watch(request.id) as changed:
            view = await self._runs.get(request.id)
            yield pb.WatchRunResponse(run=run_message(view.run, view))
            sent_steps = {s.name: _step_key(s) for s in view.steps}
            status = view.run.status
            seq = request.after_seq
            full_read = time.monotonic() + WATCH_FULL_READ_SECONDS
            while True:
                if request.include_logs:
                    async for line in self._logs_after(request.id, seq):
                        seq = line.seq
                        yield pb.WatchRunResponse(log=line)
                if status in RUN_TERMINAL:
                    return
                woke = True
                try:
                    async with asyncio.timeout(WATCH_POLL_SECONDS):
                        await changed.wait()
                    # Let the changes of the next moments join this one: a follower of a
                    # busy run reads once per batch of changes, not once per change.
                    await asyncio.sleep(WATCH_COALESCE_SECONDS)
                except TimeoutError:
                    woke = False
                # The steps the wake-ups named: only their rows are read, so a follower
                # costs what changed, not the run's size. Signals are hints: when they
                # could not name the steps, when none came for a poll interval, and at
                # least every WATCH_FULL_READ_SECONDS, the whole run is read and compared.
                named = changed.take()
                if named is None or not woke or time.monotonic() >= full_read:
                    named = None
                    full_read = time.monotonic() + WATCH_FULL_READ_SECONDS
                view = await self._runs.get(request.id, steps=named)
                for step in view.steps:
                    key = _step_key(step)
                    if sent_steps.get(step.name) != key:
                        sent_steps[step.name] = key
                        yield pb.WatchRunResponse(
                            step=step_message(step, view.attempts.get(step.id, []))
                        )
                if view.run.status != status:
                    status = view.run.status
                    if status not in RUN_TERMINAL:
                        yield pb.WatchRunResponse(run=run_message(view.run))
                    else:
                        if request.include_logs:
                            async for line in self._logs_after(request.id, seq):
                                seq = line.seq
                                yield pb.WatchRunResponse(log=line)
                        if named is not None:  # the last message is the whole run
                            view = await self._runs.get(request.id)
                        yield pb.WatchRunResponse(run=run_message(view.run, view))
                        return

    async def _logs_after(self, run_id: str, seq: int) -> AsyncIterator[run_pb2.LogLine]:
        while True:
            lines, more = await self._log_batch(run_id, seq)
            for line in lines:
                seq = line.seq
                yield line
            if not more:
                return

    async def _log_batch(self, run_id: str, seq: int) -> tuple[list[run_pb2.LogLine], bool]:
        """The lines after ``seq``: at most WATCH_LOG_BATCH of them and about
        WATCH_BATCH_BYTES, as messages (what a watcher that stops reading holds), and
        whether more may follow."""
        async with self._db.read() as session:
            rows = await self._runs.log_lines(session, run_id, after=seq, limit=WATCH_LOG_BATCH)
        lines: list[run_pb2.LogLine] = []
        size = 0
        for row in rows:
            if size >= WATCH_BATCH_BYTES:
                return lines, True
            line = log_message(row)
            size += line.ByteSize()
            lines.append(line)
        return lines, len(rows) == WATCH_LOG_BATCH

    async def GetStepOutput(
        self, request: pb.GetStepOutputRequest, context: Context
    ) -> pb.GetStepOutputResponse:
        if request.limit > MAX_PREVIEW_ROWS:
            raise InvalidArgument(
                f"limit {request.limit} is more than {MAX_PREVIEW_ROWS} rows; a preview is for "
                "reading, download the artifact for the whole table",
                reason="LIMIT_TOO_LARGE",
                violations=[FieldViolation("limit", f"at most {MAX_PREVIEW_ROWS}")],
            )
        view = await self._runs.get(request.run_id)
        step = next((s for s in view.steps if s.name == request.step), None)
        if step is None:
            names = ", ".join(s.name for s in view.steps)
            raise NotFound(
                f"run {quote(request.run_id)} has no step {quote(request.step)}; its steps "
                f"are {names}",
                reason="STEP_NOT_FOUND",
                metadata={"run_id": request.run_id, "step": request.step},
            )
        message = step_message(step, view.attempts.get(step.id, []))
        response = pb.GetStepOutputResponse(summary=message.output)
        artifact_id = message.output.artifact_id
        if artifact_id:
            info = await self._artifacts.describe(artifact_id)
            loop = asyncio.get_running_loop()

            def read_at(offset: int, length: int) -> bytes:
                # From the worker thread the preview runs in, on this call's event loop.
                future = asyncio.run_coroutine_threadsafe(
                    self._artifacts.read_range(artifact_id, offset, length), loop
                )
                return future.result(timeout=60)

            rows = await asyncio.to_thread(
                preview_rows_at, read_at, info.size_bytes, request.limit or 20
            )
            response.rows.extend(struct(row) for row in rows)
        return response

    async def CreateBackfill(
        self, request: pb.CreateBackfillRequest, context: Context
    ) -> pb.CreateBackfillResponse:
        missing = [f for f in ("start_time", "end_time") if not request.HasField(f)]
        if missing:
            raise InvalidArgument(
                f"a backfill needs {' and '.join(missing)}",
                reason="INVALID_RANGE",
                violations=[FieldViolation(f, "required") for f in missing],
            )
        view, times = await self._backfills.create(
            request.pipeline,
            request.start_time.ToDatetime(tzinfo=UTC),
            request.end_time.ToDatetime(tzinfo=UTC),
            dry_run=request.dry_run,
            only_missing=request.only_missing,
            actor=actor_from(context, request.request_id),
        )
        response = pb.CreateBackfillResponse()
        for fire in times:
            response.logical_times.add().FromDatetime(fire.instant)
        if view is not None:
            response.backfill.CopyFrom(backfill_message(view))
        return response

    async def CancelBackfill(
        self, request: pb.CancelBackfillRequest, context: Context
    ) -> pb.CancelBackfillResponse:
        view = await self._backfills.cancel(request.id, actor_from(context, request.request_id))
        return pb.CancelBackfillResponse(backfill=backfill_message(view))

    async def GetBackfill(
        self, request: pb.GetBackfillRequest, context: Context
    ) -> pb.GetBackfillResponse:
        return pb.GetBackfillResponse(
            backfill=backfill_message(await self._backfills.get(request.id))
        )


def _step_key(step: StepState) -> tuple[str, int, str, str]:
    return (step.status, step.attempt, step.waiting_reason, step.agent)
