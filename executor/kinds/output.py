"""What user code returns, turned into a step's output.

- a pandas DataFrame (or Series, or Arrow table) → the output table;
- a list of dicts → the output table, one row per dict (an empty list is an empty table);
- a dict → the step's values;
- None → no output;
- anything else JSON can hold → the values ``{"result": x}``.

Values must be JSON: numpy and pandas scalars become Python numbers, datetimes and dates
ISO 8601 strings, NaN and missing values null, tuples and arrays lists. Anything else is
refused with a message naming where it is. Values are for small results: more than
:data:`MAX_VALUES_BYTES` of JSON is refused too (return a table instead).
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa  # type: ignore[import-untyped]

from executor.kinds.base import StepError

__all__ = ["MAX_VALUES_BYTES", "json_values", "to_output"]

MAX_VALUES_BYTES = 1 << 20


def to_output(value: Any, *, source: str) -> tuple[pa.Table | None, dict[str, Any]]:
    """The (table, values) that ``value`` stands for; ``source`` names it in messages,
    like ``the transform's result``."""
    if value is None:
        return None, {}
    if isinstance(value, pd.Series):
        value = value.to_frame()
    if isinstance(value, pd.DataFrame):
        return _frame_table(value, source), {}
    if isinstance(value, pa.Table):
        return value, {}
    if isinstance(value, list) and all(isinstance(item, Mapping) for item in value):
        return _frame_table(pd.DataFrame.from_records(value), source), {}
    if isinstance(value, Mapping):
        return None, json_values(value, source)
    return None, json_values({"result": value}, source)


def _frame_table(frame: pd.DataFrame, source: str) -> pa.Table:
    # A named index holds data (set_index("id")): keep it as columns. An unnamed one is
    # row numbering (often left over from a filter): drop it.
    keep_index = any(name is not None for name in frame.index.names)
    try:
        return pa.Table.from_pandas(frame, preserve_index=keep_index)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        raise StepError(f"{source} cannot be stored as an Arrow table: {exc}") from exc


def json_values(values: Mapping[Any, Any], source: str) -> dict[str, Any]:
    converted = _json(values, source)
    assert isinstance(converted, dict)
    size = len(json.dumps(converted, allow_nan=False))
    if size > MAX_VALUES_BYTES:
        raise StepError(
            f"{source} is {size} bytes of JSON values; values are for small results "
            f"(at most {MAX_VALUES_BYTES} bytes): return a table instead"
        )
    return converted


def _json(value: Any, where: str) -> Any:
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, np.datetime64):
        return _json(pd.Timestamp(value), where)
    if isinstance(value, np.timedelta64):
        return _json(pd.Timedelta(value), where)
    if isinstance(value, np.generic):
        return _json(value.item(), where)
    if isinstance(value, Decimal):
        return _json(float(value), where)
    if isinstance(value, pd.Timestamp):
        return None if pd.isna(value) else value.isoformat()
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, pd.Timedelta | dt.timedelta):
        return None if pd.isna(value) else value.total_seconds()
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str | int | float | bool | np.generic):
                raise StepError(
                    f"{where} has a key of type {type(key).__name__} ({key!r}); "
                    "keys of values must be strings"
                )
            name = str(key.item() if isinstance(key, np.generic) else key)
            out[name] = _json(item, f"{where}[{name!r}]")
        return out
    if isinstance(value, np.ndarray):
        return _json(value.tolist(), where)
    if isinstance(value, list | tuple):
        return [_json(item, f"{where}[{i}]") for i, item in enumerate(value)]
    raise StepError(
        f"{where} is a {_type_name(value)}, which is not a JSON "
        "value; return a DataFrame, a list of dicts, a dict of JSON values or a scalar"
    )


def _type_name(value: Any) -> str:
    kind = type(value)
    return (
        kind.__qualname__
        if kind.__module__ == "builtins"
        else f"{kind.__module__}.{kind.__qualname__}"
    )
