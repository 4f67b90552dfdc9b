"""What a step reads and writes, for lineage: a ``query`` step's SQL parsed with sqlglot in
the dialect of its connection, an ``export`` step's target.

The parse runs in the agent process, not in the step's child: it needs only the step's
spec and its connection's URL scheme (never a database), so it does not wait for the
step, and its answer cannot be spoiled by user code. The agent calls
:func:`step_lineage` in a worker thread (sqlglot is pure Python: a long statement may
take milliseconds), so the agent's event loop never waits on it.

A parse failure never fails the step: it is the lineage's ``problem``.

Datasets:

- a table is ``namespace`` = the connection's name, ``name`` = ``schema.table`` as the SQL
  names it, identifiers normalised as the dialect does (PostgreSQL folds unquoted names to
  lower case, Snowflake to upper case); a table the SQL names without a schema gets the
  dialect's default schema where there is one (:data:`DEFAULT_SCHEMAS`), else stays
  ``table``;
- a webhook is ``webhook`` + its URL without credentials, query or fragment;
- a Slack channel is ``slack`` + the channel (or the webhook's name when the step names no
  channel: the webhook's own channel).

An export's input table is the upstream step's output, not a dataset.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from legato.v1 import lineage_pb2, spec_pb2

__all__ = ["DEFAULT_SCHEMAS", "dialect_of", "lineage_of", "sql_lineage", "step_lineage"]

DIALECTS = {
    "postgres": "postgres",
    "postgresql": "postgres",
    "mysql": "mysql",
    "mariadb": "mysql",
    "sqlite": "sqlite",
    "mssql": "tsql",
    "snowflake": "snowflake",
    "bigquery": "bigquery",
    "duckdb": "duckdb",
    "redshift": "redshift",
    "oracle": "oracle",
    "trino": "trino",
    "presto": "presto",
    "clickhouse": "clickhouse",
    "databricks": "databricks",
}
"""sqlglot's dialect for each SQLAlchemy URL scheme (before ``+driver``)."""

DEFAULT_SCHEMAS = {
    "postgres": "public",
    "redshift": "public",
    "tsql": "dbo",
    "duckdb": "main",
}
"""The schema an unqualified table is in when the connection changes nothing (PostgreSQL's
default ``search_path``, SQL Server's default schema, DuckDB's)."""

_ESCAPED_COLON = re.compile(r"\\:")
_MAX_PROBLEM = 300

TABLE = lineage_pb2.DATASET_KIND_TABLE


def dialect_of(url: str) -> str:
    """sqlglot's dialect for a connection URL (``postgresql+psycopg://…`` → ``postgres``);
    ``""`` (sqlglot's generic SQL) for a scheme it does not know."""
    scheme = url.split(":", 1)[0].split("+", 1)[0].lower()
    return DIALECTS.get(scheme, "")


async def lineage_of(
    step: spec_pb2.Step, connections: Mapping[str, str]
) -> lineage_pb2.StepLineage | None:
    """:func:`step_lineage` for the agent: a query's SQL is parsed in a worker thread;
    ``None`` for kinds whose datasets the control plane knows (declared, triggers)."""
    if step.WhichOneof("kind") in ("query", "export"):
        return await asyncio.to_thread(_guarded, step, connections)
    return None


def _guarded(step: spec_pb2.Step, connections: Mapping[str, str]) -> lineage_pb2.StepLineage:
    try:
        return step_lineage(step, connections)
    except Exception as error:  # sqlglot's own bugs must not fail the step
        return lineage_pb2.StepLineage(
            problem=f"reading the step's datasets failed: {type(error).__name__}: {error}"[
                :_MAX_PROBLEM
            ]
        )


def step_lineage(step: spec_pb2.Step, connections: Mapping[str, str]) -> lineage_pb2.StepLineage:
    """What ``step`` reads and writes, from its spec; ``connections`` are the URLs of the
    connections it names (as the agent holds them)."""
    kind = step.WhichOneof("kind")
    if kind == "query":
        name = step.query.connection
        return sql_lineage(step.query.sql, name, dialect_of(connections.get(name, "")))
    if kind == "export":
        return _export_lineage(step.export, connections)
    return lineage_pb2.StepLineage()


def _export_lineage(
    export: spec_pb2.ExportStep, connections: Mapping[str, str]
) -> lineage_pb2.StepLineage:
    target = export.WhichOneof("target")
    if target == "table":
        name = export.table.table
        dialect = dialect_of(connections.get(export.table.connection, ""))
        if "." not in name and dialect in DEFAULT_SCHEMAS:
            # The export names the table as it is created (SQLAlchemy quotes what needs
            # it): only the schema the table lands in is added.
            name = f"{DEFAULT_SCHEMAS[dialect]}.{name}"
        ref = lineage_pb2.DatasetRef(namespace=export.table.connection, name=name, kind=TABLE)
    elif target == "webhook":
        ref = lineage_pb2.DatasetRef(
            namespace="webhook",
            name=public_url(export.webhook.url),
            kind=lineage_pb2.DATASET_KIND_WEBHOOK,
        )
    elif target == "slack":
        ref = lineage_pb2.DatasetRef(
            namespace="slack",
            name=export.slack.channel or export.slack.webhook,
            kind=lineage_pb2.DATASET_KIND_SLACK,
        )
    else:
        return lineage_pb2.StepLineage()
    return lineage_pb2.StepLineage(outputs=[ref])


def public_url(url: str) -> str:
    """``url`` without user, password, query or fragment: what may name a dataset."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "invalid-url"
    netloc = f"{host}:{port}" if port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def sql_lineage(sql: str, connection: str, dialect: str) -> lineage_pb2.StepLineage:
    """The tables ``sql`` reads and writes on ``connection``, parsed in ``dialect``."""
    import sqlglot
    from sqlglot import exp
    from sqlglot.errors import SqlglotError
    from sqlglot.optimizer.normalize_identifiers import normalize_identifiers

    text = _ESCAPED_COLON.sub(":", sql)
    try:
        statements = [
            normalize_identifiers(statement, dialect=dialect)
            for statement in sqlglot.parse(text, read=dialect or None)
            if statement is not None
        ]
    except SqlglotError as error:
        return lineage_pb2.StepLineage(problem=_problem(error, dialect))
    except RecursionError:
        return lineage_pb2.StepLineage(problem="the SQL is nested too deeply to parse")
    reads: dict[str, lineage_pb2.DatasetRef] = {}
    writes: dict[str, lineage_pb2.DatasetRef] = {}
    for statement in statements:
        targets = _write_targets(statement, exp)
        target_ids = {id(table) for table in targets}
        for table in targets:
            ref = _table_ref(table, connection, dialect)
            writes.setdefault(ref.name, ref)
        ctes = _cte_names(statement, exp)
        for table in statement.find_all(exp.Table):
            if id(table) in target_ids or not table.name:
                continue
            if not table.db and not table.catalog and table.name in ctes:
                continue
            ref = _table_ref(table, connection, dialect)
            reads.setdefault(ref.name, ref)
    result = lineage_pb2.StepLineage(
        inputs=[reads[name] for name in sorted(reads)],
        outputs=[writes[name] for name in sorted(writes)],
    )
    if len(statements) == 1 and isinstance(statements[0], exp.Query):
        result.columns.extend(_columns(statements[0], connection, dialect))
    return result


def _problem(error: Exception, dialect: str) -> str:
    details: list[dict[str, Any]] = list(getattr(error, "errors", None) or [])
    where = ""
    message = str(error).splitlines()[0] if str(error) else type(error).__name__
    if details:
        first = details[0]
        message = str(first.get("description") or message)
        if first.get("line"):
            where = f" at line {first['line']}, column {first.get('col')}"
    read = f"as {dialect}" if dialect else "as generic SQL"
    return f"the SQL could not be parsed {read}{where}: {message}"[:_MAX_PROBLEM]


def _write_targets(statement: Any, exp: Any) -> list[Any]:
    """The tables a statement writes: INSERT/CREATE … AS/UPDATE/DELETE/MERGE's target."""
    if isinstance(statement, exp.Insert | exp.Create | exp.Update | exp.Delete | exp.Merge):
        target = statement.this
        if isinstance(target, exp.Schema):  # INSERT INTO t (a, b) / CREATE TABLE t (a int)
            target = target.this
        if isinstance(target, exp.Table):
            return [target]
    return []


def _cte_names(statement: Any, exp: Any) -> set[str]:
    return {cte.alias_or_name for cte in statement.find_all(exp.CTE)}


def _table_name(table: Any, dialect: str) -> str:
    parts = [part for part in (table.catalog, table.db) if part]
    if not parts and dialect in DEFAULT_SCHEMAS:
        parts = [DEFAULT_SCHEMAS[dialect]]
    return ".".join([*parts, table.name])


def _table_ref(table: Any, connection: str, dialect: str) -> lineage_pb2.DatasetRef:
    return lineage_pb2.DatasetRef(
        namespace=connection, name=_table_name(table, dialect), kind=TABLE
    )


def _columns(query: Any, connection: str, dialect: str) -> Iterable[lineage_pb2.ColumnLineage]:
    """The input columns each output column of a SELECT comes from, where sqlglot can
    tell without the tables' schemas (``*`` and ambiguous columns are left out)."""
    from sqlglot import exp
    from sqlglot.errors import SqlglotError
    from sqlglot.lineage import lineage

    for column in query.named_selects:
        if column == "*":
            continue
        try:
            node = lineage(column, query, {}, dialect=dialect or None)
        except (SqlglotError, KeyError, ValueError, RecursionError):
            continue
        sources: dict[tuple[str, str], lineage_pb2.ColumnSource] = {}
        for leaf in node.walk():
            if leaf.downstream or not isinstance(leaf.expression, exp.Table):
                continue
            name = _table_name(leaf.expression, dialect)
            source_column = leaf.name.rsplit(".", 1)[-1]
            if source_column == "*":
                continue
            sources.setdefault(
                (name, source_column),
                lineage_pb2.ColumnSource(namespace=connection, name=name, column=source_column),
            )
        if sources:
            yield lineage_pb2.ColumnLineage(column=column, sources=list(sources.values()))
