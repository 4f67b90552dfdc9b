"""Reading an attempt's pipes: stdout and stderr as lines, the result as one document.

The readers never stop reading, whatever the consumer does: each chunk is split into lines
and handed to the synchronous ``on_log`` callback at once, so memory is bounded by the pipe
buffer and one partial line (at most :data:`MAX_LINE` bytes; the rest of a longer line is
dropped and counted in a truncation marker), and a step printing without pause is never
blocked by the runner.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
from collections.abc import Callable
from datetime import UTC, datetime

import structlog

__all__ = ["MAX_LINE", "BlobReader", "LineReader", "LineSplitter", "connect", "open_pipes"]

log = structlog.get_logger("legato.runner")

MAX_LINE = 16 * 1024
PIPE_SIZE = 1 << 20  # absorbs bursts; the default limit for unprivileged processes

LogSink = Callable[[str, str, datetime], None]


def open_pipes(count: int) -> tuple[list[int], list[int]]:
    """``count`` pipes: their read ends and their write ends (all or none)."""
    read_ends: list[int] = []
    write_ends: list[int] = []
    try:
        for _ in range(count):
            read_end, write_end = os.pipe()
            read_ends.append(read_end)
            write_ends.append(write_end)
            with contextlib.suppress(OSError):
                fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
    except OSError:
        for fd in read_ends + write_ends:
            os.close(fd)
        raise
    return read_ends, write_ends


class LineSplitter:
    """Bytes in, lines out (without their newline), each at most MAX_LINE bytes."""

    def __init__(self, stream: str, sink: LogSink) -> None:
        self.stream = stream
        self._sink = sink
        self._partial = bytearray()
        self._dropped = 0
        self._failed = False

    def feed(self, data: bytes, now: datetime) -> None:
        *lines, rest = data.split(b"\n")
        for line in lines:
            if not self._partial and not self._dropped and len(line) <= MAX_LINE:
                self._emit(line.decode("utf-8", "replace"), now)
            else:
                self._append(line)
                self._flush(now)
        self._append(rest)

    def close(self, now: datetime) -> None:
        """Flush a last line that has no newline."""
        if self._partial or self._dropped:
            self._flush(now)

    def _append(self, chunk: bytes) -> None:
        room = MAX_LINE - len(self._partial)
        if len(chunk) <= room:
            self._partial += chunk
        else:
            self._partial += chunk[:room]
            self._dropped += len(chunk) - room

    def _flush(self, now: datetime) -> None:
        text = self._partial.decode("utf-8", "replace")
        if self._dropped:
            total = len(self._partial) + self._dropped
            text += f" … [line truncated to {MAX_LINE} of its {total} bytes]"
        self._partial.clear()
        self._dropped = 0
        self._emit(text, now)

    def _emit(self, text: str, now: datetime) -> None:
        if text.endswith("\r"):
            text = text[:-1]
        try:
            self._sink(self.stream, text, now)
        except Exception:
            if not self._failed:  # keep draining; say so once
                self._failed = True
                log.exception("log_callback_failed", stream=self.stream)


class _Reader(asyncio.Protocol):
    def __init__(self) -> None:
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class LineReader(_Reader):
    def __init__(self, stream: str, sink: LogSink) -> None:
        super().__init__()
        self.lines = LineSplitter(stream, sink)
        self._flushed = False

    def data_received(self, data: bytes) -> None:
        self.lines.feed(data, datetime.now(UTC))

    def connection_lost(self, exc: Exception | None) -> None:
        self._flush()
        super().connection_lost(exc)

    def close(self) -> None:
        """Stop reading and flush the last partial line now: no line is delivered after."""
        super().close()
        self._flush()

    def _flush(self) -> None:
        if not self._flushed:
            self._flushed = True
            self.lines.close(datetime.now(UTC))


class BlobReader(_Reader):
    """Collects everything up to ``limit`` bytes; ``overflow`` says when there was more."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.data = bytearray()
        self.overflow = False

    def data_received(self, data: bytes) -> None:
        if len(self.data) + len(data) > self.limit:
            self.overflow = True
        else:
            self.data += data


async def connect(fd: int, reader: _Reader) -> None:
    """Read ``fd`` (which the reader's transport then owns) into ``reader``."""
    loop = asyncio.get_running_loop()
    pipe = os.fdopen(fd, "rb", buffering=0)
    try:
        await loop.connect_read_pipe(lambda: reader, pipe)
    except BaseException:
        pipe.close()
        raise
