"""Signals between replicas over LISTEN/NOTIFY survive the loss of their connection: a
change already committed never fails because its hint could not be sent, the connection
is opened again, and local waiters are woken for what they may have missed."""

from __future__ import annotations

import asyncio

import asyncpg
from sqlalchemy.engine import make_url

from control_plane.execution.signals import Signals


async def _terminate(dsn: str, pid: int) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SELECT pg_terminate_backend($1)", pid)
    finally:
        await conn.close()


async def test_a_lost_listening_connection_is_reopened(postgres_url: str) -> None:
    url = make_url(postgres_url)
    dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
    one, two = Signals("one", postgres_url=url), Signals("two", postgres_url=url)
    await one.start()
    await two.start()
    try:
        await one.work_ready()
        async with asyncio.timeout(5):
            await two.work.wait()
        two.work.clear()

        with two.watch("run-1") as changed:
            await _terminate(dsn, two._conn.get_server_pid())
            await _terminate(dsn, one._conn.get_server_pid())
            # Publishing on a dead connection is a no-op, never an error.
            await one.run_changed("run-1")
            await one.work_ready()
            async with asyncio.timeout(10):
                # Both reconnect; the watcher is woken for what it may have missed.
                await changed.wait()
            for _ in range(200):
                if one._conn is not None and two._conn is not None:
                    break
                await asyncio.sleep(0.05)
        two.work.clear()
        await one.work_ready()
        async with asyncio.timeout(5):
            await two.work.wait()
    finally:
        await one.stop()
        await two.stop()
