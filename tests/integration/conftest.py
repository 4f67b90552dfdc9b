"""Integration fixtures: a real control plane (gRPC on loopback, real database)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from legato.testing import LocalControlPlane


@pytest.fixture
def plane(db_url: str) -> Iterator[LocalControlPlane]:
    with LocalControlPlane(db=db_url) as running:
        yield running
