"""A step output's preview reads the table's footer and first batch, not the table."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.ipc as ipc  # type: ignore[import-untyped]

from control_plane.execution.previews import preview_rows_at
from executor.kinds.tables import write_table


def reader_of(data: bytes) -> tuple[list[int], object]:
    read: list[int] = []

    def read_at(offset: int, length: int) -> bytes:
        read.append(length)
        return data[offset : offset + length]

    return read, read_at


def test_a_preview_of_a_large_table_reads_a_small_part(tmp_path: Path) -> None:
    rows = 1_000_000
    table = pa.table({"n": pa.array(range(rows)), "s": pa.array(["x" * 20] * rows)})
    path = tmp_path / "output.arrow"
    write_table(table, path)
    data = path.read_bytes()
    read, read_at = reader_of(data)
    preview = preview_rows_at(read_at, len(data), 3)  # type: ignore[arg-type]
    assert preview == [{"n": 0, "s": "x" * 20}, {"n": 1, "s": "x" * 20}, {"n": 2, "s": "x" * 20}]
    assert len(data) > 20_000_000
    # The footer and the first batch of 65,536 rows (~2 MB), plus read-ahead: not 32 MB.
    assert sum(read) < 6 * 1024 * 1024, (sum(read), len(data))


def test_values_become_json_and_streams_are_read_too(tmp_path: Path) -> None:
    table = pa.table(
        {
            "when": [dt.datetime(2026, 12, 3, 9, 0, tzinfo=dt.UTC)],
            "price": pa.array([Decimal("1.50")], pa.decimal128(5, 2)),
            "ratio": [float("nan")],
            "blob": [b"\x00" * 100],
        }
    )
    sink = pa.BufferOutputStream()
    with ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    data = sink.getvalue().to_pybytes()
    _, read_at = reader_of(data)
    assert preview_rows_at(read_at, len(data), 20) == [  # type: ignore[arg-type]
        {"when": "2026-12-03T09:00:00+00:00", "price": 1.5, "ratio": None, "blob": "<100 bytes>"}
    ]
