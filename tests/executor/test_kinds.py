"""Step kinds in-process: the registry, output conversion, JSON values, function binding."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa  # type: ignore[import-untyped]
import pytest

from executor.kinds import KINDS, StepContext, StepError, Upstream
from executor.kinds.output import MAX_VALUES_BYTES, json_values, to_output
from executor.kinds.tables import read_table, table_rows, write_table
from tests.executor.runner_support import USER_MODULES


def context(*upstreams: Upstream, params: dict[str, Any] | None = None) -> StepContext:
    return StepContext(
        pipeline="etl",
        step="clean",
        run_id="r",
        attempt=1,
        params=params or {},
        upstreams=upstreams,
        workdir=Path("."),
    )


def test_the_registry_names_each_kind_by_its_proto_field() -> None:
    assert sorted(KINDS) == ["export", "function", "query", "transform"]
    assert all(kind.name == name for name, kind in KINDS.items())


def table_of(value: Any) -> pa.Table:
    table, values = to_output(value, source="the result")
    assert table is not None and values == {}
    return table


def test_frames_and_records_become_tables() -> None:
    frame = pd.DataFrame({"a": [1, 2, 3]})
    filtered = table_of(frame[frame["a"] > 1])
    assert (filtered.num_rows, filtered.column_names) == (2, ["a"])  # no index column
    assert table_of(frame.set_index("a")).column_names == ["a"]  # a named index is data
    records = table_of([{"a": 1, "b": "x"}, {"a": 2, "b": "y"}])
    assert (records.num_rows, records.column_names) == (2, ["a", "b"])
    assert table_of([]).num_rows == 0
    assert to_output(None, source="x") == (None, {})


def test_values_are_converted_to_json() -> None:
    values: dict[Any, Any] = {
        "n": np.int64(3),
        "f": np.float32(0.5),
        "missing": float("nan"),
        "na": pd.NA,
        "when": dt.datetime(2026, 6, 12, 6, 0, tzinfo=dt.UTC),
        "day": dt.date(2026, 6, 12),
        "stamp": np.datetime64("2026-06-12T06:00:00"),
        "price": Decimal("1.25"),
        "tags": ("a", "b"),
        "array": np.array([1, 2]),
        1: "int key",
    }
    assert json_values(values, "the result") == {
        "n": 3,
        "f": 0.5,
        "missing": None,
        "na": None,
        "when": "2026-06-12T06:00:00+00:00",
        "day": "2026-06-12",
        "stamp": "2026-06-12T06:00:00",
        "price": 1.25,
        "tags": ["a", "b"],
        "array": [1, 2],
        "1": "int key",
    }
    _, values = to_output(np.float64(2.5), source="x")
    assert values == {"result": 2.5}


def test_values_that_are_not_json_are_refused_where_they_are() -> None:
    with pytest.raises(StepError, match=r"the result\['a'\]\[1\] is a object, which is not"):
        json_values({"a": [1, object()]}, "the result")
    with pytest.raises(StepError, match=r"has a key of type tuple"):
        json_values({(1, 2): 1}, "the result")
    with pytest.raises(StepError, match="return a table instead"):
        json_values({"big": "x" * MAX_VALUES_BYTES}, "the result")


def test_tables_round_trip_through_arrow_files(tmp_path: Path) -> None:
    table = pa.table({"a": [1, 2], "b": ["x", "y"]})
    columns = write_table(table, tmp_path / "t.arrow")
    assert columns == [("a", "int64"), ("b", "string")]
    assert table_rows(tmp_path / "t.arrow") == 2
    assert read_table(tmp_path / "t.arrow").equals(table)
    with (
        pa.OSFile(str(tmp_path / "s.arrow"), "wb") as sink,
        pa.ipc.new_stream(sink, table.schema) as writer,
    ):
        writer.write_table(table)
    assert table_rows(tmp_path / "s.arrow") == 2  # the stream format is read too


def test_function_arguments_come_from_args_reserved_names_and_upstreams(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(USER_MODULES))
    write_table(pa.table({"id": [1, 2, 3]}), tmp_path / "users.arrow")
    users = Upstream("users", {}, tmp_path / "users.arrow")
    settings = Upstream("settings", {"region": "eu"}, None)
    function = KINDS["function"]
    result = function.run({"function": "legato_runner_steps:join_counts"}, context(users, settings))
    assert (result.values, result.records_in, result.records_out) == (
        {"total": 3, "region": "eu"},
        3,
        None,
    )
    with pytest.raises(StepError, match="needs 'users', which the step does not provide"):
        function.run({"function": "legato_runner_steps:join_counts"}, context(settings))
    with pytest.raises(StepError, match="is a str, not something that can be called"):
        function.run({"function": "legato_runner_steps:__name__"}, context())


def test_a_builtin_callable_gets_its_args(monkeypatch: pytest.MonkeyPatch) -> None:
    result = KINDS["function"].run({"function": "builtins:dict", "args": {"a": 1}}, context())
    assert result.values == {"a": 1}
