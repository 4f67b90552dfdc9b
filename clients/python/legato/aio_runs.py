"""Runs of the async client: :class:`AsyncRunHandle` and :class:`AsyncStepOutput`, the
coroutine versions of :class:`legato.RunHandle` and :class:`legato.StepOutput`; they
return the same :class:`legato.Run`, :class:`legato.LogLine` and DataFrames."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from legato.errors import DeadlineExceeded, RunWaitTimeout
from legato.runs import (
    LogLine,
    Run,
    StepOutputData,
    arrow_table,
    pandas_frame,
    require_pandas,
)
from legato.statuses import RunStatus
from legato.v1 import run_pb2
from legato.v1 import run_service_pb2 as runs

if TYPE_CHECKING:
    import pandas

    from legato.aio import AsyncClient

__all__ = ["AsyncRunHandle", "AsyncStepOutput"]


@dataclass(frozen=True)
class AsyncStepOutput(StepOutputData):
    """A step's output read through an :class:`AsyncClient`: as
    :class:`legato.StepOutput`, with coroutine methods."""

    client: AsyncClient = field(repr=False, compare=False)

    async def to_arrow(self) -> Any:
        _, data = await self.client.read_artifact(self.table_artifact())
        return arrow_table(data)

    async def to_pandas(self) -> pandas.DataFrame:
        """The whole table as a DataFrame (``pip install 'legato[pandas]'``)."""
        require_pandas()
        _, data = await self.client.read_artifact(self.table_artifact())
        return pandas_frame(data)

    async def read_file(self, name: str) -> bytes:
        _, data = await self.client.read_artifact(self.file_named(name).id)
        return data

    async def save(self, directory: str | Path) -> list[Path]:
        target = Path(directory)
        await asyncio.to_thread(target.mkdir, parents=True, exist_ok=True)
        saved = []
        for item in self.files:
            path = target / Path(item.name).name
            await self.client.download_artifact(item.id, path)
            saved.append(path)
        return saved


class AsyncRunHandle:
    """A run of an :class:`AsyncClient`, by id: :class:`legato.RunHandle` with
    coroutine methods (``logs`` and ``events`` are async iterators)."""

    def __init__(self, client: AsyncClient, run_id: str, *, created: bool = True) -> None:
        self.client = client
        self.id = run_id
        self.created = created

    def __repr__(self) -> str:
        return f"AsyncRunHandle({self.id!r})"

    async def get(self) -> Run:
        return Run.from_proto(await self.client.get_run(self.id))

    async def wait(
        self,
        timeout: float | None = None,  # noqa: ASYNC109 - the sync handle's argument
        *,
        check: bool = False,
    ) -> Run:
        """See :meth:`legato.RunHandle.wait`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            last: run_pb2.Run | None = None
            try:
                async for event in self.client.watch_run(
                    self.id, include_logs=False, timeout=remaining
                ):
                    if event.HasField("run"):
                        last = event.run
            except DeadlineExceeded:
                raise RunWaitTimeout(await self.get(), timeout or 0.0) from None
            run = Run.from_proto(last) if last is not None else await self.get()
            if run.ended or run.status == RunStatus.UNSPECIFIED:
                return run.check() if check else run

    async def cancel(self, reason: str = "") -> Run:
        return Run.from_proto(await self.client.cancel_run(self.id, reason=reason))

    async def rerun(
        self, *, all_steps: bool = False, latest_version: bool = False
    ) -> AsyncRunHandle:
        run = await self.client.rerun_run(
            self.id, all_steps=all_steps, latest_version=latest_version
        )
        return AsyncRunHandle(self.client, run.id)

    async def logs(
        self, step: str = "", *, attempt: int = 0, follow: bool = False
    ) -> AsyncIterator[LogLine]:
        """See :meth:`legato.RunHandle.logs`."""
        if not follow:
            async for line in self.client.get_run_logs(self.id, step=step, attempt=attempt):
                yield LogLine.from_proto(line)
            return
        async for event in self.client.watch_run(self.id, include_logs=True):
            log = event.log
            wanted = (not step or log.step == step) and (not attempt or log.attempt == attempt)
            if event.HasField("log") and wanted:
                yield LogLine.from_proto(log)

    async def output(self, step: str, *, limit: int = 20) -> AsyncStepOutput:
        response = await self.client.get_step_output(self.id, step, limit=limit)
        fields = StepOutputData.fields_from_proto(self.id, step, response)
        return AsyncStepOutput(**fields, client=self.client)

    def events(self, *, include_logs: bool = True) -> AsyncIterator[runs.WatchRunResponse]:
        return self.client.watch_run(self.id, include_logs=include_logs)
