"""Watching databases near the data for the control plane's database triggers.

The control plane hands an agent that has a trigger's connection a watch
(``WatchAssignment``); the agent runs one task for it until ``WatchCancelled`` arrives or
the stream drops (the control plane assigns the watch again after a reconnect). Each
change goes out as a ``DatabaseChange`` through the agent's report buffer, so a change
seen while the stream is down is delivered once it is back.

- ``channel``: a dedicated PostgreSQL connection runs ``LISTEN "<channel>"``;
  notifications that arrive within ``BATCH_SECONDS`` of the first make one change,
  ``{"channel", "notifications": [{"payload", "pid"}, ...]}``, whose watermark is an
  ISO 8601 UTC time that increases with every change. A lost connection is opened again
  with backoff; notifications sent while it was down are not seen (LISTEN/NOTIFY keeps
  none), so use a polled table where every change must count.
- ``table`` + ``watermark``: every ``every`` (default one minute) one query,
  ``SELECT max(<watermark>), count(*) FROM <table> WHERE <watermark> > :last``, with the
  identifiers checked and quoted by SQLAlchemy and the last value bound. A first watch
  (no watermark stored yet) starts from the current maximum: existing rows do not fire.
  New rows make one change ``{"table", "rows", "from", "to"}`` with the new maximum as its
  watermark (dates and times in ISO 8601). Rows committed late with a value below one
  already seen are missed, as with any watermark.

Errors name the connection and give the database's words, never its URL or password.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import time
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time
from typing import Any

import psycopg
import sqlalchemy as sa
import structlog
from google.protobuf import struct_pb2
from psycopg import sql
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.types import NullType

from executor.kinds.databases import engine_for, reason
from executor.masking import Masker
from legato.v1 import agent_service_pb2 as pb
from legato.v1 import spec_pb2

__all__ = ["BATCH_SECONDS", "ChannelWatch", "TableWatch", "WatchError", "Watchers"]

log = structlog.get_logger("legato.agent.watch")

BATCH_SECONDS = 0.2
MAX_BATCH = 500
"""Notifications per change at most (a NOTIFY payload is up to 8000 bytes)."""
DEFAULT_EVERY = 60.0
RETRY_SECONDS = (0.5, 30.0)
"""First and longest wait before opening a lost LISTEN connection again."""

_TABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)?")
_COLUMN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_POSTGRES = {"postgres", "postgresql"}

Emit = Callable[[dict[str, Any], str], None]
Report = Callable[[pb.ConnectRequest], None]


class WatchError(Exception):
    """A watch that cannot run here; the message says why and what to change."""


class Watchers:
    """The watches this agent runs, one task each, by watch id."""

    def __init__(self, connections: Mapping[str, str], mask: Masker, report: Report) -> None:
        self._connections = connections
        self._mask = mask
        self._report = report
        self._tasks: dict[str, asyncio.Task[None]] = {}

    @property
    def watching(self) -> list[str]:
        return sorted(w for w, task in self._tasks.items() if not task.done())

    def start(self, assignment: pb.WatchAssignment) -> None:
        """Start watching (again); a watch already running is left as it is."""
        watch_id = assignment.watch_id
        running = self._tasks.get(watch_id)
        if running is not None and not running.done():
            return
        self._tasks[watch_id] = asyncio.create_task(
            self._run(assignment), name=f"legato-watch-{watch_id}"
        )

    def cancel(self, watch_id: str) -> None:
        task = self._tasks.pop(watch_id, None)
        if task is not None:
            task.cancel()
            log.info("watch_stopped", watch_id=watch_id)

    def cancel_all(self) -> None:
        for watch_id in list(self._tasks):
            self.cancel(watch_id)

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        self.cancel_all()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self, assignment: pb.WatchAssignment) -> None:
        watch_id = assignment.watch_id
        trigger = assignment.trigger
        try:
            watch = self._watch(assignment)
            log.info(
                "watch_started",
                watch_id=watch_id,
                pipeline=assignment.pipeline,
                connection=trigger.connection,
                channel=trigger.channel,
                table=trigger.table,
                watermark=assignment.watermark,
            )
            await watch.run()
        except WatchError as error:
            log.error("watch_failed", watch_id=watch_id, error=self._mask(str(error)))
        except Exception as error:
            log.error(
                "watch_failed",
                watch_id=watch_id,
                error=self._mask(f"{type(error).__name__}: {error}"),
            )

    def _watch(self, assignment: pb.WatchAssignment) -> ChannelWatch | TableWatch:
        trigger = assignment.trigger
        url = self._connections.get(trigger.connection)
        if url is None:
            raise WatchError(
                f"this agent has no connection {trigger.connection!r}; configure it "
                f"(LEGATO_CONNECTION_<NAME> or --connections) or it is not watched here"
            )

        def emit(payload: dict[str, Any], watermark: str) -> None:
            body = struct_pb2.Struct()
            body.update(payload)
            change = pb.DatabaseChange(
                watch_id=assignment.watch_id, payload=body, watermark=watermark
            )
            self._report(pb.ConnectRequest(change=change))

        name, watermark, watch_id = trigger.connection, assignment.watermark, assignment.watch_id
        if trigger.channel:
            return ChannelWatch(
                name, url, trigger.channel, watermark, emit, self._mask, watch_id=watch_id
            )
        return TableWatch(name, url, trigger, watermark, emit, self._mask, watch_id=watch_id)


class ChannelWatch:
    """LISTEN on one channel of a PostgreSQL connection, in batches."""

    def __init__(
        self,
        name: str,
        url: str,
        channel: str,
        watermark: str,
        emit: Emit,
        mask: Masker,
        *,
        watch_id: str = "",
    ) -> None:
        self.name = name
        self._log = log.bind(watch_id=watch_id, connection=name)
        self._url = url
        self.channel = channel
        self._emit = emit
        self._mask = mask
        self._pending: list[dict[str, Any]] = []
        self._last = _parse_time(watermark)

    async def run(self) -> None:
        dsn = libpq_dsn(self.name, self._url)
        delay = RETRY_SECONDS[0]
        try:
            while True:
                try:
                    conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
                    async with conn:
                        listen = sql.SQL("LISTEN {}").format(sql.Identifier(self.channel))
                        await conn.execute(listen)
                        self._log.info("watch_listening", channel=self.channel)
                        delay = RETRY_SECONDS[0]
                        await self._collect(conn)
                except (psycopg.Error, OSError) as exc:
                    self._log.warning(
                        "watch_connection_failed",
                        channel=self.channel,
                        error=self._mask(reason(exc, self._url)),
                        retry_seconds=round(delay, 1),
                    )
                self.flush()
                await asyncio.sleep(delay * random.uniform(0.8, 1.2))
                delay = min(delay * 2, RETRY_SECONDS[1])
        finally:
            self.flush()

    async def _collect(self, conn: psycopg.AsyncConnection[Any]) -> None:
        while True:
            async with contextlib.aclosing(conn.notifies(stop_after=1)) as first:
                async for notify in first:
                    self._add(notify)
            deadline = time.monotonic() + BATCH_SECONDS
            while len(self._pending) < MAX_BATCH:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                async with contextlib.aclosing(conn.notifies(timeout=remaining)) as more:
                    async for notify in more:
                        self._add(notify)
                        if len(self._pending) >= MAX_BATCH:
                            break
            self.flush()

    def _add(self, notify: psycopg.Notify) -> None:
        self._pending.append({"payload": notify.payload, "pid": notify.pid})

    def flush(self) -> None:
        """Report the notifications collected so far as one change."""
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        self._emit({"channel": self.channel, "notifications": batch}, self._next_watermark())

    def _next_watermark(self) -> str:
        now = datetime.now(UTC)
        if self._last is not None and now <= self._last:
            now = self._last + timedelta(microseconds=1)
        self._last = now
        return now.isoformat(timespec="microseconds")


class TableWatch:
    """Poll a table for rows whose watermark column grew."""

    def __init__(
        self,
        name: str,
        url: str,
        trigger: spec_pb2.DatabaseTrigger,
        watermark: str,
        emit: Emit,
        mask: Masker,
        *,
        watch_id: str = "",
    ) -> None:
        if not _TABLE.fullmatch(trigger.table):
            raise WatchError(f"{trigger.table!r} is not a table name; write table or schema.table")
        if not _COLUMN.fullmatch(trigger.watermark):
            raise WatchError(f"{trigger.watermark!r} is not a column name for the watermark")
        self.name = name
        self._log = log.bind(watch_id=watch_id, connection=name)
        self._url = url
        self.table = trigger.table
        schema, _, table = trigger.table.rpartition(".")
        self._column: sa.ColumnClause[Any] = sa.column(trigger.watermark)
        self._from = sa.table(table, self._column, schema=schema or None)
        self.every = (
            trigger.every.ToTimedelta().total_seconds() if trigger.HasField("every") else 0
        ) or DEFAULT_EVERY
        self._start = watermark
        self._emit = emit
        self._mask = mask
        self._failing = ""

    async def run(self) -> None:
        try:
            engine = engine_for(self._url)
        except (ArgumentError, NoSuchModuleError, ImportError, ValueError) as exc:
            raise WatchError(
                f"connection {self.name!r} cannot be opened: {reason(exc, self._url)}"
            ) from None
        try:
            last: Any = self._start or None
            started = bool(self._start)
            while True:
                try:
                    if not started:
                        last = await asyncio.to_thread(self._current_max, engine)
                        started = True
                    last = await self.poll(engine, last)
                    self._failing = ""
                except SQLAlchemyError as exc:
                    self._failed(exc)
                await asyncio.sleep(self.every)
        finally:
            engine.dispose()

    async def poll(self, engine: Engine, last: Any) -> Any:
        """Report the rows past ``last``; returns the watermark to poll from next."""
        found = await asyncio.to_thread(self._query, engine, last)
        if found is None:
            return last
        rows, new = found
        self._emit(
            {
                "table": self.table,
                "rows": rows,
                "from": None if last is None else watermark_text(last),
                "to": watermark_text(new),
            },
            watermark_text(new),
        )
        return new

    def statement(self, last: Any) -> sa.Select[Any, int]:
        column = self._column
        stmt = sa.select(sa.func.max(column), sa.func.count()).select_from(self._from)
        if last is None:
            return stmt.where(column.is_not(None))
        # Untyped, so the database reads a stored watermark (text) as the column's type.
        return stmt.where(column > sa.bindparam("last", last, type_=NullType()))

    def _current_max(self, engine: Engine) -> Any:
        with engine.connect() as conn:
            return conn.execute(
                sa.select(sa.func.max(self._column)).select_from(self._from)
            ).scalar()

    def _query(self, engine: Engine, last: Any) -> tuple[int, Any] | None:
        with engine.connect() as conn:
            new, count = conn.execute(self.statement(last)).one()
        if not count or new is None:
            return None
        return int(count), new

    def _failed(self, exc: SQLAlchemyError) -> None:
        message = self._mask(reason(exc, self._url))
        if message != self._failing:  # once per distinct error, not every poll
            self._log.warning(
                "watch_poll_failed",
                table=self.table,
                error=message,
                retry_seconds=self.every,
            )
        self._failing = message


def libpq_dsn(name: str, url: str) -> str:
    """``url`` (a SQLAlchemy or libpq URL) as libpq takes it; WatchError when it is not a
    PostgreSQL URL."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise WatchError(f"connection {name!r} is not a database URL") from None
    if parsed.get_backend_name() not in _POSTGRES:
        raise WatchError(
            f"a channel trigger needs PostgreSQL (LISTEN/NOTIFY), and connection {name!r} is "
            f"{parsed.get_backend_name()}; poll a table (table and watermark) instead"
        )
    parsed = parsed.set(drivername="postgresql")
    if "ssl" in parsed.query and "sslmode" not in parsed.query:
        # asyncpg spells libpq's sslmode ``ssl``, with the same values.
        parsed = parsed.update_query_dict({"sslmode": parsed.query["ssl"]})
        parsed = parsed.difference_update_query(["ssl"])
    return parsed.render_as_string(hide_password=False)


def watermark_text(value: Any) -> str:
    """A watermark as the control plane stores it: dates and times in ISO 8601."""
    if isinstance(value, datetime | date | clock_time):
        return value.isoformat()
    return str(value)


def _parse_time(text: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
