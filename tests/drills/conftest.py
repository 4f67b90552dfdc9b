"""Fixtures of the drills: a ``drill`` (its processes killed at the end, its ledger) and a
throwaway PostgreSQL server of the test's own."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from .harness import Drill, ThrowawayPostgres, drill, postgres_bin


@pytest.fixture(name="drill")
def drill_fixture(tmp_path: Path) -> Iterator[Drill]:
    with drill(tmp_path) as running:
        yield running


@pytest.fixture
def throwaway_postgres() -> Iterator[ThrowawayPostgres]:
    """A started PostgreSQL server in a temporary directory, on its own port, removed at
    the end; skipped (failed in CI) where initdb is not installed."""
    bindir = postgres_bin()
    if bindir is None or not (bindir / "initdb").exists():
        message = "initdb and pg_ctl are not installed; set LEGATO_TEST_PG_BIN to their directory"
        if os.environ.get("LEGATO_TEST_REQUIRE_POSTGRES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    server = ThrowawayPostgres(bindir)
    try:
        server.init().start()
        yield server
    finally:
        server.remove()
