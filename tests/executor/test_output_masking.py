"""Masking a step's outcome at the agent: values, column names, and the text of its Arrow
table in every shape a step produces, with the file's batches, nulls and other columns
kept, and a file that holds no secret left as it was."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.ipc as ipc  # type: ignore[import-untyped]

from executor.kinds.tables import write_table
from executor.masking import Masker
from executor.runner import ColumnInfo, Outcome

SECRET = "s3cr3t-Pw-91"
MASKER = Masker([f"postgresql://app:{SECRET}@db:5432/shop", "tok-unrelated-0001"])


def write(table: pa.Table, path: Path, batch_rows: int | None = None) -> Path:
    with pa.OSFile(str(path), "wb") as sink, ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table, max_chunksize=batch_rows)
    return path


def read(path: Path) -> tuple[pa.Table, int]:
    reader = ipc.open_file(pa.memory_map(str(path)))
    return reader.read_all(), reader.num_record_batches


def test_values_are_masked_at_any_depth_keys_included() -> None:
    values = {
        "password": SECRET,
        "url": f"postgresql://app:{SECRET}@db:5432/shop",
        "nested": {"list": [f"x{SECRET}x", 1, None, True], SECRET: 2.5},
    }
    assert MASKER.value(values) == {
        "password": "***",
        "url": "***",
        "nested": {"list": ["x***x", 1, None, True], "***": 2.5},
    }
    assert Masker().value(values) is values


def test_every_text_shape_of_a_table_is_masked_and_the_rest_kept(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "who": ["alice", None, "carol", "dave"],
            "password": [SECRET, "fine", None, f"not {SECRET}"],
            "tags": pd.Categorical([SECRET, "x", SECRET, "y"]),
            "lists": [[SECRET, None], None, [], ["ok"]],
            "n": [1, 2, 3, 4],
            SECRET: [0.5, 1.5, 2.5, 3.5],
        }
    )
    table = pa.Table.from_pandas(frame, preserve_index=False)
    table = table.append_column(
        "record",
        pa.array([{"k": SECRET, "v": 1}, None, {"k": "a", "v": 2}, {"k": "b", "v": None}]),
    )
    table = table.append_column("raw", pa.array([SECRET.encode(), b"\x00\xff", None, b"ok"]))
    table = table.append_column("large", pa.array([SECRET, "a", "b", "c"], pa.large_string()))
    path = write(table, tmp_path / "output.arrow", batch_rows=3)

    assert MASKER.table(path)
    masked, batches = read(path)
    assert batches == 2  # the file's layout is kept
    assert masked.column_names == [
        "who",
        "password",
        "tags",
        "lists",
        "n",
        "***",
        "record",
        "raw",
        "large",
    ]
    assert masked.to_pydict() == {
        "who": ["alice", None, "carol", "dave"],
        "password": ["***", "fine", None, "not ***"],
        "tags": ["***", "x", "***", "y"],
        "lists": [["***", None], None, [], ["ok"]],
        "n": [1, 2, 3, 4],
        "***": [0.5, 1.5, 2.5, 3.5],
        "record": [{"k": "***", "v": 1}, None, {"k": "a", "v": 2}, {"k": "b", "v": None}],
        "raw": [b"***", b"\x00\xff", None, b"ok"],
        "large": ["***", "a", "b", "c"],
    }
    assert pa.types.is_dictionary(masked.schema.field("tags").type)
    assert SECRET not in json.dumps(json.loads(masked.schema.metadata[b"pandas"]))
    assert SECRET.encode() not in path.read_bytes()
    assert not (tmp_path / "output.arrow.masked").exists()


def test_a_table_without_secrets_is_not_written_again(tmp_path: Path) -> None:
    path = write_table_file(tmp_path, pa.table({"a": ["x", "y"], "n": [1, 2]}))
    before = path.stat()
    assert not MASKER.table(path)
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_secret_bytes_inside_numbers_change_nothing(tmp_path: Path) -> None:
    short = Masker(["abcd"])  # as a little-endian int32: 1684234849
    path = write_table_file(tmp_path, pa.table({"n": pa.array([1684234849], pa.int32())}))
    before = path.read_bytes()
    assert short.found_in(path)
    assert not short.table(path)
    assert path.read_bytes() == before
    assert not (tmp_path / "output.arrow.masked").exists()


async def test_an_outcome_is_masked_in_all_it_sends(tmp_path: Path) -> None:
    path = write_table_file(tmp_path, pa.table({SECRET: [f"a{SECRET}"]}))
    now = datetime.now(UTC)
    outcome = Outcome(
        status="succeeded",
        failure_kind=None,
        error=f"warned about {SECRET}",
        records_in=None,
        records_out=1,
        values={"p": SECRET},
        table_path=path,
        rows=1,
        columns=[ColumnInfo(SECRET, "string")],
        started_at=now,
        ended_at=now,
        max_rss_bytes=None,
    )
    masked = await MASKER.outcome(outcome)
    assert (masked.error, masked.values) == ("warned about ***", {"p": "***"})
    assert masked.columns == [ColumnInfo("***", "string")]
    assert read(path)[0].to_pydict() == {"***": ["a***"]}
    assert await Masker().outcome(outcome) is outcome


def write_table_file(tmp_path: Path, table: pa.Table) -> Path:
    path = tmp_path / "output.arrow"
    write_table(table, path)
    return path
