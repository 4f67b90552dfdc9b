"""The first rows of a step's output table, as JSON, for ``legato output RUN STEP``.

The table is an Arrow IPC file (or stream) artifact. Rows are read batch by batch until
``limit`` rows are in hand; values become JSON: timestamps and dates ISO 8601, decimals
numbers, binary values ``"<N bytes>"``, NaN null."""

from __future__ import annotations

import base64
import datetime as dt
import math
from decimal import Decimal
from typing import Any

import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.ipc as ipc  # type: ignore[import-untyped]

__all__ = ["preview_rows"]


def preview_rows(data: bytes, limit: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for batch in _batches(data):
        if len(rows) >= limit:
            break
        for row in batch.slice(0, limit - len(rows)).to_pylist():
            rows.append({str(key): _json(value) for key, value in row.items()})
    return rows


def _batches(data: bytes) -> Any:
    buffer = pa.py_buffer(data)
    try:
        reader = ipc.open_file(buffer)
    except pa.ArrowInvalid:
        yield from ipc.open_stream(buffer)
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
