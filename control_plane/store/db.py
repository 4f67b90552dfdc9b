"""Engines and sessions.

One ``AsyncSession`` per RPC or task (SQLAlchemy sessions are not safe across concurrent
tasks). ``Database.read()`` opens a plain transaction; ``Database.write()`` opens one that
will write. On SQLite writers start with ``BEGIN IMMEDIATE`` on a one-connection pool, so
they queue in the server instead of failing with "database is locked" half-way through;
readers use WAL snapshots and never wait for writers. SQLite statements run inline on the
event loop (``sqlite_inline``: no thread hop per statement; a lock held by another process
is waited for asynchronously). On PostgreSQL both are the same
pool, and row locks (``FOR UPDATE``) order writers that touch the same rows.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from control_plane.errors import Unavailable
from control_plane.store import sqlite_inline
from control_plane.store.urls import display_url, to_async_url

__all__ = ["Database", "DatabaseUnavailable"]

_SQLITE_BUSY_TIMEOUT_S = 30.0


class DatabaseUnavailable(Unavailable):
    """The database cannot be reached; the message names it (without password) and why."""

    reason = "DATABASE_UNAVAILABLE"


class Database:
    """The store's engines and session factories for one database URL."""

    def __init__(self, url: str | URL, *, echo: bool = False) -> None:
        self.url = to_async_url(url) if isinstance(url, str) else url
        self.dialect = self.url.get_backend_name()
        if self.dialect == "sqlite":
            self._prepare_sqlite_file()
            self.engine = self._sqlite_engine(immediate=False, pool_size=5, echo=echo)
            self._write_engine = self._sqlite_engine(immediate=True, pool_size=1, echo=echo)
        else:
            self.engine = create_async_engine(
                self.url, echo=echo, pool_size=10, max_overflow=10, pool_pre_ping=True
            )
            self._write_engine = self.engine
        # A read sees one snapshot: on PostgreSQL each statement of a READ COMMITTED
        # transaction sees the commits made before it, so a run read as its steps, then
        # its attempts, could show a step still leased beside its failed attempt. Reads
        # only read (they are rolled back), so REPEATABLE READ never fails one.
        reads = (
            self.engine.execution_options(isolation_level="REPEATABLE READ")
            if self.dialect == "postgresql"
            else self.engine
        )
        self._read_sessions = async_sessionmaker(reads, expire_on_commit=False)
        self._write_sessions = async_sessionmaker(self._write_engine, expire_on_commit=False)

    @property
    def display_url(self) -> str:
        return display_url(self.url)

    @property
    def is_postgres(self) -> bool:
        return self.dialect == "postgresql"

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A session for reading; rolled back at the end."""
        async with self._read_sessions() as session:
            yield session

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """A session in a write transaction, committed when the block ends without error."""
        async with self._write_sessions() as session, session.begin():
            yield session

    async def check_connection(self) -> None:
        """Connect once, or raise DatabaseUnavailable naming the database and the cause."""
        try:
            async with asyncio.timeout(15), self.engine.connect() as conn:
                await conn.exec_driver_sql("SELECT 1")
        except (OSError, DBAPIError, OperationalError, TimeoutError) as exc:
            cause = _root_cause(exc)
            raise DatabaseUnavailable(f"cannot connect to {self.display_url}: {cause}") from None

    async def dispose(self) -> None:
        await self.engine.dispose()
        if self._write_engine is not self.engine:
            await self._write_engine.dispose()

    def _prepare_sqlite_file(self) -> None:
        database = self.url.database or ""
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)

    def _sqlite_engine(self, *, immediate: bool, pool_size: int, echo: bool) -> AsyncEngine:
        database = self.url.database or ":memory:"
        engine = create_async_engine(
            self.url,
            echo=echo,
            pool_size=pool_size,
            max_overflow=0,
            pool_timeout=_SQLITE_BUSY_TIMEOUT_S,
            # Statements run inline on the event loop, busy waits are asynchronous
            # (sqlite_inline): no thread hop per statement.
            async_creator=partial(
                sqlite_inline.connect, database, uri=database.startswith("file:")
            ),
        )
        begin = "BEGIN IMMEDIATE" if immediate else "BEGIN"

        @event.listens_for(engine.sync_engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            # Take transaction control from the driver so BEGIN is ours to emit.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        @event.listens_for(engine.sync_engine, "begin")
        def _on_begin(conn: Any) -> None:
            conn.exec_driver_sql(begin)

        return engine


def _root_cause(exc: BaseException) -> str:
    seen: BaseException = exc
    while True:
        nxt = getattr(seen, "orig", None) or seen.__cause__
        if nxt is None or nxt is seen:
            break
        seen = nxt
    text = str(seen).strip().splitlines()[0] if str(seen).strip() else type(seen).__name__
    return text
