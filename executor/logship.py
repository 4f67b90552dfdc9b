"""Batches of a task's output lines: collected as the runner reads them, shipped every
few milliseconds or every few hundred lines, with a bounded buffer per task so a step
printing without pause never grows the agent's memory."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from datetime import datetime

from google.protobuf import timestamp_pb2

from legato.v1 import agent_pb2, run_pb2

__all__ = ["LogBatcher"]

_STREAMS = {"stdout": run_pb2.LOG_STREAM_STDOUT, "stderr": run_pb2.LOG_STREAM_STDERR}


class LogBatcher:
    def __init__(
        self,
        *,
        max_lines: int = 20_000,
        batch_lines: int = 500,
        on_batch: Callable[[], None] | None = None,
        mask: Callable[[str], str] | None = None,
    ) -> None:
        self._lines: deque[agent_pb2.TaskLogLine] = deque()
        self._max = max_lines
        self.batch_lines = batch_lines
        self.dropped = 0
        self._on_batch = on_batch
        self._mask = mask

    def add(self, stream: str, text: str, time: datetime) -> None:
        if len(self._lines) >= self._max:
            self.dropped += 1
            return
        if self._mask is not None:
            text = self._mask(text)
        stamp = timestamp_pb2.Timestamp()
        stamp.FromDatetime(time)
        self._lines.append(
            agent_pb2.TaskLogLine(
                time=stamp, stream=_STREAMS.get(stream, run_pb2.LOG_STREAM_STDOUT), text=text
            )
        )
        if len(self._lines) >= self.batch_lines and self._on_batch is not None:
            self._on_batch()

    def __len__(self) -> int:
        return len(self._lines)

    def take(self) -> tuple[list[agent_pb2.TaskLogLine], int]:
        """Up to one batch of lines, and the lines dropped since the last take."""
        count = min(len(self._lines), self.batch_lines)
        lines = [self._lines.popleft() for _ in range(count)]
        dropped, self.dropped = self.dropped, 0
        return lines, dropped
