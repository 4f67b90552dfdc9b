"""Fixtures shared by every test: databases on both backends.

PostgreSQL tests run against ``LEGATO_TEST_POSTGRES_URL`` (default
postgresql://postgres@127.0.0.1:5432/postgres): the session creates a throwaway database
there, migrates it, empties its tables before each test and drops it at the end. Without
a reachable server those tests are skipped, with a message saying how to point them at
one — except when LEGATO_TEST_REQUIRE_POSTGRES=1 (set by .ci/run), where that fails."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from control_plane.store.db import Database
from control_plane.store.migrate import upgrade
from control_plane.store.models import Base

if TYPE_CHECKING:
    from legato.v1 import spec_pb2

DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
# Every table of the store (TRUNCATE … CASCADE empties them in any order).
TABLES = [table.name for table in Base.metadata.sorted_tables]


@pytest.fixture(autouse=True)
def _no_user_config(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Clients in tests never read the user's config file, local credentials or LEGATO_*
    connection variables: each test says where it connects and with which token."""
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k in _CONNECTION_VARIABLES}
    os.environ["LEGATO_CONFIG"] = str(tmp_path_factory.mktemp("config") / "config.yaml")
    try:
        yield
    finally:
        os.environ.pop("LEGATO_CONFIG", None)
        os.environ.update(saved)


_CONNECTION_VARIABLES = {
    "LEGATO_SERVER",
    "LEGATO_TOKEN",
    "LEGATO_CA",
    "LEGATO_CERT",
    "LEGATO_KEY",
    "LEGATO_CONTEXT",
    "LEGATO_CONFIG",
    "LEGATO_AGENT_TOKEN",
}


def _admin_url() -> str:
    return os.environ.get("LEGATO_TEST_POSTGRES_URL") or DEFAULT_POSTGRES


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(_admin_url(), timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def _create_database(prefix: str) -> tuple[str, str]:
    """A new database on the test server: (name, URL); skips (or fails in CI) without one."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    try:
        asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        message = (
            f"PostgreSQL is not reachable at {make_url(_admin_url()).render_as_string()} ({exc}); "
            "set LEGATO_TEST_POSTGRES_URL=postgresql://USER@HOST:PORT/DB to run these tests"
        )
        if os.environ.get("LEGATO_TEST_REQUIRE_POSTGRES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return name, make_url(_admin_url()).set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """URL of a migrated throwaway database for this test session."""
    name, url = _create_database("legato_test")

    async def migrate() -> None:
        db = Database(url)
        try:
            await upgrade(db)
        finally:
            await db.dispose()

    asyncio.run(migrate())
    try:
        yield url
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _truncate(url: str) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(
            make_url(url).set(drivername="postgresql").render_as_string(False)
        )
        try:
            await conn.execute(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE")
        finally:
            await conn.close()

    asyncio.run(run())


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database URL on each backend: a fresh SQLite file, or the session's PostgreSQL
    database with its tables emptied."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/legato.db"
    url: str = request.getfixturevalue("postgres_url")
    _truncate(url)
    return url


@pytest.fixture(scope="session")
def warehouse_postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL database for user data (what query and export steps read and
    write), apart from the control plane's."""
    name, url = _create_database("legato_wh")
    try:
        yield url
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", "postgres"])
def warehouse_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A user-data database on each backend, empty at the start of the test: a fresh SQLite
    file, or the session's PostgreSQL warehouse with its public schema recreated."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/warehouse.db"
    url: str = request.getfixturevalue("warehouse_postgres_url")

    async def reset() -> None:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
        finally:
            await conn.close()

    asyncio.run(reset())
    return url


def make_spec(
    name: str = "etl", *, code: str = "result = data", cron: str = "0 2 * * *"
) -> spec_pb2.PipelineSpec:
    """A small valid pipeline: extract (query) → clean (transform) → load (export)."""
    from legato.v1 import spec_pb2

    return spec_pb2.PipelineSpec(
        name=name,
        description=f"{name} pipeline",
        schedule=spec_pb2.Schedule(cron=cron, timezone="UTC"),
        steps=[
            spec_pb2.Step(
                name="extract",
                query=spec_pb2.QueryStep(connection="warehouse", sql="SELECT 1 AS x"),
            ),
            spec_pb2.Step(
                name="clean", needs=["extract"], transform=spec_pb2.TransformStep(code=code)
            ),
            spec_pb2.Step(
                name="load",
                needs=["clean"],
                export=spec_pb2.ExportStep(
                    table=spec_pb2.TableExport(connection="warehouse", table="clean_rows")
                ),
            ),
        ],
    )


@pytest.fixture(name="make_spec")
def make_spec_fixture() -> Callable[..., spec_pb2.PipelineSpec]:
    return make_spec
