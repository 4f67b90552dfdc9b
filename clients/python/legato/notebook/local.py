"""Steps run on this machine with the agent's runner (:class:`executor.runner.Runner`):
a child of a fork server per attempt (or a pooled worker, per the step's isolation),
its own process group, the timeout and memory limits, the same Outcome.

A notebook's kernel runs its own event loop, so the runner lives on a loop in a thread
of its own; its log lines cross to the calling thread through a queue and are printed
there (``[step] line``: stdout lines to stdout, stderr lines to stderr), so Jupyter shows
them in the cell that ran the step as they come. Interrupting the kernel cancels the
attempt (SIGTERM, grace, SIGKILL) like ``legato cancel`` on an agent."""

from __future__ import annotations

import asyncio
import queue
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from legato.notebook.results import StepResult

if TYPE_CHECKING:
    from executor.runner import Outcome, Runner, Task

__all__ = ["LocalRunner"]

GRACE_SECONDS = 5.0
"""Between SIGTERM and SIGKILL, as an agent's default ``--grace``."""

Printer = Callable[[str, str, str], None]


def print_line(step: str, stream: str, line: str) -> None:
    print(f"[{step}] {line}", file=sys.stderr if stream == "stderr" else sys.stdout, flush=True)


class LocalRunner:
    """One fork server for the steps of one call (``step.run()``, ``p.test()``); use it as
    a context manager."""

    def __init__(
        self,
        *,
        module_path: Sequence[Path | str] = (),
        grace_seconds: float = GRACE_SECONDS,
        printer: Printer | None = print_line,
    ) -> None:
        self._module_path = list(module_path)
        self._grace = grace_seconds
        self._printer = printer
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="legato-notebook-runner", daemon=True
        )
        self._runner: Runner | None = None

    def __enter__(self) -> LocalRunner:
        from executor.runner import Runner

        _quiet_structlog()
        self._thread.start()
        self._runner = Runner(grace_seconds=self._grace, module_path=self._module_path)
        self._call(self._runner.start()).result()
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self._runner is not None:
                self._call(self._runner.stop()).result()
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()

    def _call(self, coroutine: Any) -> Future[Any]:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop)

    def run(self, task: Task) -> StepResult:
        """Run ``task`` and return what it did; its lines are printed as they come, with
        the values of its connections replaced by ``***`` as an agent does."""
        from executor.masking import Masker

        mask = Masker(task.connections.values())
        runner = self._runner
        if runner is None:
            raise RuntimeError("LocalRunner is used outside its `with` block")
        lines: queue.Queue[tuple[str, str]] = queue.Queue()

        def on_log(stream: str, text: str, _time: datetime) -> None:
            lines.put((stream, mask(text)))

        begun = time.monotonic()

        async def attempt() -> Outcome:
            return await mask.outcome(await runner.run(task, on_log))

        future = self._call(attempt())
        logs: list[str] = []

        def drain(wait: float) -> None:
            try:
                stream, text = lines.get(timeout=wait)
            except queue.Empty:
                return
            while True:
                logs.append(text)
                if self._printer is not None:
                    self._printer(task.step_name, stream, text)
                try:
                    stream, text = lines.get_nowait()
                except queue.Empty:
                    return

        try:
            while not future.done():
                drain(0.05)
        except KeyboardInterrupt:
            self._loop.call_soon_threadsafe(
                runner.cancel, task.lease_id, "interrupted in the notebook"
            )
            while not future.done():
                drain(0.05)
        outcome: Outcome = future.result()
        drain(0)
        return _result(task, outcome, logs, time.monotonic() - begun)


def _quiet_structlog() -> None:
    """The runner's own info lines (fork server started, ...) are for an agent's log,
    not a notebook's cells: unless the user configured structlog, show warnings only."""
    import logging

    import structlog

    if not structlog.is_configured():
        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))


def _result(task: Task, outcome: Outcome, logs: list[str], elapsed: float) -> StepResult:
    data = None
    if outcome.table_path is not None:
        from executor.kinds.tables import read_table

        data = read_table(outcome.table_path).to_pandas()
    duration = (outcome.ended_at - outcome.started_at).total_seconds()
    return StepResult(
        step=task.step_name,
        status=outcome.status,
        data=data,
        values=dict(outcome.values),
        records_in=outcome.records_in,
        records_out=outcome.records_out,
        logs=logs,
        duration=duration if duration > 0 else elapsed,
        error=outcome.error,
        failure_kind=outcome.failure_kind or "",
    )


def workdir() -> tempfile.TemporaryDirectory[str]:
    """A work directory for one attempt, removed afterwards."""
    return tempfile.TemporaryDirectory(prefix="legato-notebook-")
