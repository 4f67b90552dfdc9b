"""Which failures mean "the database cannot be reached" (retryable, UNAVAILABLE) and which
are bugs or bad requests (never retried as an outage): real errors from real drivers."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import asyncpg
import pytest
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import create_async_engine

from control_plane.store.outages import store_unavailable


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def test_a_postgres_server_that_refuses_is_unavailable() -> None:
    engine = create_async_engine(f"postgresql+asyncpg://postgres@127.0.0.1:{_closed_port()}/x")
    with pytest.raises(Exception) as caught:
        async with engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))
    await engine.dispose()
    assert store_unavailable(caught.value), repr(caught.value)


async def test_a_terminated_session_is_unavailable(postgres_url: str) -> None:
    dsn = postgres_url.replace("postgresql+asyncpg", "postgresql")
    victim = await asyncpg.connect(dsn)
    killer = await asyncpg.connect(dsn)
    closed = asyncio.Event()
    victim.add_termination_listener(lambda _conn: closed.set())
    try:
        await killer.execute("SELECT pg_terminate_backend($1)", victim.get_server_pid())
        async with asyncio.timeout(5):
            await closed.wait()  # the server's goodbye has arrived
        with pytest.raises(Exception) as caught:
            await victim.execute("SELECT 1")
    finally:
        await killer.close()
        victim.terminate()
    assert store_unavailable(caught.value), repr(caught.value)


async def test_bugs_and_bad_data_are_not_outages(postgres_url: str) -> None:
    engine = create_async_engine(postgres_url)
    try:
        async with engine.connect() as conn:
            with pytest.raises(sa_exc.ProgrammingError) as syntax:
                await conn.execute(sa.text("SELEKT 1"))
            await conn.rollback()
            with pytest.raises(sa_exc.DBAPIError) as zero:
                await conn.execute(sa.text("SELECT 1 / 0"))
    finally:
        await engine.dispose()
    assert not store_unavailable(syntax.value)
    assert not store_unavailable(zero.value)
    assert not store_unavailable(ValueError("bad"))
    assert not store_unavailable(FileNotFoundError("artifact.arrow"))
    assert store_unavailable(ConnectionResetError())


def test_an_sqlite_file_that_cannot_be_opened_is_unavailable(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path}/missing/dir/legato.db")
    with pytest.raises(sa_exc.OperationalError) as caught, engine.connect():
        pass
    assert store_unavailable(caught.value)
