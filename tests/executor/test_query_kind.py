"""The query kind in-process, on SQLite and PostgreSQL: typed tables, bound parameters,
DML, and errors that name the connection without its password."""

from __future__ import annotations

import datetime as dt
import importlib.util
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa  # type: ignore[import-untyped]
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from executor.kinds.base import StepContext, StepError, StepResult
from executor.kinds.databases import engine_for
from executor.kinds.query import QueryKind

PSYCOPG2 = "postgresql+psycopg2" if importlib.util.find_spec("psycopg2") else None
"""psycopg2 URLs keep their driver when it is installed."""
SEED_QUERY = (
    "SELECT user_id, created_at FROM users WHERE created_at > CURRENT_DATE - INTERVAL '7 days'"
)


def context(
    url: str, *, params: dict[str, Any] | None = None, parameters: dict[str, Any] | None = None
) -> StepContext:
    return StepContext(
        pipeline="etl",
        step="extract",
        run_id="r",
        attempt=1,
        params=params or {},
        upstreams=(),
        workdir=Path("."),
        connections={"warehouse": url},
        resolved={} if parameters is None else {"parameters": parameters},
    )


def run(url: str, sql: str, **kwargs: Any) -> StepResult:
    return QueryKind().run({"connection": "warehouse", "sql": sql}, context(url, **kwargs))


def table_of(url: str, sql: str, **kwargs: Any) -> pa.Table:
    result = run(url, sql, **kwargs)
    assert result.table is not None
    return result.table


def execute(url: str, *statements: str) -> None:
    engine = engine_for(url)
    try:
        with engine.begin() as conn:
            for statement in statements:
                conn.execute(text(statement))
    finally:
        engine.dispose()


def is_postgres(url: str) -> bool:
    return url.startswith("postgresql")


@pytest.fixture
def users(warehouse_url: str) -> str:
    """The warehouse with a ``users`` table of three rows (one with NULLs)."""
    moment = "TIMESTAMPTZ" if is_postgres(warehouse_url) else "TIMESTAMP"
    execute(
        warehouse_url,
        f"CREATE TABLE users (id INTEGER, name TEXT, score DOUBLE PRECISION, active BOOLEAN, "
        f"joined DATE, seen {moment}, balance NUMERIC(10, 2))",
        "INSERT INTO users VALUES (1, 'ann', 1.5, TRUE, '2026-06-01', "
        "'2026-06-12 06:00:00+00', 10.25)",
        "INSERT INTO users VALUES (2, 'bob', NULL, FALSE, NULL, NULL, NULL)",
        "INSERT INTO users VALUES (NULL, 'cy', 2.0, TRUE, '2026-06-03', NULL, 3.10)",
    )
    return warehouse_url


def test_rows_become_a_table_typed_from_their_values(
    users: str, capsys: pytest.CaptureFixture[str]
) -> None:
    result = run(users, "SELECT id, name, score, active, joined, seen, balance FROM users")
    table = result.table
    assert table is not None and result.records_out == 3
    assert capsys.readouterr().out.startswith("query on 'warehouse' returned 3 rows in ")
    assert table.column("id").to_pylist() == [1, 2, None]  # NULL keeps the column integer
    assert table.schema.field("id").type == pa.int64()
    assert table.schema.field("name").type == pa.string()
    assert table.schema.field("score").type == pa.float64()
    if not is_postgres(users):
        return  # SQLite has no booleans, dates or decimals: it returns ints, text and floats
    assert table.schema.field("active").type == pa.bool_()
    assert table.schema.field("joined").type == pa.date32()
    assert table.schema.field("seen").type.tz is not None
    assert table.schema.field("balance").type == pa.decimal128(10, 2)
    first = table.to_pylist()[0]
    assert first["seen"] == dt.datetime(2026, 6, 12, 6, 0, tzinfo=dt.UTC)
    assert (first["joined"], first["balance"]) == (dt.date(2026, 6, 1), Decimal("10.25"))


def test_an_empty_result_keeps_its_columns(users: str) -> None:
    table = table_of(users, "SELECT id, name, seen, balance FROM users WHERE name = 'nobody'")
    assert (table.num_rows, table.column_names) == (0, ["id", "name", "seen", "balance"])
    if is_postgres(users):  # PostgreSQL declares the types of a result's columns
        assert table.schema.types == [
            pa.int64(),
            pa.string(),
            pa.timestamp("us", tz="UTC"),
            pa.decimal128(10, 2),
        ]


def test_values_without_one_arrow_type_become_text(warehouse_url: str) -> None:
    if is_postgres(warehouse_url):
        sql = (
            "SELECT '{\"a\": 1}'::jsonb AS doc, "
            "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid AS id, 'NaN'::numeric AS n"
        )
        row = table_of(warehouse_url, sql).to_pylist()[0]
        assert row["doc"] == '{"a": 1}'
        assert row["id"] == "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
        assert row["n"] != row["n"]  # NaN: a float column
    else:
        execute(warehouse_url, "CREATE TABLE t (v)", "INSERT INTO t VALUES (1), ('x')")
        assert table_of(warehouse_url, "SELECT v FROM t").column("v").to_pylist() == ["1", "x"]


def test_parameters_bind_from_resolved_values_then_from_params(users: str) -> None:
    sql = "SELECT name FROM users WHERE id >= :min_id AND name <> :skip ORDER BY id"
    table = table_of(users, sql, parameters={"min_id": 1}, params={"min_id": 99, "skip": "bob"})
    assert table.column("name").to_pylist() == ["ann"]


def test_parameter_values_are_bound_never_spliced_into_the_sql(users: str) -> None:
    hostile = "x'; DROP TABLE users; --"
    table = table_of(users, "SELECT :value AS echoed", params={"value": hostile})
    assert table.column("echoed").to_pylist() == [hostile]
    assert table_of(users, "SELECT count(*) AS n FROM users").column("n").to_pylist() == [3]


def test_a_parameter_with_no_value_is_named_with_how_to_fix_it(users: str) -> None:
    with pytest.raises(StepError) as caught:
        run(users, "SELECT * FROM users WHERE joined > :since", params={"other": 1})
    assert caught.value.message == (
        "query step 'extract' uses :since, which is neither one of its parameters nor a "
        "param of the run; add 'since' to the step's parameters or declare a pipeline "
        "param 'since'"
    )


def test_postgres_casts_and_the_seed_query_run_as_written(warehouse_url: str) -> None:
    if not is_postgres(warehouse_url):
        pytest.skip("PostgreSQL syntax")
    execute(
        warehouse_url,
        "CREATE TABLE users (user_id INTEGER, created_at TIMESTAMPTZ)",
        "INSERT INTO users VALUES (1, now() - INTERVAL '2 days'), (2, now() - INTERVAL '30 days')",
    )
    recent = table_of(warehouse_url, SEED_QUERY)
    assert recent.column("user_id").to_pylist() == [1]
    assert recent.schema.field("created_at").type.tz is not None
    sql = (
        "SELECT :days::int + 1 AS n, created_at::date = CURRENT_DATE - 2 AS two_days_ago, "
        ":since::date AS since, 'a%' LIKE :pattern AS matched FROM users WHERE user_id = 1"
    )
    row = table_of(
        warehouse_url, sql, params={"days": 7}, parameters={"since": "2026-06-12", "pattern": "a%"}
    ).to_pylist()
    assert row == [{"n": 8, "two_days_ago": True, "since": dt.date(2026, 6, 12), "matched": True}]


def test_a_statement_without_rows_reports_the_rows_it_changed(warehouse_url: str) -> None:
    execute(warehouse_url, "CREATE TABLE counts (id INTEGER PRIMARY KEY, n INTEGER)")
    inserted = run(warehouse_url, "INSERT INTO counts VALUES (1, 1), (2, 1)")
    assert (inserted.table, inserted.values, inserted.written) == (None, {"rowcount": 2}, 2)
    upsert = "INSERT INTO counts VALUES (:id, 5) ON CONFLICT (id) DO UPDATE SET n = excluded.n + 1"
    assert run(warehouse_url, upsert, params={"id": 2}).written == 1
    # Committed: another connection sees both statements' rows.
    assert table_of(warehouse_url, "SELECT id, n FROM counts ORDER BY id").to_pylist() == [
        {"id": 1, "n": 1},
        {"id": 2, "n": 6},
    ]


def test_duplicate_column_names_are_refused(users: str) -> None:
    with pytest.raises(StepError, match="more than one column named 'id'; give each column"):
        run(users, "SELECT id, id FROM users")


def test_a_sql_error_is_the_databases_message_on_one_line_without_secrets(
    warehouse_url: str,
) -> None:
    url = warehouse_url
    if is_postgres(url):  # trust auth ignores the password; the message must not show it
        url = make_url(url).set(password="Sup3rSecret").render_as_string(hide_password=False)
    with pytest.raises(StepError) as caught:
        run(url, 'SELECT *\nFROM "Sup3rSecret"\nWHERE 1 = 1')
    message = caught.value.message
    expected = 'relation "***" does not exist' if is_postgres(url) else "no such table: Sup3rSecret"
    assert message == f"query on 'warehouse' failed: {expected}"


def test_a_connection_that_cannot_be_reached_is_named_without_its_password(
    tmp_path: Path,
) -> None:
    refused = "postgresql://postgres:Sup3rSecret@127.0.0.1:1/warehouse"
    with pytest.raises(StepError) as caught:
        run(refused, "SELECT 1")
    message = caught.value.message
    assert message.startswith(
        "cannot connect to connection 'warehouse' (postgresql://postgres:***@127.0.0.1:1/"
        "warehouse): connection failed: "
    )
    assert "Sup3rSecret" not in message and "\n" not in message
    with pytest.raises(StepError, match="unable to open database file"):
        run(f"sqlite:///{tmp_path}/missing/dir/x.db", "SELECT 1")
    with pytest.raises(StepError) as caught:
        run("nosuchdb://admin:Sup3rSecret@db/x", "SELECT 1")
    assert caught.value.message.startswith(
        "cannot connect to connection 'warehouse' (nosuchdb://admin:***@db/x): "
    )
    assert "Sup3rSecret" not in caught.value.message


def test_empty_sql_and_unknown_connections_are_refused(users: str) -> None:
    with pytest.raises(StepError, match="query step 'extract' has no SQL"):
        run(users, "  \n")
    with pytest.raises(StepError, match="this agent has no connection 'other'"):
        QueryKind().run({"connection": "other", "sql": "SELECT 1"}, context(users))


@pytest.mark.parametrize(
    ("url", "driver"),
    [
        ("postgres://u:p@h/db", "postgresql+psycopg"),
        ("postgresql://u:p@h/db", "postgresql+psycopg"),
        ("postgresql+asyncpg://u:p@h/db", "postgresql+psycopg"),
        ("postgresql+psycopg2://u:p@h/db", PSYCOPG2 or "postgresql+psycopg"),
        ("sqlite:///x.db", "sqlite"),
    ],
)
def test_postgres_urls_open_with_psycopg(url: str, driver: str) -> None:
    engine = engine_for(url)
    assert engine.url.drivername == driver
    assert engine.url.password == make_url(url).password


def test_asyncpg_ssl_becomes_sslmode() -> None:
    engine = engine_for("postgresql+asyncpg://u@h/db?ssl=require")
    assert dict(engine.url.query) == {"sslmode": "require"}
