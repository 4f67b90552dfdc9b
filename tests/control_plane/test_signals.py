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


async def test_a_watcher_learns_which_steps_changed() -> None:
    signals = Signals("one")
    with signals.watch("run-1") as changed:
        await signals.run_changed("run-1", steps={"run-1": ["extract"]})
        await signals.run_changed("run-1", steps={"run-1": ["load"]})
        await signals.run_changed("run-2")  # another run's watchers only
        assert changed.is_set()
        assert changed.take() == {"extract", "load"}
        assert not changed.is_set()
        await signals.run_changed("run-1", steps={"run-1": ()})  # its log, no step
        assert changed.take() == set()
        await signals.run_changed("run-1", steps={"run-1": ["load"]})
        await signals.run_changed("run-1")  # unknown: read every step
        assert changed.take() is None
        assert changed.take() == set()


async def test_another_replica_names_the_steps_that_changed_while_they_fit(
    postgres_url: str,
) -> None:
    url = make_url(postgres_url)
    one, two = Signals("one", postgres_url=url), Signals("two", postgres_url=url)
    await one.start()
    await two.start()
    try:
        with two.watch("run-1") as changed:
            await one.run_changed("run-1", steps={"run-1": ["extract", "load"]})
            async with asyncio.timeout(5):
                await changed.wait()
            assert changed.take() == {"extract", "load"}
            many = [f"step-{i:04d}-with-a-long-name" for i in range(300)]
            await one.run_changed("run-1", steps={"run-1": many})  # too many to name
            async with asyncio.timeout(5):
                await changed.wait()
            assert changed.take() is None
    finally:
        await one.stop()
        await two.stop()


async def test_a_thousand_changed_runs_reach_another_replica(postgres_url: str) -> None:
    url = make_url(postgres_url)
    one, two = Signals("one", postgres_url=url), Signals("two", postgres_url=url)
    await one.start()
    await two.start()
    try:
        ids = [f"01m8y9cpajys8jxqjfjg6{i:05d}" for i in range(1000)]  # a scheduler batch
        with two.watch(ids[-1]) as last, two.watch(ids[0]) as first:
            await one.run_changed(*ids)
            async with asyncio.timeout(5):
                await last.wait()
                await first.wait()
    finally:
        await one.stop()
        await two.stop()
