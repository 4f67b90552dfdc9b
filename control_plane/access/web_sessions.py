"""Web UI sessions: how a browser signs in, and what its cookie stands for.

Two ways in, both ending in a session that acts as an API token (its name, its role):

- **A sign-in link** (``legato ui``, ``legato up``): ``create_code`` makes a one-time code
  for the caller's token, valid for ``CODE_SECONDS``; the browser opens
  ``<ui>/ui/signin?code=…`` and ``exchange`` turns the code into a session — in one
  ``UPDATE … WHERE code_hash = … AND code_expire_time > now``, so a code works once, on
  whichever replica it reaches first.
- **A pasted API token**: ``sign_in`` checks it and opens a session for it.

A session lasts ``SESSION_SECONDS`` (never beyond its token's expiry). Signing out ends
it (``revoke_time``); revoking its token ends it too, since every call made with the
session is authenticated as the token (``Authenticator.web_session``). Only hashes of
codes and session secrets are stored. Creating a link, signing in and signing out are
recorded in the activity log, in the same transaction as the change."""

from __future__ import annotations

import asyncio
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from sqlalchemy import delete, func, select, update

from control_plane.access import token_secrets
from control_plane.access.actors import Actor
from control_plane.access.principals import Principal
from control_plane.errors import (
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    Unauthenticated,
)
from control_plane.store import audit
from control_plane.store.db import Database
from control_plane.store.models import WebSessionRow

__all__ = ["CODE_SECONDS", "SESSION_SECONDS", "SignInLink", "WebSession", "WebSessions"]

log = structlog.get_logger("legato.web")

CODE_SECONDS = 300
SESSION_SECONDS = 12 * 3600
MAX_NEXT_PATH = 2000
KEEP_ENDED_SECONDS = 24 * 3600
"""How long an ended session's (or spent code's) row is kept before ``prune`` drops it;
the activity log keeps who signed in and out for good."""
PRUNE_SECONDS = 3600.0


@dataclass(frozen=True)
class SignInLink:
    url: str
    expire_time: datetime


@dataclass(frozen=True)
class WebSession:
    """An open session: the cookie's value (handed out once), where to go, until when."""

    secret: str
    next_path: str
    expire_time: datetime
    max_age: int
    """Seconds until ``expire_time`` (the cookie's Max-Age)."""


class WebSessions:
    def __init__(self, db: Database, *, clock: Callable[[], datetime]) -> None:
        self._db = db
        self._clock = clock
        self.base_url = ""
        """The web UI's address (``--ui-url``, else the HTTP listener's once it is bound)."""

    async def create_code(self, principal: Principal, next_path: str, actor: Actor) -> SignInLink:
        """A one-time sign-in link for ``principal``'s API token."""
        if not self.base_url:
            raise FailedPrecondition(
                "the web UI is not served: the HTTP listener is off (--http-listen off); "
                "start the server with --http-listen HOST:PORT",
                reason="UI_NOT_SERVED",
            )
        if principal.kind == "anonymous":
            raise FailedPrecondition(
                f"authentication is off (--auth none): open {self.base_url}/ directly, no "
                "sign-in is needed",
                reason="AUTH_OFF",
            )
        if principal.is_agent or not principal.token_id:
            raise FailedPrecondition(
                "only an API token's holder can sign in to the web UI",
                reason="NOT_AN_API_TOKEN",
            )
        path = _next_path(next_path or "/")
        now = self._clock()
        expire = now + timedelta(seconds=CODE_SECONDS)
        session_id, code, digest = token_secrets.new_secret("code")
        async with self._db.write() as session:
            session.add(
                WebSessionRow(
                    id=session_id,
                    token_id=principal.token_id,
                    code_hash=digest,
                    code_expire_time=expire,
                    next_path=path,
                    create_time=now,
                )
            )
            audit.record(
                session,
                now=now,
                actor=actor,
                action="CreateSignInLink",
                resource=f"tokens/{principal.name}",
                details={"session_id": session_id, "expire_time": expire.isoformat()},
            )
        query = urllib.parse.urlencode({"code": code})
        return SignInLink(url=f"{self.base_url.rstrip('/')}/ui/signin?{query}", expire_time=expire)

    async def exchange(
        self, code: str, token_of: Callable[[str], Awaitable[tuple[str, datetime | None]]]
    ) -> WebSession:
        """The session a sign-in code opens; the code is spent. ``token_of`` checks the
        code's token is still live and gives its name and expiry."""
        parsed = token_secrets.parse(code)
        if parsed is None or parsed.kind != "code":
            raise Unauthenticated(
                "this is not a sign-in link's code; run `legato ui` for a new link",
                reason="SIGN_IN_CODE_INVALID",
            )
        now = self._clock()
        _, secret, secret_hash = token_secrets.new_secret("session", parsed.id)
        async with self._db.write() as session:
            # Read to say why a code is refused; the conditional UPDATE below is what
            # spends it, once, whichever replica's exchange comes first.
            row = await session.get(WebSessionRow, parsed.id)
            if (
                row is None
                or row.code_hash is None
                or not token_secrets.matches(parsed, row.code_hash)
            ):
                raise Unauthenticated(
                    "this sign-in link was used already, or is not valid; run `legato ui` "
                    "for a new one (a link works once)",
                    reason="SIGN_IN_CODE_USED",
                )
            if row.code_expire_time is None or row.code_expire_time <= now:
                raise Unauthenticated(
                    f"this sign-in link expired (links last {CODE_SECONDS // 60} minutes); "
                    "run `legato ui` for a new one",
                    reason="SIGN_IN_CODE_EXPIRED",
                )
            name, token_expiry = await token_of(row.token_id)
            expire = _session_expiry(now, token_expiry)
            claimed = await session.execute(
                update(WebSessionRow)
                .where(
                    WebSessionRow.id == row.id,
                    WebSessionRow.code_hash == row.code_hash,
                    WebSessionRow.code_expire_time > now,
                )
                .values(code_hash=None, secret_hash=secret_hash, expire_time=expire)
                .returning(WebSessionRow.id)
            )
            if claimed.first() is None:
                raise Unauthenticated(
                    "this sign-in link was used already; run `legato ui` for a new one",
                    reason="SIGN_IN_CODE_USED",
                )
            audit.record(
                session,
                now=now,
                actor=Actor(name=name),
                action="SignIn",
                resource=f"tokens/{name}",
                details={"session_id": row.id, "via": "link"},
            )
            next_path = row.next_path
        return WebSession(secret, next_path, expire, _seconds(now, expire))

    async def open(self, principal: Principal) -> WebSession:
        """A session for a pasted API token, already authenticated as ``principal``."""
        if principal.is_agent or not principal.token_id:
            raise FailedPrecondition(
                "only an API token (lgt_...) signs in to the web UI",
                reason="NOT_AN_API_TOKEN",
            )
        now = self._clock()
        expire = _session_expiry(now, principal.expire_time)
        session_id, secret, secret_hash = token_secrets.new_secret("session")
        async with self._db.write() as session:
            session.add(
                WebSessionRow(
                    id=session_id,
                    token_id=principal.token_id,
                    secret_hash=secret_hash,
                    next_path="/",
                    create_time=now,
                    expire_time=expire,
                )
            )
            audit.record(
                session,
                now=now,
                actor=principal.actor(""),
                action="SignIn",
                resource=f"tokens/{principal.name}",
                details={"session_id": session_id, "via": "token"},
            )
        return WebSession(secret, "/", expire, _seconds(now, expire))

    async def close(self, secret: str, actor: Actor | None) -> bool:
        """Sign out: the session of ``secret`` ends; False when it was not open."""
        parsed = token_secrets.parse(secret)
        if parsed is None or parsed.kind != "session":
            return False
        now = self._clock()
        async with self._db.write() as session:
            row = (
                await session.execute(
                    select(WebSessionRow).where(WebSessionRow.id == parsed.id).with_for_update()
                )
            ).scalar_one_or_none()
            if (
                row is None
                or row.secret_hash is None
                or row.revoke_time is not None
                or not token_secrets.matches(parsed, row.secret_hash)
            ):
                return False
            row.revoke_time = now
            if actor is not None:
                audit.record(
                    session,
                    now=now,
                    actor=actor,
                    action="SignOut",
                    resource=f"tokens/{actor.name}",
                    details={"session_id": row.id},
                )
        return True

    async def prune(self) -> int:
        """Drop sessions and codes that ended more than a day ago; how many went."""
        before = self._clock() - timedelta(seconds=KEEP_ENDED_SECONDS)
        ended = func.coalesce(
            WebSessionRow.revoke_time, WebSessionRow.expire_time, WebSessionRow.code_expire_time
        )
        async with self._db.write() as session:
            gone = await session.execute(
                delete(WebSessionRow).where(ended < before).returning(WebSessionRow.id)
            )
            return len(gone.all())

    async def run_forever(self) -> None:
        while True:
            await asyncio.sleep(PRUNE_SECONDS)
            try:
                await self.prune()
            except Exception:
                log.exception("web_sessions_prune_failed")

    async def row(self, session_id: str) -> WebSessionRow | None:
        async with self._db.read() as session:
            return await session.get(WebSessionRow, session_id)


def _session_expiry(now: datetime, token_expiry: datetime | None) -> datetime:
    expire = now + timedelta(seconds=SESSION_SECONDS)
    return min(expire, token_expiry) if token_expiry is not None else expire


def _seconds(now: datetime, then: datetime) -> int:
    return max(0, int((then - now).total_seconds()))


def _next_path(path: str) -> str:
    """A path of this site to go to after signing in: never another site's address."""
    if (
        not path.startswith("/")
        or path.startswith("//")
        or "\\" in path
        or len(path) > MAX_NEXT_PATH
        or any(ord(char) < 0x20 for char in path)
    ):
        raise InvalidArgument(
            f"next_path must be a path of the web UI starting with '/', got {path[:100]!r}",
            reason="INVALID_ARGUMENT",
            violations=[FieldViolation("next_path", "a path starting with '/' (not '//')")],
        )
    return path
