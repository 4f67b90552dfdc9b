"""The table target of ``export``: writes the input's table to a database table, once.

``table`` is ``name`` or ``schema.name`` on the connection ``connection`` configured on
the agent. The whole export is one transaction: the table is as it was when the export
fails, whatever part of the rows was sent. Modes:

- ``append`` (the default): the rows are inserted;
- ``replace``: the table's rows are replaced by the new ones, loaded into a temporary table
  first and swapped in at the end; the table itself (its columns, constraints, indexes
  and grants) is kept (:mod:`executor.kinds.table_replace` says how and why);
- ``upsert``: rows whose ``keys`` match a row of the table update it, the others are
  inserted (``INSERT ... ON CONFLICT (keys) DO UPDATE``, on PostgreSQL and SQLite). The
  keys must be unique and not null in the data, and the table needs a primary key or
  unique constraint on exactly them.

A missing table is created with the data's columns, typed from the Arrow schema (see
:func:`sql_type`); for upsert its primary key is ``keys``. An existing table must have
every column of the data (it may have more: they get their defaults). Rows are sent in
batches of :data:`BATCH_ROWS`, with NaN and NaT as NULL and tz-aware timestamps in UTC.

Effectively once
----------------
The export's transaction also records it in the export ledger, ``legato_exports`` in the
table's schema (:mod:`executor.kinds.export_ledger`), keyed by run and step. A failed
export leaves neither rows nor ledger row, so its retry writes. An attempt that finds its
key there — an earlier attempt committed, and its agent was lost before reporting it —
writes nothing and reports the rows that attempt wrote, in every mode: a stale replace or
upsert does not undo what was written since either. A new run, a rerun included, writes.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.sql.dml import Insert

from executor.kinds.base import StepContext, StepError, StepResult, Upstream
from executor.kinds.databases import connection
from executor.kinds.export_ledger import LEDGER, Entry, ensure, once
from executor.kinds.table_replace import replace_rows
from legato.failpoints import failpoint

__all__ = ["BATCH_ROWS", "export_table", "sql_type"]

BATCH_ROWS = 2_000
"""Rows per ``executemany``."""

_MODES = {
    "": "append",
    "EXPORT_MODE_UNSPECIFIED": "append",
    "EXPORT_MODE_APPEND": "append",
    "EXPORT_MODE_REPLACE": "replace",
    "EXPORT_MODE_UPSERT": "upsert",
}
_UPSERT_DIALECTS = ("postgresql", "sqlite")


@dataclass(frozen=True)
class _Target:
    connection: str
    schema: str | None
    name: str
    mode: str
    keys: tuple[str, ...]

    @property
    def label(self) -> str:
        return self.name if self.schema is None else f"{self.schema}.{self.name}"


def export_table(config: dict[str, Any], source: Upstream, ctx: StepContext) -> StepResult:
    target = _target(config, ctx)
    data = _data(source, target)
    url = ctx.connection(target.connection)
    started = time.monotonic()
    entry = Entry.of(ctx, target.label, target.mode, data.num_rows)
    with connection(target.connection, url, doing=f"export to table {target.label!r}") as conn:
        ledger = ensure(conn, target.schema, url=url, name=target.connection)
        done = once(conn, ledger, entry, lambda: _export(conn, target, data, source.step))
    if isinstance(done, Entry):
        _report_skipped(target, done)
        rows = done.rows
    else:
        failpoint("export.after_commit")
        _report(target, data.num_rows, done, time.monotonic() - started)
        rows = data.num_rows
    values = {"table": target.label, "mode": target.mode, "rows": rows}
    return StepResult(values=values, records_in=data.num_rows, written=rows)


def _export(conn: Connection, target: _Target, data: pa.Table, step: str) -> bool:
    """Write ``data`` to the target; whether the table was created."""
    table, created = _prepare(conn, target, data, step)
    if target.mode == "replace" and not created:
        replace_rows(
            conn, table, data.column_names, lambda stage: _send(conn, stage.insert(), data)
        )
    else:
        _send(conn, _insert(conn, table, target, data.column_names), data)
    return created


def _target(config: dict[str, Any], ctx: StepContext) -> _Target:
    connection = str(config.get("connection") or "")
    label = str(config.get("table") or "")
    if not connection or not label:
        raise StepError(f"export step {ctx.step!r} needs a connection and a table to write to")
    parts = label.split(".")
    if len(parts) > 2 or not all(parts):
        raise StepError(
            f"export step {ctx.step!r}: {label!r} is not a table name; write 'name' or "
            "'schema.name'"
        )
    mode = _mode(config.get("mode"), ctx)
    keys = tuple(str(key) for key in config.get("keys") or ())
    if mode == "upsert" and not keys:
        raise StepError(
            f"export step {ctx.step!r} upserts into {label!r} without keys; set keys to the "
            "columns that identify a row"
        )
    schema, name = (None, parts[0]) if len(parts) == 1 else (parts[0], parts[1])
    return _Target(connection, schema, name, mode, keys if mode == "upsert" else ())


def _mode(value: Any, ctx: StepContext) -> str:
    """``EXPORT_MODE_UPSERT`` (the proto's name, as the config holds it) or ``upsert`` →
    ``upsert``."""
    mode = str(value or "").upper()
    found = _MODES.get(mode) or _MODES.get(f"EXPORT_MODE_{mode}")
    if found is None:
        raise StepError(
            f"export step {ctx.step!r} has mode {value!r}; use append, replace or upsert"
        )
    return found


def _data(source: Upstream, target: _Target) -> pa.Table:
    """The input's table, checked for what the target needs."""
    data = source.arrow()
    if data is None:
        produced = ", ".join(repr(key) for key in source.values)
        what = f"only values ({produced}), not a table" if produced else "no table"
        raise StepError(f"step {source.step!r} produced {what} to write to table {target.label!r}")
    if data.num_columns == 0:
        raise StepError(f"step {source.step!r}'s table has no columns to write")
    if target.keys:
        _check_keys(data, target.keys, source.step)
    return data


def _check_keys(data: pa.Table, keys: tuple[str, ...], step: str) -> None:
    for key in keys:
        if key not in data.column_names:
            raise StepError(
                f"upsert key {key!r} is not a column of step {step!r}'s table "
                f"(its columns: {', '.join(data.column_names)}); set keys to columns it has"
            )
        nulls = data.column(key).null_count
        if nulls:
            raise StepError(
                f"key column {key!r} of step {step!r}'s table is null in {nulls} "
                "rows; every row needs a key to be upserted"
            )
    _check_unique_keys(data, keys, step)


def _check_unique_keys(data: pa.Table, keys: tuple[str, ...], step: str) -> None:
    try:
        counts = data.select(list(keys)).group_by(list(keys)).aggregate([([], "count_all")])
    except (pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return  # keys of a type Arrow cannot group; the database will say if they repeat
    repeated = counts.filter(pc.greater(counts["count_all"], 1))
    if repeated.num_rows:
        example = ", ".join(f"{key}={repeated[key][0].as_py()!r}" for key in keys)
        raise StepError(
            f"step {step!r}'s table has {repeated.num_rows} keys in more than one row "
            f"(e.g. {example}); upsert needs one row per key: drop the duplicates first"
        )


def _prepare(conn: Connection, target: _Target, data: pa.Table, step: str) -> tuple[sa.Table, bool]:
    """The table to write to, created when missing; whether it was created."""
    if target.mode == "upsert" and conn.dialect.name not in _UPSERT_DIALECTS:
        raise StepError(
            f"upsert into table {target.label!r} is supported on PostgreSQL and SQLite, not "
            f"{conn.dialect.name}; use mode append or replace"
        )
    inspector = sa.inspect(conn)
    if not inspector.has_table(target.name, schema=target.schema):
        table = _new_table(target, data.schema)
        table.create(conn)
        return table, True
    table = sa.Table(target.name, sa.MetaData(), schema=target.schema, autoload_with=conn)
    _check_columns(table, target, data.column_names, step)
    if target.keys:
        _check_conflict_target(inspector, target)
    return table, False


def _new_table(target: _Target, schema: pa.Schema) -> sa.Table:
    columns = [
        sa.Column(
            field.name,
            sql_type(field.type) or sa.Text(),
            primary_key=field.name in target.keys,
            autoincrement=False,
        )
        for field in schema
    ]
    return sa.Table(target.name, sa.MetaData(), *columns, schema=target.schema)


def sql_type(kind: pa.DataType) -> sa.types.TypeEngine[Any] | None:
    """The column type for values of Arrow type ``kind``; None for the types written as
    their JSON text in a TEXT column (lists, structs, maps, durations, nulls, ...)."""
    if pa.types.is_dictionary(kind):
        return sql_type(kind.value_type)
    checks: list[tuple[Any, sa.types.TypeEngine[Any]]] = [
        (pa.types.is_boolean, sa.Boolean()),
        (pa.types.is_integer, sa.BigInteger()),
        (pa.types.is_float64, sa.Double()),
        (pa.types.is_floating, sa.REAL()),
        (pa.types.is_string, sa.Text()),
        (pa.types.is_large_string, sa.Text()),
        (pa.types.is_binary, sa.LargeBinary()),
        (pa.types.is_large_binary, sa.LargeBinary()),
        (pa.types.is_fixed_size_binary, sa.LargeBinary()),
        (pa.types.is_date, sa.Date()),
        (pa.types.is_time, sa.Time()),
    ]
    for check, column_type in checks:
        if check(kind):
            return column_type
    if pa.types.is_timestamp(kind):
        return sa.DateTime(timezone=kind.tz is not None)
    if pa.types.is_decimal(kind):
        return sa.Numeric(kind.precision, kind.scale)
    return None


def _check_columns(table: sa.Table, target: _Target, names: list[str], step: str) -> None:
    missing = [name for name in names if name not in table.c]
    if not missing:
        return
    existing = {column.name.lower(): column.name for column in table.c}
    listed = ", ".join(
        repr(name)
        + (f" (the table has {existing[name.lower()]!r})" if name.lower() in existing else "")
        for name in missing
    )
    columns, them = ("column", "it") if len(missing) == 1 else ("columns", "them")
    raise StepError(
        f"table {target.label!r} on {target.connection!r} has no {columns} {listed} of step "
        f"{step!r}'s table; add {them} to the table (ALTER TABLE {target.label} ADD COLUMN "
        f"...) or leave {them} out of the data"
    )


def _check_conflict_target(inspector: sa.Inspector, target: _Target) -> None:
    """Upsert needs a primary key or a (non-partial) unique constraint on exactly the keys."""
    name, schema = target.name, target.schema
    unique: list[list[str | None]] = [
        list(inspector.get_pk_constraint(name, schema)["constrained_columns"])
    ]
    unique += [list(c["column_names"]) for c in inspector.get_unique_constraints(name, schema)]
    unique += [
        index["column_names"]
        for index in inspector.get_indexes(name, schema)
        if index["unique"]
        and not any(option.endswith("_where") for option in index.get("dialect_options", {}))
    ]
    if any(set(columns) == set(target.keys) for columns in unique):
        return
    keys = ", ".join(target.keys)
    index = f"{target.name}_{'_'.join(target.keys)}_key"
    raise StepError(
        f"table {target.label!r} on {target.connection!r} has no primary key or unique "
        f"constraint on ({keys}), which upsert needs to find existing rows; create one: "
        f"CREATE UNIQUE INDEX {index} ON {target.label} ({keys})"
    )


def _send(conn: Connection, statement: Insert, data: pa.Table) -> None:
    for rows in _batches(data):
        conn.execute(statement, rows)


def _insert(conn: Connection, table: sa.Table, target: _Target, names: list[str]) -> Insert:
    if target.mode != "upsert":
        return table.insert()
    statement: postgresql.Insert | sqlite.Insert = (
        postgresql.insert(table) if conn.dialect.name == "postgresql" else sqlite.insert(table)
    )
    keys = list(target.keys)
    updates = {name: statement.excluded[name] for name in names if name not in target.keys}
    if not updates:
        return statement.on_conflict_do_nothing(index_elements=keys)
    return statement.on_conflict_do_update(index_elements=keys, set_=updates)


def _batches(data: pa.Table) -> Iterator[list[dict[str, Any]]]:
    """The rows of ``data`` as dicts of values the drivers take, :data:`BATCH_ROWS` at a
    time."""
    names = data.column_names
    columns = [(_sendable(column), sql_type(column.type) is None) for column in data.columns]
    for offset in range(0, data.num_rows, BATCH_ROWS):
        values = [_python(column.slice(offset, BATCH_ROWS), as_json) for column, as_json in columns]
        yield [dict(zip(names, row, strict=True)) for row in zip(*values, strict=True)]


def _python(column: pa.ChunkedArray, as_json: bool) -> list[Any]:
    values: list[Any] = column.to_pylist()
    return [_json_text(value) for value in values] if as_json else values


def _sendable(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """``column`` with NaN as null, timestamps in microseconds (UTC when they have a time
    zone) and dictionary values decoded."""
    kind = column.type
    if pa.types.is_dictionary(kind):
        return _sendable(column.cast(kind.value_type))
    if pa.types.is_float16(kind):
        return _sendable(column.cast(pa.float32()))
    if pa.types.is_floating(kind):
        return pc.if_else(pc.is_nan(column), pa.scalar(None, kind), column)
    if pa.types.is_timestamp(kind):
        unit = pa.timestamp("us", tz=None if kind.tz is None else "UTC")
        return column.cast(unit, safe=False)
    if pa.types.is_time(kind):
        return column.cast(pa.time64("us"), safe=False)
    if pa.types.is_date(kind):
        return column.cast(pa.date32())
    return column


def _json_text(value: Any) -> str | None:
    return None if value is None else json.dumps(value, default=_json_default)


def _json_default(value: Any) -> Any:
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def _report_skipped(target: _Target, earlier: Entry) -> None:
    count = "1 row" if earlier.rows == 1 else f"{earlier.rows:,} rows"
    at = earlier.at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    ledger = LEDGER if target.schema is None else f"{target.schema}.{LEDGER}"
    print(
        f"export already committed by attempt {earlier.attempt} of this run ({count} into "
        f"{target.label} on {target.connection!r} at {at}, recorded in {ledger}): skipped"
    )


def _report(target: _Target, rows: int, created: bool, seconds: float) -> None:
    count = "1 row" if rows == 1 else f"{rows:,} rows"
    where = f"{target.label} on {target.connection!r}"
    done = {
        "append": f"appended {count} to {where}",
        "replace": f"replaced the rows of {where} with {count}",
        "upsert": f"upserted {count} into {where} (key {', '.join(target.keys)})",
    }[target.mode]
    print(f"{done}{' (created the table)' if created else ''} in {seconds:.2f}s")
