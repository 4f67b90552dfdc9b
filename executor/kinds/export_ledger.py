"""The export ledger: which table exports have committed, kept in the database they wrote.

Execution is at-least-once: an attempt whose transaction committed may still run again,
when its agent was lost before the result reached the control plane. So a table export
records itself in the table ``legato_exports``, in the same schema as the table it writes
and in the same transaction as its rows::

    CREATE TABLE legato_exports (
        export_key   VARCHAR(255) PRIMARY KEY,  -- '<run id>:<step>'
        run_id       TEXT NOT NULL,
        pipeline     TEXT NOT NULL,
        step         TEXT NOT NULL,
        attempt      INTEGER NOT NULL,          -- the attempt that committed
        target_table TEXT NOT NULL,             -- as the step names it: name or schema.name
        mode         TEXT NOT NULL,             -- append, replace or upsert
        row_count    BIGINT NOT NULL,
        exported_at  TIMESTAMP WITH TIME ZONE NOT NULL
    )

The key leaves the attempt out, so every attempt of a step in a run has the same one.
:func:`once` runs an export's writes in one transaction that first looks the key up — an
earlier attempt committed: nothing is written — and then inserts it, so the ledger row
commits with the rows or not at all. Two attempts running at once (an agent that lost its
lease still running) both insert the key: on PostgreSQL the second waits for the first
transaction and, when it committed, fails on the primary key, which :func:`once` reads as
"already committed"; SQLite has one writer at a time, and the second attempt fails on its
busy timeout (``database is locked``) and is retried like any failed attempt.

The ledger is created the first time an export writes to a schema, in a transaction of its
own (committed even when the export then fails: an empty ledger does no harm); a user who
may not create tables there has it created once by someone who may, with the DDL above.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from executor.kinds.base import StepContext, StepError
from executor.kinds.databases import reason
from legato.failpoints import failpoint

__all__ = ["LEDGER", "Entry", "ensure", "ledger_table", "once"]

LEDGER = "legato_exports"

T = TypeVar("T")


@dataclass(frozen=True)
class Entry:
    """One committed export, as the ledger holds it."""

    key: str
    run_id: str
    pipeline: str
    step: str
    attempt: int
    target: str
    mode: str
    rows: int
    at: dt.datetime

    @classmethod
    def of(cls, ctx: StepContext, target: str, mode: str, rows: int) -> Entry:
        """The entry this attempt of ``ctx`` writes when it exports ``rows`` rows."""
        return cls(
            key=f"{ctx.run_id}:{ctx.step}",
            run_id=ctx.run_id,
            pipeline=ctx.pipeline,
            step=ctx.step,
            attempt=ctx.attempt,
            target=target,
            mode=mode,
            rows=rows,
            at=dt.datetime.now(dt.UTC),
        )


def ledger_table(schema: str | None) -> sa.Table:
    """The ledger in ``schema`` (None: the connection's default schema)."""
    return sa.Table(
        LEDGER,
        sa.MetaData(),
        sa.Column("export_key", sa.String(255), primary_key=True),
        sa.Column("run_id", sa.Text(), nullable=False),
        sa.Column("pipeline", sa.Text(), nullable=False),
        sa.Column("step", sa.Text(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("target_table", sa.Text(), nullable=False),
        sa.Column("mode", sa.Text(), nullable=False),
        sa.Column("row_count", sa.BigInteger(), nullable=False),
        sa.Column("exported_at", sa.DateTime(timezone=True), nullable=False),
        schema=schema,
    )


def ensure(conn: Connection, schema: str | None, *, url: str, name: str) -> sa.Table:
    """The ledger of ``schema`` on ``conn`` (outside a transaction), created if missing.

    A concurrent export may create it first (PostgreSQL then fails the second ``CREATE``
    on its catalog's unique index): a ledger that exists afterwards is all that counts."""
    ledger = ledger_table(schema)
    if _exists(conn, schema):
        return ledger
    try:
        with conn.begin():
            ledger.create(conn, checkfirst=True)
    except SQLAlchemyError as exc:
        if _exists(conn, schema):
            return ledger
        where = f"schema {schema!r}" if schema else "the connection's default schema"
        raise StepError(
            f"cannot create the export ledger {LEDGER} in {where} on {name!r}: "
            f"{reason(exc, url)}; create it once as a user who may (docs/execution.md, "
            "'Table exports are effectively-once', has its CREATE TABLE) and grant this "
            "one SELECT and INSERT on it"
        ) from None
    return ledger


def _exists(conn: Connection, schema: str | None) -> bool:
    with conn.begin():
        return sa.inspect(conn).has_table(LEDGER, schema=schema)


def once(conn: Connection, ledger: sa.Table, entry: Entry, write: Callable[[], T]) -> T | Entry:
    """Run ``write`` on ``conn`` and record ``entry`` in one transaction, unless the ledger
    holds ``entry.key`` already. Returns what ``write`` returned, committed; or, when an
    earlier attempt committed the export, its entry (and nothing was written)."""
    with conn.begin() as transaction:
        earlier = _find(conn, ledger, entry.key)
        if earlier is None and _claim(conn, ledger, entry):
            wrote = write()
            failpoint("export.before_commit")
            return wrote
        transaction.rollback()
    if earlier is None:  # committed by a concurrent attempt while this one waited
        with conn.begin():
            earlier = _find(conn, ledger, entry.key)
    if earlier is None:
        raise StepError(
            f"export key {entry.key!r} conflicts in {LEDGER} but no row has it; "
            "check the ledger's primary key"
        )
    return earlier


def _find(conn: Connection, ledger: sa.Table, key: str) -> Entry | None:
    row = conn.execute(sa.select(ledger).where(ledger.c.export_key == key)).one_or_none()
    if row is None:
        return None
    at = row.exported_at
    return Entry(
        key=row.export_key,
        run_id=row.run_id,
        pipeline=row.pipeline,
        step=row.step,
        attempt=row.attempt,
        target=row.target_table,
        mode=row.mode,
        rows=row.row_count,
        at=at if at.tzinfo is not None else at.replace(tzinfo=dt.UTC),  # SQLite keeps UTC
    )


def _claim(conn: Connection, ledger: sa.Table, entry: Entry) -> bool:
    """Insert ``entry``; False when another transaction committed its key meanwhile."""
    try:
        conn.execute(
            ledger.insert().values(
                export_key=entry.key,
                run_id=entry.run_id,
                pipeline=entry.pipeline,
                step=entry.step,
                attempt=entry.attempt,
                target_table=entry.target,
                mode=entry.mode,
                row_count=entry.rows,
                exported_at=entry.at,
            )
        )
    except IntegrityError:
        return False
    return True
