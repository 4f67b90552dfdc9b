"""Whether the control plane's address refuses connections: only a refusal from every
address counts as proof that no control plane is running there."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from executor.reachability import addresses_of, refuses_connections


@pytest.mark.parametrize(
    ("target", "addresses"),
    [
        ("localhost:7470", [("localhost", 7470)]),
        ("[::1]:7470", [("::1", 7470)]),
        ("dns:///cp.example:7470", [("cp.example", 7470)]),
        ("ipv4:10.0.0.1:7470,10.0.0.2:7471", [("10.0.0.1", 7470), ("10.0.0.2", 7471)]),
        ("ipv6:[::1]:7470", [("::1", 7470)]),
        ("unix:///run/legato.sock", "/run/legato.sock"),
        ("unix:relative.sock", "relative.sock"),
        ("xds:///cluster", None),
        ("unix-abstract:legato", None),
        ("no-port", None),
    ],
)
def test_targets_are_read_as_grpc_reads_them(
    target: str, addresses: list[tuple[str, int]] | str | None
) -> None:
    assert addresses_of(target) == addresses


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.fixture
def listening() -> Iterator[int]:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield server.getsockname()[1]


async def test_a_closed_port_refuses() -> None:
    assert await refuses_connections(f"127.0.0.1:{_closed_port()}")


async def test_a_listening_port_does_not(listening: int) -> None:
    assert not await refuses_connections(f"127.0.0.1:{listening}")
    # localhost may resolve to ::1 first, which refuses: one address that answers is enough.
    assert not await refuses_connections(f"localhost:{listening}")


async def test_one_live_replica_of_several_is_enough(listening: int) -> None:
    closed = _closed_port()
    assert not await refuses_connections(f"ipv4:127.0.0.1:{closed},127.0.0.1:{listening}")
    assert await refuses_connections(f"ipv4:127.0.0.1:{closed},127.0.0.1:{_closed_port()}")


async def test_silence_and_unknown_names_are_not_proof(tmp_path: Path) -> None:
    # A non-routable address times out: a partition looks like this.
    assert not await refuses_connections("10.255.255.1:7470", within=0.3)
    assert not await refuses_connections("no-such-host.invalid:7470")
    assert not await refuses_connections("xds:///cluster")
    assert await refuses_connections(f"unix:{tmp_path / 'nothing.sock'}")
