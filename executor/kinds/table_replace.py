"""``replace`` for the table export: new rows into a table, swapped in whole.

The rows are loaded into a temporary table (``CREATE TEMPORARY TABLE <stage> AS SELECT
<the data's columns> FROM <table> WHERE false``: the table's column types, visible to the
export's session only), then swapped in — ``DELETE FROM <table>``, ``INSERT INTO <table>
SELECT ... FROM <stage>`` — in the export's transaction, which commits them with its ledger
row (:mod:`executor.kinds.export_ledger`). Why this design:

- Readers see the old rows until the commit, then the new ones, never a part: deleted and
  inserted rows are versioned like any (on SQLite a transaction is atomic for readers).
- The long part — sending the rows, batch by batch — writes only the temporary table: the
  live rows are locked (by the DELETE, which blocks no reader) for the server-side copy at
  the end, not for the whole transfer, and a load that fails halfway never touches them.
- The table keeps its identity: columns, defaults, constraints, indexes, grants, comments,
  triggers, row-level security, owner, and the views that read it. Swapping tables by name
  (load ``orders_new``, then ``ALTER TABLE ... RENAME``) would keep only what is copied by
  hand, leave dependent views and foreign keys on the old table (whose ``DROP`` they block,
  or go with under ``CASCADE``), and take an ACCESS EXCLUSIVE lock, which waits for every
  running reader of the table while making every new one wait behind it.
- ``TRUNCATE`` instead of ``DELETE`` would take that lock too, and is not MVCC-safe: a
  repeatable-read transaction that began before it sees the table empty afterwards.

The price: rows are written twice (stage, then table), and the DELETE leaves dead rows for
(auto)vacuum, as any DELETE does. PostgreSQL needs the TEMPORARY privilege on the database
(PUBLIC has it unless revoked). The table's triggers fire for the delete and the inserts.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.ddl import ExecutableDDLElement

from legato.failpoints import failpoint

__all__ = ["replace_rows"]


def replace_rows(
    conn: Connection, table: sa.Table, names: list[str], load: Callable[[sa.Table], None]
) -> None:
    """Replace the rows of ``table`` with those ``load`` writes into the staging table it
    is given (which has the columns ``names``), in ``conn``'s transaction."""
    name = f"legato_stage_{secrets.token_hex(4)}"
    conn.execute(_CreateStage(name, sa.select(*(table.c[n] for n in names)).where(sa.false())))
    # The table's reflected column types, so values are bound as they would be for it.
    stage = sa.Table(name, sa.MetaData(), *(sa.Column(n, table.c[n].type) for n in names))
    load(stage)
    failpoint("export.staged")
    conn.execute(table.delete())
    conn.execute(table.insert().from_select(names, sa.select(*stage.c)))
    stage.drop(conn)


class _CreateStage(ExecutableDDLElement):
    """``CREATE TEMPORARY TABLE <name> AS <select>`` (SQLAlchemy 2.1 has ``CreateTableAs``;
    this project supports 2.0)."""

    inherit_cache = False

    def __init__(self, name: str, select: sa.Select[Any]) -> None:
        self.name = name
        self.select = select


@compiles(_CreateStage)
def _create_stage(element: _CreateStage, compiler: Any, **kw: Any) -> str:
    select = compiler.sql_compiler.process(element.select, literal_binds=True)
    return f"CREATE TEMPORARY TABLE {compiler.preparer.quote(element.name)} AS {select}"
