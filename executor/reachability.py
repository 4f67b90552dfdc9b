"""Whether the control plane's address refuses connections outright.

An agent that cannot reach the control plane for longer than its lease must assume its
leases expired and stop its steps, as they may be running elsewhere by now — unless it
knows the control plane is not running at all: a control plane that is not running hears
no agent, reaps no lease and, when it starts again, gives its agents a grace period to
come back (see control_plane.execution.reaper). A refused TCP connection (nothing listens
on the port) is that evidence; a timeout, an unreachable network, or a connection that is
accepted (a proxy in front of a stopped server, a half-open partition) is not, and the
agent then stops its steps after a lease as before.

Every address the target names or resolves to must refuse: with several control-plane
replicas, agents dial a name or list that reaches all of them (a DNS name with every
replica, or ``ipv4:10.0.0.1:7470,10.0.0.2:7470``), so that a refusal means none is running.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
from collections.abc import Awaitable

__all__ = ["addresses_of", "refuses_connections"]

_REFUSED = {errno.ECONNREFUSED, errno.ENOENT}


def addresses_of(target: str) -> list[tuple[str, int]] | str | None:
    """The (host, port) pairs of a gRPC target (``ipv4:`` and ``ipv6:`` targets may list
    several, a DNS name may resolve to several), the path of a ``unix:`` one, or None for
    a form this cannot tell (a name resolved by a custom resolver)."""
    if target.startswith("unix-abstract:"):
        return None
    if target.startswith("unix:"):
        return target.split(":", 1)[1].removeprefix("//")
    parts = [target]
    for scheme in ("dns:///", "ipv4:", "ipv6:"):
        if target.startswith(scheme):
            parts = target[len(scheme) :].split(",")
            break
    else:
        if "://" in target:
            return None
    found: list[tuple[str, int]] = []
    for part in parts:
        if part.startswith("["):
            host, _, rest = part[1:].partition("]")
            port = rest.removeprefix(":")
        else:
            host, _, port = part.rpartition(":")
        if not host or not port.isdigit():
            return None
        found.append((host, int(port)))
    return found


async def refuses_connections(target: str, *, within: float = 2.0) -> bool:
    """True only when every address of ``target`` refuses the connection (nothing
    listens there)."""
    addresses = addresses_of(target)
    if addresses is None:
        return False
    try:
        async with asyncio.timeout(within):
            if isinstance(addresses, str):
                return await _refused(asyncio.open_unix_connection(addresses))
            loop = asyncio.get_running_loop()
            for address in addresses:
                infos = await loop.getaddrinfo(*address, type=socket.SOCK_STREAM)
                for _family, _type, _proto, _name, sockaddr in infos:
                    host, port = str(sockaddr[0]), int(sockaddr[1])
                    if not await _refused(asyncio.open_connection(host, port)):
                        return False
            return True
    except (TimeoutError, OSError):
        return False  # slow, unreachable or unresolvable: not proof that it is stopped


async def _refused(
    connecting: Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]],
) -> bool:
    try:
        _, writer = await connecting
    except OSError as exc:
        if isinstance(exc, ConnectionRefusedError) or exc.errno in _REFUSED:
            return True
        raise
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return False
