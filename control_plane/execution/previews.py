"""The first rows of a step's output table, as JSON, for ``legato output RUN STEP``.

The table is an Arrow IPC file (or stream) artifact. Rows are read batch by batch until
``limit`` rows are in hand, through ``read_at(offset, length)``, so a preview of a large
table reads its footer and first batch, not all of it (agents write batches of at most
65,536 rows); values become JSON: timestamps and dates ISO 8601, decimals numbers, binary
values ``"<N bytes>"``, NaN null."""

from __future__ import annotations

import base64
import datetime as dt
import io
import math
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.ipc as ipc  # type: ignore[import-untyped]

__all__ = ["RangeFile", "preview_rows_at"]

READ_BUFFER = 1024 * 1024

ReadAt = Callable[[int, int], bytes]


class RangeFile(io.RawIOBase):
    """A read-only, seekable file of ``size`` bytes read through ``read_at``."""

    def __init__(self, read_at: ReadAt, size: int) -> None:
        super().__init__()
        self._read_at = read_at
        self._size = size
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        self._position = max(0, base + offset)
        return self._position

    def readinto(self, buffer: Any) -> int:
        if self._position >= self._size:
            return 0
        data = self._read_at(self._position, min(len(buffer), self._size - self._position))
        buffer[: len(data)] = data
        self._position += len(data)
        return len(data)


def preview_rows_at(read_at: ReadAt, size: int, limit: int) -> list[dict[str, Any]]:
    """The first ``limit`` rows of the table of ``size`` bytes that ``read_at`` reads."""
    source = pa.PythonFile(io.BufferedReader(RangeFile(read_at, size), READ_BUFFER), mode="r")
    return _rows(_batches(source), limit)


def _rows(batches: Any, limit: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for batch in batches:
        if len(rows) >= limit:
            break
        for row in batch.slice(0, limit - len(rows)).to_pylist():
            rows.append({str(key): _json(value) for key, value in row.items()})
    return rows


def _batches(source: Any) -> Any:
    try:
        reader = ipc.open_file(source)
    except pa.ArrowInvalid:
        if hasattr(source, "seek"):
            source.seek(0)
        yield from ipc.open_stream(source)
        return
    for i in range(reader.num_record_batches):
        yield reader.get_batch(i)


def _json(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>" if len(value) > 48 else base64.b64encode(value).decode()
    if isinstance(value, dict):
        return {str(k): _json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json(v) for v in value]
    return str(value)
