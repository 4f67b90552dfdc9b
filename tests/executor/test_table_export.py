"""The table target of export in-process, on SQLite and PostgreSQL: the three modes, the
table created when missing, one transaction per export, and the errors a user can fix."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa  # type: ignore[import-untyped]
import pytest
import sqlalchemy as sa

from executor.kinds import table_export
from executor.kinds.base import StepContext, StepError, StepResult, Upstream
from executor.kinds.databases import engine_for
from executor.kinds.table_export import export_table
from executor.kinds.tables import write_table

UPSERT = {"mode": "EXPORT_MODE_UPSERT", "keys": ["order_id"]}


def context(url: str) -> StepContext:
    return StepContext(
        pipeline="etl",
        step="load",
        run_id="r",
        attempt=1,
        params={},
        upstreams=(),
        workdir=Path("."),
        connections={"warehouse": url},
    )


def upstream(tmp_path: Path, data: pa.Table | dict[str, list[Any]]) -> Upstream:
    table = data if isinstance(data, pa.Table) else pa.table(data)
    path = tmp_path / f"clean-{len(list(tmp_path.iterdir()))}.arrow"
    write_table(table, path)
    return Upstream("clean", {}, path)


def export(url: str, source: Upstream, **config: Any) -> StepResult:
    settings = {"connection": "warehouse", "table": "orders", **config}
    return export_table(settings, source, context(url))


def execute(url: str, *statements: str) -> None:
    engine = engine_for(url)
    try:
        with engine.begin() as conn:
            for statement in statements:
                conn.execute(sa.text(statement))
    finally:
        engine.dispose()


def rows(url: str, table: str = "orders", order_by: str = "order_id") -> list[dict[str, Any]]:
    """The table's rows, read through its reflected column types."""
    schema, _, name = table.rpartition(".")
    engine = engine_for(url)
    try:
        with engine.connect() as conn:
            reflected = sa.Table(name, sa.MetaData(), schema=schema or None, autoload_with=conn)
            query = sa.select(reflected).order_by(reflected.c[order_by])
            return [dict(row._mapping) for row in conn.execute(query)]
    finally:
        engine.dispose()


def inspect(url: str, check: str, table: str = "orders") -> Any:
    engine = engine_for(url)
    try:
        with engine.connect() as conn:
            return getattr(sa.inspect(conn), check)(table)
    finally:
        engine.dispose()


def is_postgres(url: str) -> bool:
    return url.startswith("postgresql")


def orders(ids: Sequence[int | None], amounts: Sequence[float]) -> dict[str, list[Any]]:
    return {"order_id": list(ids), "amount": list(amounts)}


@pytest.fixture
def existing(warehouse_url: str) -> str:
    """The warehouse with an ``orders`` table of two rows, whose amounts must not be
    negative, and a unique index on order_id."""
    execute(
        warehouse_url,
        "CREATE TABLE orders (order_id BIGINT NOT NULL, amount DOUBLE PRECISION NOT NULL "
        "CHECK (amount >= 0), note TEXT DEFAULT 'kept')",
        "CREATE UNIQUE INDEX orders_order_id_key ON orders (order_id)",
        "INSERT INTO orders (order_id, amount) VALUES (1, 10), (2, 20)",
    )
    return warehouse_url


BEFORE = [
    {"order_id": 1, "amount": 10.0, "note": "kept"},
    {"order_id": 2, "amount": 20.0, "note": "kept"},
]


def test_a_missing_table_is_created_with_types_from_arrow(
    warehouse_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paris = dt.timezone(dt.timedelta(hours=2))
    data = pa.table(
        {
            "order_id": pa.array([1, 2], pa.int64()),
            "amount": [1.5, float("nan")],
            "customer": ["ann", None],
            "paid": [True, False],
            "at": pa.array([dt.datetime(2026, 6, 12, 8, 0, tzinfo=paris), None]).cast(
                pa.timestamp("ns", tz="Europe/Paris")
            ),
            "local": pa.array(["2026-06-12T06:00", "2026-06-13T06:00"]).cast(pa.timestamp("s")),
            "day": [dt.date(2026, 6, 12), None],
            "price": pa.array([Decimal("9.99"), Decimal("0.50")], pa.decimal128(10, 2)),
            "blob": [b"\x00\x01", None],
            "tags": [["a", "b"], []],
        }
    )
    result = export(warehouse_url, upstream(tmp_path, data))
    assert (result.values, result.written, result.records_in) == (
        {"table": "orders", "mode": "append", "rows": 2},
        2,
        2,
    )
    assert capsys.readouterr().out.startswith(
        "appended 2 rows to orders on 'warehouse' (created the table) in "
    )
    types = {column["name"]: column["type"] for column in inspect(warehouse_url, "get_columns")}
    expected = {
        "order_id": sa.BigInteger,
        "amount": sa.Double,
        "customer": sa.Text,
        "paid": sa.Boolean,
        "at": sa.DateTime,
        "local": sa.DateTime,
        "day": sa.Date,
        "price": sa.Numeric,
        "blob": sa.LargeBinary,
        "tags": sa.Text,
    }
    assert list(types) == list(expected)
    assert all(isinstance(types[name], kind) for name, kind in expected.items())
    assert (types["price"].precision, types["price"].scale) == (10, 2)
    if is_postgres(warehouse_url):
        assert (types["at"].timezone, types["local"].timezone) == (True, False)
    first, second = rows(warehouse_url)
    utc = dt.UTC if is_postgres(warehouse_url) else None  # SQLite keeps UTC without a zone
    assert first == {
        "order_id": 1,
        "amount": 1.5,
        "customer": "ann",
        "paid": True,
        "at": dt.datetime(2026, 6, 12, 6, 0, tzinfo=utc),
        "local": dt.datetime.fromisoformat("2026-06-12T06:00"),  # no time zone
        "day": dt.date(2026, 6, 12),
        "price": Decimal("9.99"),
        "blob": b"\x00\x01",
        "tags": '["a", "b"]',
    }
    assert (second["amount"], second["customer"], second["at"], second["day"]) == (None,) * 4


def test_append_adds_the_rows_to_those_there(existing: str, tmp_path: Path) -> None:
    result = export(
        existing, upstream(tmp_path, orders([3, 4], [30, 40])), mode="EXPORT_MODE_APPEND"
    )
    assert result.values == {"table": "orders", "mode": "append", "rows": 2}
    assert [row["order_id"] for row in rows(existing)] == [1, 2, 3, 4]
    assert rows(existing)[2] == {"order_id": 3, "amount": 30.0, "note": "kept"}


def test_replace_swaps_the_rows_and_keeps_the_table(existing: str, tmp_path: Path) -> None:
    result = export(existing, upstream(tmp_path, orders([7], [70])), mode="EXPORT_MODE_REPLACE")
    assert (result.values, result.written) == ({"table": "orders", "mode": "replace", "rows": 1}, 1)
    assert rows(existing) == [{"order_id": 7, "amount": 70.0, "note": "kept"}]
    assert [index["name"] for index in inspect(existing, "get_indexes")] == ["orders_order_id_key"]


def test_upsert_creates_the_table_keyed_and_updates_matching_rows(
    warehouse_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    export(warehouse_url, upstream(tmp_path, orders([1, 2, 3], [10, 20, 30])), **UPSERT)
    pk = inspect(warehouse_url, "get_pk_constraint")["constrained_columns"]
    assert pk == ["order_id"]
    capsys.readouterr()
    result = export(warehouse_url, upstream(tmp_path, orders([2, 4], [25, 40])), **UPSERT)
    assert result.values == {"table": "orders", "mode": "upsert", "rows": 2}
    assert capsys.readouterr().out.startswith(
        "upserted 2 rows into orders on 'warehouse' (key order_id) in "
    )
    assert rows(warehouse_url) == [
        {"order_id": 1, "amount": 10.0},
        {"order_id": 2, "amount": 25.0},
        {"order_id": 3, "amount": 30.0},
        {"order_id": 4, "amount": 40.0},
    ]


def test_upserting_the_same_rows_again_leaves_the_table_as_it_was(
    warehouse_url: str, tmp_path: Path
) -> None:
    execute(
        warehouse_url,
        "CREATE TABLE daily (region TEXT, day DATE, total BIGINT, UNIQUE (day, region))",
        "INSERT INTO daily VALUES ('us', '2026-06-10', 1)",
    )
    data = {
        "region": ["eu", "us", "eu"],
        "day": [dt.date(2026, 6, 11), dt.date(2026, 6, 11), dt.date(2026, 6, 12)],
        "total": [5, 6, 7],
    }
    source = upstream(tmp_path, data)
    config = {"table": "daily", "mode": "EXPORT_MODE_UPSERT", "keys": ["region", "day"]}
    export(warehouse_url, source, **config)
    once = rows(warehouse_url, "daily", order_by="total")
    export(warehouse_url, source, **config)  # a retried attempt
    assert rows(warehouse_url, "daily", order_by="total") == once
    assert [row["total"] for row in once] == [1, 5, 6, 7]


def test_a_failed_export_leaves_the_table_as_it_was(
    existing: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(table_export, "BATCH_ROWS", 100)
    ids = list(range(10, 1010))
    amounts = [1.0] * 999 + [-1.0]  # the tenth batch breaks the CHECK constraint
    with pytest.raises(StepError) as caught:
        export(existing, upstream(tmp_path, orders(ids, amounts)), mode="EXPORT_MODE_REPLACE")
    message = caught.value.message
    assert message.startswith("export to table 'orders' on 'warehouse' failed: ")
    assert "check constraint" in message.lower() and "\n" not in message
    assert rows(existing) == BEFORE  # neither the delete nor the nine batches stayed


def test_a_failed_export_into_a_new_table_leaves_no_table(
    warehouse_url: str, tmp_path: Path
) -> None:
    too_big = pa.table({"order_id": pa.array([1, 2**63 + 5], pa.uint64())})
    with pytest.raises(StepError, match="export to table 'orders' on 'warehouse' failed: "):
        export(warehouse_url, upstream(tmp_path, too_big))
    assert not inspect(warehouse_url, "has_table")


def test_data_columns_the_table_lacks_are_named(existing: str, tmp_path: Path) -> None:
    data = {**orders([3], [30]), "discount": [0.1], "NOTE": ["x"]}
    with pytest.raises(StepError) as caught:
        export(existing, upstream(tmp_path, data))
    assert caught.value.message == (
        "table 'orders' on 'warehouse' has no columns 'discount', 'NOTE' (the table has "
        "'note') of step 'clean''s table; add them to the table (ALTER TABLE orders ADD "
        "COLUMN ...) or leave them out of the data"
    )
    assert rows(existing) == BEFORE


def test_upsert_needs_a_unique_constraint_on_the_keys(warehouse_url: str, tmp_path: Path) -> None:
    execute(warehouse_url, "CREATE TABLE orders (order_id BIGINT, amount DOUBLE PRECISION)")
    with pytest.raises(StepError) as caught:
        export(warehouse_url, upstream(tmp_path, orders([1], [10])), **UPSERT)
    assert caught.value.message == (
        "table 'orders' on 'warehouse' has no primary key or unique constraint on (order_id), "
        "which upsert needs to find existing rows; create one: CREATE UNIQUE INDEX "
        "orders_order_id_key ON orders (order_id)"
    )
    execute(warehouse_url, "CREATE UNIQUE INDEX orders_order_id_key ON orders (order_id)")
    export(warehouse_url, upstream(tmp_path, orders([1], [10])), **UPSERT)
    assert rows(warehouse_url) == [{"order_id": 1, "amount": 10.0}]


def test_upsert_keys_must_be_columns_present_and_unique(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/checks.db"
    with pytest.raises(StepError, match=r"upsert key 'order_id' is not a column of step 'clean'"):
        export(url, upstream(tmp_path, {"id": [1]}), **UPSERT)
    with pytest.raises(StepError, match=r"'order_id' of step 'clean''s table is null in 1 rows"):
        export(url, upstream(tmp_path, orders([1, None], [1, 2])), **UPSERT)
    with pytest.raises(StepError, match=r"has 1 keys in more than one row \(e.g. order_id=2\)"):
        export(url, upstream(tmp_path, orders([1, 2, 2], [1, 2, 3])), **UPSERT)
    with pytest.raises(StepError, match="upserts into 'orders' without keys"):
        export(url, upstream(tmp_path, orders([1], [1])), mode="EXPORT_MODE_UPSERT")
    with pytest.raises(StepError, match="has mode 'EXPORT_MODE_MERGE'; use append, replace"):
        export(url, upstream(tmp_path, orders([1], [1])), mode="EXPORT_MODE_MERGE")
    with pytest.raises(StepError, match=r"'a\.b\.c' is not a table name"):
        export(url, upstream(tmp_path, orders([1], [1])), table="a.b.c")


def test_an_upstream_without_a_table_is_refused(tmp_path: Path) -> None:
    source = Upstream("clean", {"count": 3}, None)
    with pytest.raises(StepError) as caught:
        export(f"sqlite:///{tmp_path}/x.db", source)
    assert caught.value.message == (
        "step 'clean' produced only values ('count'), not a table to write to table 'orders'"
    )


def test_a_schema_qualified_table_on_postgres(warehouse_url: str, tmp_path: Path) -> None:
    if not is_postgres(warehouse_url):
        pytest.skip("SQLite has no schemas")
    execute(warehouse_url, "DROP SCHEMA IF EXISTS analytics CASCADE", "CREATE SCHEMA analytics")
    config = {"table": "analytics.orders", **UPSERT}
    export(warehouse_url, upstream(tmp_path, orders([1, 2], [10, 20])), **config)
    result = export(warehouse_url, upstream(tmp_path, orders([2], [21])), **config)
    assert result.values["table"] == "analytics.orders"
    assert rows(warehouse_url, "analytics.orders") == [
        {"order_id": 1, "amount": 10.0},
        {"order_id": 2, "amount": 21.0},
    ]
    assert not inspect(warehouse_url, "has_table")  # nothing written to public.orders
