"""Arrow IPC files in and out of a step.

Inputs are read memory-mapped, in the IPC *file* format, or the *stream* format when a file
holds a stream; the output is written in the file format, uncompressed (it is local and
read once)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.ipc as ipc  # type: ignore[import-untyped]

__all__ = ["read_table", "table_rows", "write_table"]


def _open(path: Path) -> ipc.RecordBatchFileReader | ipc.RecordBatchStreamReader:
    source = pa.memory_map(str(path))
    try:
        return ipc.open_file(source)
    except pa.ArrowInvalid:
        source.seek(0)
        return ipc.open_stream(source)


def read_table(path: Path) -> pa.Table:
    return _open(path).read_all()


def table_rows(path: Path) -> int:
    reader = _open(path)
    if isinstance(reader, ipc.RecordBatchFileReader):
        return sum(reader.get_batch(i).num_rows for i in range(reader.num_record_batches))
    return sum(batch.num_rows for batch in reader)


BATCH_ROWS = 65_536
"""Rows per record batch of a written table: a reader that wants the first rows (the control
plane's preview) reads one batch, not the table."""


def write_table(table: pa.Table, path: Path) -> list[tuple[str, str]]:
    """Write ``table`` to ``path``; return its columns as (name, Arrow type) pairs."""
    with pa.OSFile(str(path), "wb") as sink, ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table, max_chunksize=BATCH_ROWS)
    return [(f.name, str(f.type)) for f in table.schema]
