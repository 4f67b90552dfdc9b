"""The table target of export in-process, on SQLite and PostgreSQL: the three modes, the
table created when missing, one transaction per export, the errors a user can fix, and
effectively-once exports: the ledger that makes a retried attempt skip an export that
committed, and a replace that readers never see half done."""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from collections.abc import Callable, Sequence
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
from legato.failpoints import armed

UPSERT: dict[str, Any] = {"mode": "EXPORT_MODE_UPSERT", "keys": ["order_id"]}


def context(url: str, *, run: str, attempt: int) -> StepContext:
    return StepContext(
        pipeline="etl",
        step="load",
        run_id=run,
        attempt=attempt,
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


def export(
    url: str, source: Upstream, *, run: str | None = None, attempt: int = 1, **config: Any
) -> StepResult:
    """Export ``source`` as attempt ``attempt`` of step 'load' of run ``run`` (by default a
    run of its own, so that each call writes)."""
    settings = {"connection": "warehouse", "table": "orders", **config}
    ctx = context(url, run=run or f"run-{uuid.uuid4().hex[:8]}", attempt=attempt)
    return export_table(settings, source, ctx)


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


def table_names(url: str) -> list[str]:
    engine = engine_for(url)
    try:
        with engine.connect() as conn:
            return sorted(sa.inspect(conn).get_table_names())
    finally:
        engine.dispose()


def is_postgres(url: str) -> bool:
    return url.startswith("postgresql")


def ledger(url: str, schema: str | None = None) -> list[dict[str, Any]]:
    """The rows of the export ledger (``legato_exports``), their times checked and left out."""
    engine = engine_for(url)
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table("legato_exports", schema=schema):
                return []
            table = sa.Table("legato_exports", sa.MetaData(), schema=schema, autoload_with=conn)
            found = [dict(row._mapping) for row in conn.execute(sa.select(table))]
    finally:
        engine.dispose()
    now = dt.datetime.now(dt.UTC)
    for row in found:
        at = row.pop("exported_at")
        at = at if isinstance(at, dt.datetime) else dt.datetime.fromisoformat(at)
        assert abs(at.replace(tzinfo=dt.UTC) - now) < dt.timedelta(minutes=1), at
    return sorted(found, key=lambda row: str(row["export_key"]))


def entry(run: str, attempt: int, mode: str, rows: int, table: str = "orders") -> dict[str, Any]:
    return {
        "export_key": f"{run}:load",
        "run_id": run,
        "pipeline": "etl",
        "step": "load",
        "attempt": attempt,
        "target_table": table,
        "mode": mode,
        "row_count": rows,
    }


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
    execute(existing, "CREATE VIEW big_orders AS SELECT order_id FROM orders WHERE amount > 15")
    if is_postgres(existing):
        execute(existing, "GRANT SELECT ON orders TO PUBLIC", "COMMENT ON TABLE orders IS 'od'")
    result = export(
        existing, upstream(tmp_path, orders([7, 8], [70, 5])), mode="EXPORT_MODE_REPLACE"
    )
    assert (result.values, result.written) == ({"table": "orders", "mode": "replace", "rows": 2}, 2)
    assert rows(existing) == [
        {"order_id": 7, "amount": 70.0, "note": "kept"},
        {"order_id": 8, "amount": 5.0, "note": "kept"},
    ]
    assert [index["name"] for index in inspect(existing, "get_indexes")] == ["orders_order_id_key"]
    assert rows(existing, "big_orders") == [{"order_id": 7}]  # the view still reads the table
    assert table_names(existing) == ["legato_exports", "orders"]  # no staging table left
    if is_postgres(existing):
        assert inspect(existing, "get_table_comment") == {"text": "od"}
        engine = engine_for(existing)
        try:
            with engine.connect() as conn:
                acl = conn.execute(
                    sa.text("SELECT relacl::text FROM pg_class WHERE oid = 'orders'::regclass")
                )
                assert "=r/" in str(acl.scalar())  # PUBLIC's SELECT
        finally:
            engine.dispose()


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
    config: dict[str, Any] = {
        "table": "daily",
        "mode": "EXPORT_MODE_UPSERT",
        "keys": ["region", "day"],
    }
    export(warehouse_url, source, **config)
    once = rows(warehouse_url, "daily", order_by="total")
    export(warehouse_url, source, **config)  # a later run writes the same rows
    assert rows(warehouse_url, "daily", order_by="total") == once
    assert [row["total"] for row in once] == [1, 5, 6, 7]


def test_a_failed_export_leaves_the_table_as_it_was(
    existing: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(table_export, "BATCH_ROWS", 100)
    ids = list(range(10, 1010))
    amounts = [1.0] * 999 + [-1.0]  # the tenth batch breaks the CHECK constraint
    with pytest.raises(StepError) as caught:
        export(
            existing,
            upstream(tmp_path, orders(ids, amounts)),
            run="r",
            attempt=1,
            mode="EXPORT_MODE_REPLACE",
        )
    message = caught.value.message
    assert message.startswith("export to table 'orders' on 'warehouse' failed: ")
    assert "check constraint" in message.lower() and "\n" not in message
    assert rows(existing) == BEFORE  # neither the delete nor the nine batches stayed
    assert ledger(existing) == []  # so the next attempt writes
    export(existing, upstream(tmp_path, orders([5], [1])), run="r", attempt=2, mode="replace")
    assert rows(existing) == [{"order_id": 5, "amount": 1.0, "note": "kept"}]
    assert ledger(existing) == [entry("r", 2, "replace", 1)]


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
    assert [row["target_table"] for row in ledger(warehouse_url, "analytics")] == [
        "analytics.orders"
    ] * 2
    assert not inspect(warehouse_url, "has_table", "legato_exports")


@pytest.mark.parametrize("mode", ["append", "replace", "upsert"])
def test_a_retried_attempt_finds_its_export_committed_and_skips_it(
    warehouse_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], mode: str
) -> None:
    keys = ["order_id"] if mode == "upsert" else []
    source = upstream(tmp_path, orders([3, 4], [30, 40]))
    first = export(warehouse_url, source, run="run-7", attempt=1, mode=mode, keys=keys)
    assert ledger(warehouse_url) == [entry("run-7", 1, mode, 2)]
    # Someone writes to the table between the attempts: a second write of the same rows
    # would double them (append), undo the change (replace) or overwrite it (upsert).
    execute(
        warehouse_url,
        "UPDATE orders SET amount = 99 WHERE order_id = 3",
        "INSERT INTO orders (order_id, amount) VALUES (9, 90)",
    )
    changed = rows(warehouse_url)
    capsys.readouterr()
    again = export(warehouse_url, source, run="run-7", attempt=2, mode=mode, keys=keys)
    assert rows(warehouse_url) == changed
    assert (again.values, again.written, again.records_in) == (first.values, 2, 2)
    out = capsys.readouterr().out
    assert out.startswith(
        "export already committed by attempt 1 of this run (2 rows into orders on 'warehouse' at 20"
    ), out
    assert out.endswith(", recorded in legato_exports): skipped\n"), out
    assert ledger(warehouse_url) == [entry("run-7", 1, mode, 2)]


def test_a_new_run_of_the_step_exports_again(warehouse_url: str, tmp_path: Path) -> None:
    source = upstream(tmp_path, orders([1, 2], [10, 20]))
    export(warehouse_url, source, run="run-1")
    export(warehouse_url, source, run="run-2")  # a rerun is a new run: it writes again
    assert [row["order_id"] for row in rows(warehouse_url)] == [1, 1, 2, 2]
    assert ledger(warehouse_url) == [
        entry("run-1", 1, "append", 2),
        entry("run-2", 1, "append", 2),
    ]


def test_a_duplicate_attempt_running_at_the_same_time_writes_nothing(
    warehouse_url: str, tmp_path: Path
) -> None:
    """Two attempts of one step at once (an agent that lost its lease still running): the
    second waits on the first's ledger row (PostgreSQL) or on the database's write lock
    (SQLite), and in neither case writes the rows again."""
    url = warehouse_url if is_postgres(warehouse_url) else f"{warehouse_url}?timeout=0.5"
    source = upstream(tmp_path, orders([1, 2, 3], [10, 20, 30]))
    second: dict[str, Any] = {}

    def run_second() -> None:
        try:
            second["result"] = export(url, source, run="run-3", attempt=2)
        except StepError as exc:
            second["error"] = exc.message

    def while_first_is_uncommitted() -> None:
        if second:
            raise AssertionError("the second attempt got as far as committing")
        second["started"] = True
        thread = threading.Thread(target=run_second)
        thread.start()
        if is_postgres(url):
            wait_for_lock_wait(url)
            second["thread"] = thread
        else:
            thread.join()

    with armed("export.before_commit", while_first_is_uncommitted):
        first = export(url, source, run="run-3", attempt=1)
    if "thread" in second:
        second.pop("thread").join(timeout=30)
    assert first.written == 3
    assert [row["order_id"] for row in rows(url)] == [1, 2, 3]
    assert ledger(url) == [entry("run-3", 1, "append", 3)]
    if is_postgres(url):
        assert second["result"].values == first.values
    else:
        assert second["error"] == (
            "export to table 'orders' on 'warehouse' failed: database is locked"
        )
        third = export(url, source, run="run-3", attempt=3)  # the retry of the second
        assert third.written == 3
        assert [row["order_id"] for row in rows(url)] == [1, 2, 3]


def wait_for_lock_wait(url: str) -> None:
    """Until another session of this database waits for a lock."""
    engine = engine_for(url)
    try:
        for _ in range(500):
            with engine.connect() as conn:
                waiting = conn.execute(
                    sa.text(
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                        "AND datname = current_database()"
                    )
                ).scalar()
            if waiting:
                return
            threading.Event().wait(0.02)
        raise AssertionError("the second attempt never waited for the first's ledger row")
    finally:
        engine.dispose()


def test_readers_see_the_old_rows_or_the_new_never_a_half_replaced_table(
    existing: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(table_export, "BATCH_ROWS", 500)
    total = 20_000
    source = upstream(tmp_path, orders(range(100, 100 + total), [1.0] * total))
    seen: list[int] = []
    checked: list[str] = []
    stop = threading.Event()
    engine = engine_for(existing)

    def count() -> int:
        with engine.connect() as conn:
            return int(conn.execute(sa.text("SELECT count(*) FROM orders")).scalar_one())

    def poll() -> None:
        while not stop.is_set():
            seen.append(count())

    def at(point: str) -> Callable[[], None]:
        def check() -> None:
            assert count() == 2, point  # what is not committed is not seen
            checked.append(point)

        return check

    reader = threading.Thread(target=poll)
    reader.start()
    try:
        with (
            armed("export.staged", at("staged")),
            armed("export.before_commit", at("swapped")),
        ):
            export(existing, source, mode="replace")
        seen.append(count())
    finally:
        stop.set()
        reader.join(timeout=30)
        engine.dispose()
    assert checked == ["staged", "swapped"]
    assert set(seen) <= {2, total}, sorted(set(seen))
    assert seen[-1] == total and len(seen) > 2


def test_replace_leaves_the_live_rows_unlocked_while_it_loads(
    existing: str, tmp_path: Path
) -> None:
    if not is_postgres(existing):
        pytest.skip("SQLite has one writer at a time: there are no row locks to keep short")
    updated: list[int] = []

    def update_a_row() -> None:
        engine = engine_for(existing)
        try:
            with engine.begin() as conn:
                conn.execute(sa.text("SET LOCAL lock_timeout = '2s'"))
                done = conn.execute(sa.text("UPDATE orders SET note = 'x' WHERE order_id = 1"))
                updated.append(done.rowcount)
        finally:
            engine.dispose()

    with armed("export.staged", update_a_row):
        export(existing, upstream(tmp_path, orders([7], [70])), mode="replace")
    assert updated == [1]  # not blocked by the export's open transaction
    assert rows(existing) == [{"order_id": 7, "amount": 70.0, "note": "kept"}]


def test_a_user_who_may_not_create_the_ledger_is_told_how_to_get_one(
    warehouse_url: str, tmp_path: Path
) -> None:
    if not is_postgres(warehouse_url):
        pytest.skip("SQLite has no privileges")
    role = f"legato_loader_{uuid.uuid4().hex[:8]}"
    execute(
        warehouse_url,
        "DROP SCHEMA IF EXISTS locked CASCADE",
        "CREATE SCHEMA locked",
        "CREATE TABLE locked.orders (order_id BIGINT, amount DOUBLE PRECISION)",
        f"CREATE ROLE {role} LOGIN",
        f"GRANT USAGE ON SCHEMA locked TO {role}",
        f"GRANT SELECT, INSERT ON locked.orders TO {role}",
    )
    loader = sa.make_url(warehouse_url).set(username=role).render_as_string(False)
    try:
        with pytest.raises(StepError) as caught:
            export(loader, upstream(tmp_path, orders([1], [10])), table="locked.orders")
        assert caught.value.message == (
            "cannot create the export ledger legato_exports in schema 'locked' on "
            "'warehouse': permission denied for schema locked; create it once as a user who "
            "may (docs/execution.md, 'Table exports are effectively-once', has its CREATE "
            "TABLE) and grant this one SELECT and INSERT on it"
        )
        # The statement the documentation gives, run by someone who may.
        execute(warehouse_url, "SET search_path = locked", documented_ledger_ddl())
        execute(warehouse_url, f"GRANT SELECT, INSERT ON locked.legato_exports TO {role}")
        export(loader, upstream(tmp_path, orders([1], [10])), table="locked.orders", run="r")
        export(loader, upstream(tmp_path, orders([1], [10])), table="locked.orders", run="r")
        assert rows(warehouse_url, "locked.orders") == [{"order_id": 1, "amount": 10.0}]
        assert ledger(warehouse_url, "locked") == [entry("r", 1, "append", 1, "locked.orders")]
    finally:
        execute(warehouse_url, "DROP SCHEMA locked CASCADE", f"DROP OWNED BY {role}")
        execute(warehouse_url, f"DROP ROLE {role}")


def documented_ledger_ddl() -> str:
    """The ledger's CREATE TABLE as docs/execution.md gives it."""
    text = (Path(__file__).parents[2] / "docs" / "execution.md").read_text()
    section = text[text.index("#### Table exports are effectively-once") :]
    start = section.index("CREATE TABLE legato_exports")
    return section[start : section.index(");", start) + 1]


def test_replace_stages_columns_whose_names_need_quoting(
    warehouse_url: str, tmp_path: Path
) -> None:
    execute(
        warehouse_url,
        'CREATE TABLE "odd table" ("order_id" BIGINT, "50% off: yes" TEXT, "Case" BIGINT)',
        """INSERT INTO "odd table" VALUES (1, 'old', 0)""",
    )
    data = {"order_id": [2, 3], "50% off: yes": ["a", None], "Case": [7, 8]}
    export(warehouse_url, upstream(tmp_path, data), table="odd table", mode="replace")
    assert rows(warehouse_url, "odd table") == [
        {"order_id": 2, "50% off: yes": "a", "Case": 7},
        {"order_id": 3, "50% off: yes": None, "Case": 8},
    ]
