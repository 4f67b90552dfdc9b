"""What a query's SQL reads and writes, parsed with sqlglot in its connection's dialect,
and what an export writes: the datasets the agent reports in TaskResult.lineage."""

from __future__ import annotations

import asyncio

import pytest

from executor.lineage import dialect_of, lineage_of, public_url, sql_lineage, step_lineage
from legato.v1 import lineage_pb2, spec_pb2


def _reads(sql: str, dialect: str = "postgres") -> list[str]:
    lineage = sql_lineage(sql, "wh", dialect)
    assert not lineage.problem, lineage.problem
    return [ref.name for ref in lineage.inputs]


def _writes(sql: str, dialect: str = "postgres") -> list[str]:
    return [ref.name for ref in sql_lineage(sql, "wh", dialect).outputs]


@pytest.mark.parametrize(
    ("url", "dialect"),
    [
        ("postgresql://u@h/db", "postgres"),
        ("postgres://h/db", "postgres"),
        ("postgresql+psycopg://h/db", "postgres"),
        ("mysql+pymysql://h/db", "mysql"),
        ("mariadb://h/db", "mysql"),
        ("sqlite:///x.db", "sqlite"),
        ("mssql+pyodbc://h/db", "tsql"),
        ("snowflake://acct/db", "snowflake"),
        ("bigquery://project", "bigquery"),
        ("duckdb:///x.duckdb", "duckdb"),
        ("oddball://h", ""),
    ],
)
def test_the_dialect_comes_from_the_url_scheme(url: str, dialect: str) -> None:
    assert dialect_of(url) == dialect


def test_ctes_are_not_tables_and_subqueries_are_read() -> None:
    sql = """
        WITH recent AS (SELECT id, total FROM orders WHERE created_at > :since::date)
        SELECT r.id, c.name FROM recent r JOIN sales.customers c ON c.id = r.id
        WHERE r.id IN (SELECT order_id FROM refunds)
    """
    assert _reads(sql) == ["public.orders", "public.refunds", "sales.customers"]


def test_joins_read_every_table_once() -> None:
    sql = "SELECT * FROM a JOIN b ON a.id = b.id LEFT JOIN a AS again ON again.id = b.id"
    assert _reads(sql, "sqlite") == ["a", "b"]


def test_statements_that_write_give_outputs() -> None:
    assert _writes("INSERT INTO mart.daily (d, n) SELECT d, count(*) FROM raw.events GROUP BY d")
    lineage = sql_lineage("INSERT INTO mart.daily (d, n) SELECT d, n FROM raw.events", "wh", "")
    assert [r.name for r in lineage.inputs] == ["raw.events"]
    assert [r.name for r in lineage.outputs] == ["mart.daily"]
    assert _writes("CREATE TABLE t AS SELECT a FROM s", "sqlite") == ["t"]
    assert _reads("CREATE TABLE t AS SELECT a FROM s", "sqlite") == ["s"]
    assert _writes("UPDATE t SET a = s.a FROM s WHERE t.id = s.id") == ["public.t"]
    assert _reads("UPDATE t SET a = s.a FROM s WHERE t.id = s.id") == ["public.s"]
    assert _writes("DELETE FROM t USING s WHERE t.id = s.id") == ["public.t"]
    merge = "MERGE INTO dbo.t USING s ON t.id = s.id WHEN MATCHED THEN UPDATE SET a = s.a;"
    assert _writes(merge, "tsql") == ["dbo.t"]
    assert _reads(merge, "tsql") == ["dbo.s"]


def test_identifiers_are_normalised_as_the_dialect_does() -> None:
    # PostgreSQL folds unquoted names to lower case and keeps quoted ones.
    assert _reads('SELECT * FROM "Sales"."Orders" JOIN Sales.Orders ON true') == [
        "Sales.Orders",
        "sales.orders",
    ]
    assert _reads("SELECT * FROM db.sch.tbl", "snowflake") == ["DB.SCH.TBL"]
    assert _reads("SELECT * FROM [dbo].[Orders]", "tsql") == ["dbo.orders"]
    assert _reads("SELECT * FROM `proj.ds.tbl`", "bigquery") == ["proj.ds.tbl"]


def test_unqualified_tables_get_the_default_schema_where_the_dialect_has_one() -> None:
    assert _reads("SELECT * FROM orders") == ["public.orders"]
    assert _reads("SELECT * FROM orders", "tsql") == ["dbo.orders"]
    assert _reads("SELECT * FROM orders", "duckdb") == ["main.orders"]
    assert _reads("SELECT * FROM orders", "sqlite") == ["orders"]
    assert _reads("SELECT * FROM orders", "mysql") == ["orders"]


def test_the_namespace_is_the_connection_and_the_kind_a_table() -> None:
    ref = sql_lineage("SELECT 1 FROM x.y", "shop-eu", "postgres").inputs[0]
    assert (ref.namespace, ref.name, ref.kind) == ("shop-eu", "x.y", lineage_pb2.DATASET_KIND_TABLE)


def test_columns_of_a_simple_select_name_their_sources() -> None:
    sql = (
        "SELECT o.id, o.total * 2 AS doubled, c.name, 1 AS one FROM orders o JOIN c ON c.id = o.id"
    )
    lineage = sql_lineage(sql, "wh", "postgres")
    columns = {
        c.column: [(s.namespace, s.name, s.column) for s in c.sources] for c in lineage.columns
    }
    assert columns == {
        "id": [("wh", "public.orders", "id")],
        "doubled": [("wh", "public.orders", "total")],
        "name": [("wh", "public.c", "name")],
    }  # a constant has no source
    assert not sql_lineage("SELECT * FROM orders", "wh", "postgres").columns
    assert not sql_lineage("INSERT INTO t SELECT a FROM s", "wh", "postgres").columns


def test_a_parse_error_is_a_problem_not_a_failure() -> None:
    lineage = sql_lineage("SELEC id FRM orders", "wh", "postgres")
    assert not lineage.inputs
    assert lineage.problem.startswith("the SQL could not be parsed as postgres at line 1")
    unclosed = sql_lineage("SELECT * FROM (SELECT 1", "wh", "")
    assert "as generic SQL" in unclosed.problem
    assert "Expecting )" in unclosed.problem


def test_escaped_colons_and_bind_parameters_parse() -> None:
    assert _reads(r"SELECT '10\:30' AS t, :x AS v FROM logs WHERE at > :since::timestamp") == [
        "public.logs"
    ]


def _step(**kind: object) -> spec_pb2.Step:
    return spec_pb2.Step(name="s", **kind)  # type: ignore[arg-type]


def test_exports_report_their_target_and_never_a_secret() -> None:
    table = _step(
        export=spec_pb2.ExportStep(
            input="up", table=spec_pb2.TableExport(connection="wh", table="mart_orders")
        )
    )
    got = step_lineage(table, {"wh": "postgresql://u:pw@h/db"})
    assert [(r.namespace, r.name) for r in got.outputs] == [("wh", "public.mart_orders")]
    assert not got.inputs  # the upstream step's table is not a dataset
    named = step_lineage(table, {"wh": "sqlite:///x.db"})
    assert [r.name for r in named.outputs] == ["mart_orders"]
    webhook = _step(
        export=spec_pb2.ExportStep(
            input="up",
            webhook=spec_pb2.WebhookExport(
                url="https://bob:pw@hooks.example.com:8443/in?token=t#x"
            ),
        )
    )
    ref = step_lineage(webhook, {}).outputs[0]
    assert (ref.namespace, ref.name, ref.kind) == (
        "webhook",
        "https://hooks.example.com:8443/in",
        lineage_pb2.DATASET_KIND_WEBHOOK,
    )
    slack = _step(
        export=spec_pb2.ExportStep(
            input="up", slack=spec_pb2.SlackExport(webhook="alerts", channel="#data")
        )
    )
    ref = step_lineage(slack, {"alerts": "https://hooks.slack.com/services/T/B/secret"}).outputs[0]
    assert (ref.namespace, ref.name) == ("slack", "#data")


def test_a_url_without_credentials_or_query() -> None:
    assert public_url("http://u:p@h/p?q=1") == "http://h/p"
    assert public_url("http://[::1") == "invalid-url"


def test_the_agent_parses_off_its_event_loop_and_only_for_query_and_export() -> None:
    query = _step(query=spec_pb2.QueryStep(connection="wh", sql="SELECT * FROM t"))
    got = asyncio.run(lineage_of(query, {"wh": "sqlite:///x"}))
    assert got is not None and [r.name for r in got.inputs] == ["t"]
    transform = _step(transform=spec_pb2.TransformStep(code="result = None"))
    assert asyncio.run(lineage_of(transform, {})) is None
