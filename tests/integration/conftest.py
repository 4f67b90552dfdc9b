"""Integration fixtures: a real control plane (gRPC on loopback, real database), alone or
with agents as separate processes (``cluster``), on both stores."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from cluster import Cluster, running_cluster
from test_cli import Server, start_server

from legato.testing import LocalControlPlane


@pytest.fixture
def plane(db_url: str) -> Iterator[LocalControlPlane]:
    with LocalControlPlane(db=db_url) as running:
        yield running


@pytest.fixture
def cluster(db_url: str, tmp_path: Path) -> Iterator[Cluster]:
    with running_cluster(db_url, tmp_path) as running:
        yield running


@pytest.fixture
def server(db_url: str) -> Iterator[Server]:
    """A `legato server` child process on ``db_url``, with its first admin token."""
    running = start_server(db_url)
    try:
        yield running
    finally:
        running.process.send_signal(signal.SIGTERM)
        running.process.wait(timeout=20)
