"""``query``: SQL on a connection configured on the agent, with bound parameters.

Each ``:name`` in the SQL is a bind parameter — its value is sent apart from the SQL, never
formatted into it — holding the value the control plane evaluated for ``name`` from the
step's ``parameters``, else the run's param ``name``. PostgreSQL casts keep working, on a
column (``created_at::date``) as on a parameter (``:since::date``); a literal colon that
would read as a parameter is written ``\\:``. A JSON object value is bound as JSON text (so
``:filter::jsonb`` works), a list as an array.

The statement runs in one transaction, committed when it succeeds, so DML such as
``INSERT ... ON CONFLICT`` takes effect. A statement that returns rows gives the output
table, its columns typed from the values:

- integers → int64, floating point → float64, text → string, booleans → bool, dates →
  date32, timestamps → timestamp[us] (in UTC for ``timestamptz``), intervals → duration,
  bytes → binary, arrays → lists (SQLite, which has no such types, gives its integers,
  floats and text: dates as text, booleans as 0 and 1);
- NUMERIC/DECIMAL → Arrow decimal (exact: decimal128 with the precision and scale the
  column declares on PostgreSQL, else that its values need; decimal256 beyond 38 digits),
  which pandas shows as ``decimal.Decimal`` objects — cast to float in a transform for
  arithmetic with floats. A column holding NaN or infinity becomes float64;
- JSON objects, UUIDs and values Arrow cannot hold in one type (network addresses,
  ranges, SQLite's mixed columns) → string (JSON text for objects and arrays);
- a column of only NULLs (an empty result's columns, say) gets the type PostgreSQL declares
  for it, else Arrow's null type: the columns are always kept.

A statement that returns no rows gives no table: the step's values are ``{"rowcount": n}``
and its records written ``n``, when the driver knows how many rows it changed.
"""

from __future__ import annotations

import json
import re
import time
from decimal import Decimal
from typing import Any
from uuid import UUID

import pyarrow as pa  # type: ignore[import-untyped]
from sqlalchemy import CursorResult, TextClause, text

from executor.kinds.base import StepContext, StepError, StepResult
from executor.kinds.databases import transaction

__all__ = ["QueryKind"]

_BIND_BEFORE_CAST = re.compile(r"(?<![:\w\\]):(\w+)::")
"""``:name::type``: SQLAlchemy would not see ``:name`` as a parameter without help."""

_ARROW_ERRORS = (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError)

_POSTGRES_TYPES: dict[int, pa.DataType] = {
    16: pa.bool_(),
    17: pa.binary(),
    20: pa.int64(),
    21: pa.int64(),
    23: pa.int64(),
    25: pa.string(),
    700: pa.float64(),
    701: pa.float64(),
    1042: pa.string(),
    1043: pa.string(),
    1082: pa.date32(),
    1114: pa.timestamp("us"),
    1184: pa.timestamp("us", tz="UTC"),
    1186: pa.duration("us"),
}
"""Arrow types of PostgreSQL's built-in types, by OID (what a cursor's description gives)."""
_POSTGRES_NUMERIC = 1700


class QueryKind:
    name = "query"

    def run(self, config: dict[str, Any], ctx: StepContext) -> StepResult:
        connection = str(config.get("connection") or "")
        if not connection:
            raise StepError(f"query step {ctx.step!r} names no connection to run its SQL on")
        sql = config.get("sql", "")
        if not isinstance(sql, str) or not sql.strip():
            raise StepError(f"query step {ctx.step!r} has no SQL")
        statement = text(_BIND_BEFORE_CAST.sub(r":\1\\:\\:", sql))
        values = _bind_values(statement, ctx)
        url = ctx.connection(connection)
        started = time.monotonic()
        with transaction(connection, url, doing="query") as conn:
            result = conn.execute(statement, values)
            table = _table(result) if result.returns_rows else None
            rowcount = None if table is not None or result.rowcount < 0 else result.rowcount
        elapsed = f"{time.monotonic() - started:.2f}s"
        if table is not None:
            print(f"query on {connection!r} returned {_rows(table.num_rows)} in {elapsed}")
            return StepResult(table=table)
        if rowcount is None:
            print(f"query on {connection!r} ran in {elapsed}")
            return StepResult()
        print(f"query on {connection!r} changed {_rows(rowcount)} in {elapsed}")
        return StepResult(values={"rowcount": rowcount}, written=rowcount)


def _bind_values(statement: TextClause, ctx: StepContext) -> dict[str, Any]:
    """The value of each ``:name`` of ``statement``: the step's evaluated parameters first,
    then the run's params."""
    given = ctx.resolved.get("parameters") or {}
    values: dict[str, Any] = {}
    for name in statement.compile().params:
        if name in given:
            values[name] = _bindable(given[name])
        elif name in ctx.params:
            values[name] = _bindable(ctx.params[name])
        else:
            raise StepError(
                f"query step {ctx.step!r} uses :{name}, which is neither one of its "
                f"parameters nor a param of the run; add {name!r} to the step's parameters "
                f"or declare a pipeline param {name!r}"
            )
    return values


def _bindable(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, dict) else value


def _table(result: CursorResult[Any]) -> pa.Table:
    names = list(result.keys())
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        listed = ", ".join(repr(name) for name in duplicates)
        raise StepError(
            f"the query returns more than one column named {listed}; give each column "
            "its own name with AS"
        )
    declared = _declared_types(result, len(names))
    rows = result.fetchall()
    columns = [_column([row[i] for row in rows], declared[i]) for i in range(len(names))]
    return pa.Table.from_arrays(columns, names=names)


def _declared_types(result: CursorResult[Any], count: int) -> list[pa.DataType | None]:
    """The Arrow type of each column as the database declares it, when it does (only
    PostgreSQL's built-in types are known)."""
    if result.dialect.name != "postgresql" or result.cursor is None:
        return [None] * count
    types: list[pa.DataType | None] = []
    for column in result.cursor.description:  # DB-API: name, type_code, ..., precision, scale
        code = column[1]
        if code == _POSTGRES_NUMERIC:
            precision, scale = column[4], column[5]
            fits = isinstance(precision, int) and isinstance(scale, int) and precision <= 38
            types.append(pa.decimal128(precision, scale) if fits else None)
        else:
            types.append(_POSTGRES_TYPES.get(code) if isinstance(code, int) else None)
    return types


def _column(values: list[Any], declared: pa.DataType | None) -> pa.Array:
    if any(isinstance(value, dict | UUID) for value in values):
        return pa.array([_text(value) for value in values], type=pa.string())
    for kind in (declared, None) if declared is not None else (None,):
        try:
            return pa.array(values, type=kind)
        except _ARROW_ERRORS:
            continue
    if all(value is None or isinstance(value, Decimal | float | int) for value in values):
        return pa.array([None if v is None else float(v) for v in values], type=pa.float64())
    return pa.array([_text(value) for value in values], type=pa.string())


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, default=str)
    return str(value)


def _rows(count: int) -> str:
    return "1 row" if count == 1 else f"{count:,} rows"
