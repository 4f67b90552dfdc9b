"""Whether an exception means the database is unreachable (restarting, refusing
connections, the network to it down) rather than a bug: such a failure is worth retrying,
callers get UNAVAILABLE instead of INTERNAL, and agents keep what they have to report."""

from __future__ import annotations

import errno
import sqlite3

import asyncpg
from sqlalchemy import exc as sa_exc

__all__ = ["UNAVAILABLE_MESSAGE", "store_unavailable"]

UNAVAILABLE_MESSAGE = (
    "the control plane's database is unavailable (restarting or unreachable); retry "
    "shortly — with the same request id, a retried change is made at most once"
)

# SQLSTATE class 08 (connection exception) and 57P01-57P03 (shutdown, cannot connect now).
_STATES = ("08", "57P01", "57P02", "57P03")
_NETWORK = {
    errno.ECONNREFUSED,
    errno.ECONNRESET,
    errno.ECONNABORTED,
    errno.EHOSTUNREACH,
    errno.ENETUNREACH,
    errno.ENETDOWN,
    errno.EPIPE,
    errno.ETIMEDOUT,
}


def store_unavailable(error: BaseException) -> bool:
    """True when ``error`` (or what it wraps) says the database cannot be reached."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if _unavailable(current):
            return True
        current = current.__cause__ or current.__context__
    return False


def _unavailable(error: BaseException) -> bool:
    if isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated:
        return True
    if isinstance(error, sa_exc.TimeoutError):  # no connection from the pool in time
        return True
    if isinstance(error, asyncpg.PostgresConnectionError | asyncpg.InterfaceError):
        return True
    if isinstance(error, asyncpg.PostgresError):
        state = str(getattr(error, "sqlstate", "") or "")
        return state.startswith(_STATES)
    if isinstance(error, sqlite3.OperationalError):
        text = str(error)
        return "unable to open" in text or "disk I/O error" in text
    if isinstance(error, ConnectionError | TimeoutError):
        return True
    return isinstance(error, OSError) and error.errno in _NETWORK
