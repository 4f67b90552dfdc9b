"""The agent's database watchers: LISTEN batches and reconnects on real PostgreSQL, polled
watermarks on SQLite and PostgreSQL, identifiers quoted, values bound, errors masked."""

from __future__ import annotations

import asyncio
import sqlite3
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from google.protobuf import duration_pb2, json_format
from psycopg import sql
from sqlalchemy.engine import make_url
from structlog.testing import capture_logs

from executor.masking import Masker
from executor.watchers import (
    ChannelWatch,
    TableWatch,
    WatchError,
    Watchers,
    libpq_dsn,
    watermark_text,
)
from legato.v1 import agent_service_pb2 as pb
from legato.v1 import spec_pb2

pytestmark = pytest.mark.timeout(30)

Change = tuple[dict[str, Any], str]


class Changes(list[Change]):
    def __call__(self, payload: dict[str, Any], watermark: str) -> None:
        self.append((payload, watermark))


async def eventually(condition: Callable[[], bool], what: str, within: float = 10) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def trigger(table: str, column: str, every: float = 0.05) -> spec_pb2.DatabaseTrigger:
    return spec_pb2.DatabaseTrigger(
        connection="shop",
        table=table,
        watermark=column,
        every=duration_pb2.Duration(nanos=int(every * 1e9)),
    )


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


# -- channel -----------------------------------------------------------------------------


def notify(url: str, channel: str, *payloads: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for payload in payloads:
            conn.execute("SELECT pg_notify(%s, %s)", (channel, payload))


async def listening(url: str, channel: str, changes: Changes) -> None:
    """NOTIFY probes until the watcher reports one, then forget the probes."""
    deadline = time.monotonic() + 10
    while not changes:
        assert time.monotonic() < deadline, "the watcher never started listening"
        await asyncio.to_thread(notify, url, channel, "probe")
        await asyncio.sleep(0.3)
    await asyncio.sleep(0.3)
    changes.clear()


async def test_notifications_arriving_together_make_one_change(
    warehouse_postgres_url: str,
) -> None:
    url = warehouse_postgres_url
    channel = f'Orders "x"-{uuid.uuid4().hex[:6]}'  # needs quoting
    changes = Changes()
    watch = ChannelWatch("shop", url, channel, "", changes, Masker([url]))
    task = asyncio.create_task(watch.run())
    try:
        await listening(url, channel, changes)
        await asyncio.to_thread(notify, url, channel, "a", "b", "c")
        await eventually(lambda: len(changes) == 1, "one batch")
        await asyncio.sleep(0.4)
        await asyncio.to_thread(notify, url, channel, "d")
        await eventually(lambda: len(changes) == 2, "a second batch")
    finally:
        await stop(task)
    (first, mark1), (second, mark2) = changes
    assert first["channel"] == channel
    assert [n["payload"] for n in first["notifications"]] == ["a", "b", "c"]
    assert all(isinstance(n["pid"], int) and n["pid"] > 0 for n in first["notifications"])
    assert [n["payload"] for n in second["notifications"]] == ["d"]
    assert mark1 < mark2  # increasing ISO 8601 times


async def test_watermarks_stay_ahead_of_the_stored_one() -> None:
    changes = Changes()
    ahead = "2999-01-01T00:00:00.000000+00:00"
    watch = ChannelWatch("shop", "postgresql://h/db", "c", ahead, changes, Masker())
    for _ in range(2):
        watch._add(psycopg.Notify("c", "x", 1))
        watch.flush()
    assert ahead < changes[0][1] < changes[1][1]


async def test_a_dropped_listen_connection_is_opened_again(warehouse_postgres_url: str) -> None:
    url = warehouse_postgres_url
    channel = f"drops_{uuid.uuid4().hex[:6]}"
    changes = Changes()
    watch = ChannelWatch("shop", url, channel, "", changes, Masker([url]))
    task = asyncio.create_task(watch.run())
    try:
        await listening(url, channel, changes)
        with capture_logs() as logs:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND query = %s",
                    (sql.SQL("LISTEN {}").format(sql.Identifier(channel)).as_string(),),
                )
            await eventually(
                lambda: any(e["event"] == "watch_connection_failed" for e in logs), "the drop"
            )
            await listening(url, channel, changes)
        lost = next(e for e in logs if e["event"] == "watch_connection_failed")
        assert lost["connection"] == "shop" and lost["channel"] == channel
        assert "closed the connection" in lost["error"]
        await asyncio.to_thread(notify, url, channel, "after")
        await eventually(lambda: bool(changes), "a change after the reconnect")
    finally:
        await stop(task)
    assert changes[0][0]["notifications"][0]["payload"] == "after"


def test_channels_need_postgresql() -> None:
    with pytest.raises(WatchError, match=r"needs PostgreSQL .* connection 'shop' is sqlite"):
        libpq_dsn("shop", "sqlite:///shop.db")
    dsn = libpq_dsn("shop", "postgresql+asyncpg://bob:pw@db:5433/shop?ssl=require")
    assert dsn == "postgresql://bob:pw@db:5433/shop?sslmode=require"


# -- table -------------------------------------------------------------------------------


def sqlite_shop(path: Path) -> tuple[str, Callable[[str], None]]:
    """A SQLite database with a table whose name and watermark column need quoting."""
    file = path / "shop.db"

    def run(statement: str) -> None:
        with sqlite3.connect(file) as conn:
            conn.execute(statement)

    run('CREATE TABLE "Order" (id INTEGER PRIMARY KEY, "select" INTEGER NOT NULL)')
    run('INSERT INTO "Order" ("select") VALUES (1), (2)')
    return f"sqlite:///{file}", run


async def test_new_rows_make_one_change_and_existing_ones_none(tmp_path: Path) -> None:
    url, run = sqlite_shop(tmp_path)
    changes = Changes()
    watch = TableWatch("shop", url, trigger("Order", "select"), "", changes, Masker())
    task = asyncio.create_task(watch.run())
    try:
        await asyncio.sleep(0.3)
        assert changes == []
        run('INSERT INTO "Order" ("select") VALUES (3), (4), (5)')
        await eventually(lambda: bool(changes), "a change")
        await asyncio.sleep(0.3)  # more polls, nothing new
    finally:
        await stop(task)
    assert changes == [({"table": "Order", "rows": 3, "from": "2", "to": "5"}, "5")]


async def test_polling_resumes_from_the_stored_watermark(tmp_path: Path) -> None:
    url, run = sqlite_shop(tmp_path)
    run('INSERT INTO "Order" ("select") VALUES (3), (4)')
    changes = Changes()
    watch = TableWatch("shop", url, trigger("Order", "select"), "2", changes, Masker())
    task = asyncio.create_task(watch.run())
    try:
        await eventually(lambda: bool(changes), "the rows since the stored watermark")
    finally:
        await stop(task)
    assert changes == [({"table": "Order", "rows": 2, "from": "2", "to": "4"}, "4")]


async def test_timestamps_poll_on_postgresql(warehouse_postgres_url: str) -> None:
    url = warehouse_postgres_url
    name = f"events_{uuid.uuid4().hex[:6]}"
    table = sql.Identifier(name)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE TABLE {} (id serial, at timestamptz NOT NULL)").format(table))
        conn.execute(
            sql.SQL(
                "INSERT INTO {} (at) VALUES ('2026-01-01T10:00:00Z'), ('2026-01-01T11:00:00Z')"
            ).format(table)
        )
    changes = Changes()
    # A stored watermark is text; the database reads it as the column's type.
    stored = "2026-01-01T10:00:00+00:00"
    watch = TableWatch("shop", url, trigger(f"public.{name}", "at"), stored, changes, Masker())
    task = asyncio.create_task(watch.run())
    try:
        await eventually(lambda: bool(changes), "a change")
    finally:
        await stop(task)
    ((payload, watermark),) = changes
    assert payload == {
        "table": f"public.{name}",
        "rows": 1,
        "from": stored,
        "to": "2026-01-01T11:00:00+00:00",
    }
    assert watermark == "2026-01-01T11:00:00+00:00"


def test_identifiers_are_checked_and_values_bound(tmp_path: Path) -> None:
    with pytest.raises(WatchError, match="not a table name"):
        TableWatch(
            "shop", "sqlite://", trigger("orders; DROP TABLE x", "id"), "", Changes(), Masker()
        )
    with pytest.raises(WatchError, match="not a column name"):
        TableWatch("shop", "sqlite://", trigger("orders", "id)--"), "", Changes(), Masker())
    watch = TableWatch(
        "shop", "sqlite://", trigger("sales.Order", "select"), "", Changes(), Masker()
    )
    statement = watch.statement("1; DROP TABLE x")
    text = str(statement)
    assert '"select"' in text and 'sales."Order"' in text
    assert "DROP" not in text  # bound, not formatted
    assert statement.compile().params == {"last": "1; DROP TABLE x"}


async def test_poll_errors_are_logged_once_and_masked(warehouse_postgres_url: str) -> None:
    secret = "hunter22pw"
    url = make_url(warehouse_postgres_url).set(password=secret, database=secret)
    text = url.render_as_string(hide_password=False)
    watch = TableWatch("shop", text, trigger("orders", "id"), "", Changes(), Masker([text]))
    with capture_logs() as logs:
        task = asyncio.create_task(watch.run())
        await asyncio.sleep(0.4)
        await stop(task)
    failures = [e for e in logs if e["event"] == "watch_poll_failed"]
    assert len(failures) == 1
    assert secret not in str(failures) and "***" in failures[0]["error"]
    assert failures[0]["connection"] == "shop"


def test_watermark_text_writes_dates_in_iso_8601() -> None:
    from datetime import UTC, date, datetime
    from decimal import Decimal

    assert watermark_text(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)) == "2026-01-02T03:04:05+00:00"
    assert watermark_text(date(2026, 1, 2)) == "2026-01-02"
    assert watermark_text(Decimal("10.50")) == "10.50"
    assert watermark_text(7) == "7"


# -- the agent's set of watches -----------------------------------------------------------


async def test_watchers_report_changes_and_stop_on_cancel(tmp_path: Path) -> None:
    url, run = sqlite_shop(tmp_path)
    reports: list[pb.ConnectRequest] = []
    watchers = Watchers({"shop": url}, Masker(), reports.append)
    assignment = pb.WatchAssignment(
        watch_id="w1", pipeline="orders", trigger=trigger("Order", "select"), watermark="1"
    )
    watchers.start(assignment)
    watchers.start(assignment)  # again: the running watch is kept
    try:
        await eventually(lambda: bool(reports), "a report")
        assert watchers.watching == ["w1"]
        (report,) = reports
        assert report.change.watch_id == "w1"
        assert report.change.watermark == "2"
        assert json_format.MessageToDict(report.change.payload) == {
            "table": "Order",
            "rows": 1.0,
            "from": "1",
            "to": "2",
        }
        watchers.cancel("w1")
        await asyncio.sleep(0.1)
        run('INSERT INTO "Order" ("select") VALUES (3)')
        await asyncio.sleep(0.3)
        assert len(reports) == 1 and watchers.watching == []
    finally:
        await watchers.close()


async def test_a_watch_on_a_connection_the_agent_lacks_is_logged() -> None:
    watchers = Watchers({}, Masker(), lambda _: None)
    with capture_logs() as logs:
        watchers.start(
            pb.WatchAssignment(
                watch_id="w1", trigger=spec_pb2.DatabaseTrigger(connection="crm", channel="c")
            )
        )
        await eventually(lambda: watchers.watching == [], "the watch to end")
        await asyncio.sleep(0)
    (failed,) = [e for e in logs if e["event"] == "watch_failed"]
    assert "this agent has no connection 'crm'" in failed["error"]
    await watchers.close()
