"""SQLite for the asyncio control plane without a thread hop per statement.

aiosqlite runs every statement on a worker thread and hands the result back through the
event loop: measured here, that costs about 0.8 ms of CPU per statement against 0.08 ms for
the same statement on the synchronous driver — ten times the statement itself, and a
step-to-step hop is some twenty statements. SQLite is a library in this process, reading
a local file through the page cache and, in WAL mode with ``synchronous=NORMAL``, committing
without an fsync, so its statements take tens of microseconds: running them inline on the
event loop is cheaper than any hand-off.

The one way a statement could stall the loop is a lock held by another connection (another
process writing the same file: ``legato db``, a second server). So these connections have no
busy timeout: a statement SQLite refuses with ``SQLITE_BUSY`` is retried after an
``asyncio.sleep`` that lets the loop run, with backoff, until the same 30 s a blocking busy
timeout would have waited. Inside this process writers queue on the write engine's single
connection, so BEGIN IMMEDIATE is the only statement that meets the lock.

:func:`connect` is an ``async_creator`` for SQLAlchemy's aiosqlite dialect: the objects
below provide the part of aiosqlite's interface that dialect uses, executing each call at
once."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from typing import Any

__all__ = ["BUSY_WAIT_SECONDS", "InlineConnection", "connect"]

BUSY_WAIT_SECONDS = 30.0
_FIRST_BACKOFF = 0.001
_MAX_BACKOFF = 0.05


def _busy(error: sqlite3.OperationalError) -> bool:
    text = str(error).lower()
    return "database is locked" in text or "database is busy" in text


async def _retrying(call: Callable[[], Any]) -> Any:
    """``call()``, again after a non-blocking pause while the database is locked."""
    deadline = time.monotonic() + BUSY_WAIT_SECONDS
    pause = _FIRST_BACKOFF
    while True:
        try:
            return call()
        except sqlite3.OperationalError as error:
            if not _busy(error) or time.monotonic() >= deadline:
                raise
        await asyncio.sleep(pause)
        pause = min(pause * 2, _MAX_BACKOFF)


class InlineCursor:
    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cursor = cursor

    async def __aenter__(self) -> InlineCursor:
        return self

    async def __aexit__(self, *_: object) -> None:
        self._cursor.close()

    @property
    def description(self) -> Any:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    @property
    def arraysize(self) -> int:
        return self._cursor.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cursor.arraysize = value

    async def execute(self, operation: str, parameters: Sequence[Any] = ()) -> InlineCursor:
        await _retrying(lambda: self._cursor.execute(operation, parameters))
        return self

    async def executemany(
        self, operation: str, seq_of_parameters: Iterable[Sequence[Any]]
    ) -> InlineCursor:
        rows = list(seq_of_parameters)
        await _retrying(lambda: self._cursor.executemany(operation, rows))
        return self

    async def fetchone(self) -> Any:
        return self._cursor.fetchone()

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        return self._cursor.fetchmany(size if size is not None else self._cursor.arraysize)

    async def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    async def close(self) -> None:
        self._cursor.close()


class _Immediate:
    """What the dialect uses of aiosqlite's request queue (to set the isolation level):
    here the function runs at once."""

    def put_nowait(self, item: tuple[asyncio.Future[Any] | Future[Any], Callable[[], Any]]) -> None:
        future, function = item
        try:
            future.set_result(function())
        except Exception as error:
            future.set_exception(error)


class InlineConnection:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn: sqlite3.Connection | None = conn
        self._tx = _Immediate()

    @property
    def _connection(self) -> sqlite3.Connection | None:
        return self._conn

    @property
    def isolation_level(self) -> str | None:
        return self._raw().isolation_level

    def _raw(self) -> sqlite3.Connection:
        if self._conn is None:
            raise ValueError("no active connection")
        return self._conn

    def cursor(self) -> InlineCursor:
        return InlineCursor(self._raw().cursor())

    async def execute(self, operation: str, parameters: Sequence[Any] = ()) -> InlineCursor:
        return await self.cursor().execute(operation, parameters)

    async def commit(self) -> None:
        await _retrying(self._raw().commit)

    async def rollback(self) -> None:
        self._raw().rollback()

    async def create_function(self, *args: Any, **kwargs: Any) -> None:
        self._raw().create_function(*args, **kwargs)

    async def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            conn.close()

    def stop(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            conn.close()


async def connect(database: str, *, uri: bool = False) -> InlineConnection:
    """A connection to ``database`` whose statements run inline (see the module text)."""
    conn = sqlite3.connect(
        database,
        uri=uri,
        timeout=0,  # busy waits are asynchronous: _retrying
        isolation_level=None,
        check_same_thread=False,
    )
    return InlineConnection(conn)
