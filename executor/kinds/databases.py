"""Opening a step's connection URL synchronously, and saying what went wrong on it.

Kinds that talk to a database (``query``, the table export) call :func:`transaction`: it
opens the connection URL configured on the agent with :func:`engine_for`, runs the block in
one transaction (committed when the block ends, rolled back when it raises) — or
:func:`connection`, whose block begins transactions of its own — and turns what
the database or driver raised into a :class:`StepError` with a one-line message that names
the connection and gives the database's own words — never the password or the full URL.

PostgreSQL URLs are opened with psycopg 3 whatever driver they name (``postgres://``,
``postgresql://``, ``postgresql+asyncpg://``, and ``postgresql+psycopg2://`` when psycopg2 is
not installed): a kind runs synchronously. SQLite runs in real transactions, DDL included
(Python's sqlite3 would otherwise commit ``CREATE TABLE`` on its own).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from executor.kinds.base import StepError
from executor.masking import Masker, safe_url

__all__ = ["connect_error", "connection", "database_error", "engine_for", "transaction"]

MAX_REASON = 400
"""Characters of the database's message kept in a step's error."""

_TO_PSYCOPG = {"postgres", "postgresql", "postgresql+asyncpg"}
_NOISE = ("[SQL:", "[parameters:", "(Background on this error", "LINE ")
"""Lines of a driver's or SQLAlchemy's message that echo the statement or link to docs."""


def engine_for(url: str) -> Engine:
    """An engine without a pool for ``url`` (a SQLAlchemy URL), opened synchronously."""
    parsed = _normalise(make_url(url))
    engine = create_engine(parsed, poolclass=NullPool)
    if engine.dialect.name == "sqlite" and engine.dialect.driver == "pysqlite":
        _transactional_sqlite(engine)
    return engine


def _normalise(url: URL) -> URL:
    driver = url.drivername
    if driver in _TO_PSYCOPG or (
        driver == "postgresql+psycopg2" and importlib.util.find_spec("psycopg2") is None
    ):
        url = url.set(drivername="postgresql+psycopg")
        if driver == "postgresql+asyncpg" and "ssl" in url.query and "sslmode" not in url.query:
            # asyncpg spells libpq's sslmode ``ssl``, with the same values.
            url = url.update_query_dict({"sslmode": url.query["ssl"]}).difference_update_query(
                ["ssl"]
            )
    return url


def _transactional_sqlite(engine: Engine) -> None:
    """Let SQLAlchemy, not sqlite3, begin transactions, so DDL is rolled back too (the
    recipe of SQLAlchemy's SQLite dialect documentation)."""

    @event.listens_for(engine, "connect")
    def _no_implicit_transactions(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN")


@contextmanager
def transaction(name: str, url: str, *, doing: str) -> Iterator[Connection]:
    """A connection to connection ``name`` (whose URL is ``url``) in one transaction.

    ``doing`` names the work in error messages (``query``, ``export to table 'orders'``): a
    database error in the block, or at commit, is raised as ``<doing> on '<name>' failed:
    <the database's message>`` after the transaction was rolled back."""
    with connection(name, url, doing=doing) as conn, conn.begin():
        yield conn


@contextmanager
def connection(name: str, url: str, *, doing: str) -> Iterator[Connection]:
    """A connection to connection ``name`` on which the block begins its own transactions
    (``with conn.begin():``), closed at the end; errors as for :func:`transaction`."""
    try:
        engine = engine_for(url)
    except (ArgumentError, NoSuchModuleError, ImportError, ValueError) as exc:
        raise connect_error(exc, name=name, url=url) from None
    try:
        try:
            opened = engine.connect()
        except SQLAlchemyError as exc:
            raise connect_error(exc, name=name, url=url) from None
        try:
            with opened:
                yield opened
        except (SQLAlchemyError, OverflowError) as exc:
            # OverflowError: sqlite3 refuses an integer beyond 64 bits without wrapping it.
            raise database_error(exc, name=name, url=url, doing=doing) from None
    finally:
        engine.dispose()


def connect_error(exc: BaseException, *, name: str, url: str) -> StepError:
    """``cannot connect to connection 'warehouse' (postgresql://bob:***@db/x): <reason>``."""
    fix = "; install its driver on the agent" if isinstance(exc, ImportError) else ""
    return StepError(
        f"cannot connect to connection {name!r} ({_shown(url)}): {reason(exc, url)}{fix}"
    )


def database_error(exc: BaseException, *, name: str, url: str, doing: str) -> StepError:
    """``<doing> on '<name>' failed: <reason>``, e.g. ``query on 'warehouse' failed:
    relation "users" does not exist``."""
    return StepError(f"{doing} on {name!r} failed: {reason(exc, url)}")


def reason(exc: BaseException, url: str) -> str:
    """The database's or driver's own message for ``exc``, on one line, without the echoed
    statement, SQLAlchemy's documentation link or anything secret in ``url``."""
    original = getattr(exc, "orig", None) or exc
    diag = getattr(original, "diag", None)
    primary = getattr(diag, "message_primary", None)
    if primary:
        detail = getattr(diag, "message_detail", None)
        hint = getattr(diag, "message_hint", None)
        text = primary + (f" ({detail})" if detail else "") + (f"; hint: {hint}" if hint else "")
    else:
        text = _first_lines(str(original)) or type(original).__name__
    text = Masker([url])(" ".join(text.split()))
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 1] + "…"


def _first_lines(message: str) -> str:
    kept: list[str] = []
    for line in message.splitlines():
        if line.strip().startswith(_NOISE):
            break
        kept.append(line.strip())
    return " ".join(kept)


def _shown(url: str) -> str:
    """``url`` as a message may show it: its password masked, or nothing of it when it is
    not a URL at all (it may then be a secret that was named as a connection)."""
    try:
        make_url(url)
    except (ArgumentError, ValueError):
        return "not a database URL"
    return safe_url(url)
