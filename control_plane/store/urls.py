"""Database URLs: what users write (``sqlite:///./x.db``, ``postgresql://u@h/db``) and the
async driver URLs SQLAlchemy needs, plus a password-free form for messages and logs."""

from __future__ import annotations

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

__all__ = ["DatabaseUrlError", "display_url", "to_async_url"]

_ACCEPTED = "sqlite:///PATH or postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE"


class DatabaseUrlError(ValueError):
    """A database URL Legato cannot use; the message says what is accepted."""


def to_async_url(text: str) -> URL:
    """The async-driver URL for ``text``: sqlite → sqlite+aiosqlite, postgres(ql) →
    postgresql+asyncpg. Other schemes and drivers are refused with a clear message."""
    try:
        url = make_url(text.strip())
    except ArgumentError:
        raise DatabaseUrlError(f"{text!r} is not a database URL; use {_ACCEPTED}") from None
    backend, _, driver = url.drivername.partition("+")
    if backend == "sqlite":
        if driver not in ("", "aiosqlite"):
            raise DatabaseUrlError(
                f"driver {driver!r} is not supported for SQLite; use sqlite:///PATH"
            )
        if not url.database:
            raise DatabaseUrlError(
                f"{text!r} names no file; use sqlite:///PATH (in-memory databases lose every "
                "pipeline when the server stops)"
            )
        return url.set(drivername="sqlite+aiosqlite")
    if backend in ("postgresql", "postgres"):
        if driver not in ("", "asyncpg"):
            raise DatabaseUrlError(
                f"driver {driver!r} is not supported for PostgreSQL; use postgresql://... "
                "(Legato connects with asyncpg)"
            )
        if not url.database:
            raise DatabaseUrlError(f"{display_url(url)!r} names no database; use {_ACCEPTED}")
        return url.set(drivername="postgresql+asyncpg")
    raise DatabaseUrlError(
        f"{display_url(url)!r}: unsupported database {backend!r}; use {_ACCEPTED}"
    )


def display_url(url: URL | str) -> str:
    """``url`` with its password masked, safe for messages and logs."""
    if isinstance(url, str):
        try:
            url = make_url(url)
        except ArgumentError:
            return "<unparseable URL>"
    return url.render_as_string(hide_password=True)
