"""Turns a presented credential into a Principal, cheaply.

Token rows are cached for ``ttl`` seconds (2 by default), so a busy client costs one
database read per token every two seconds, not one per call, and a revocation made on any
replica is honoured everywhere within that time (at once on the replica that made it).
Unknown token ids are cached as unknown for the same time, so a flood of made-up tokens
costs no more than one read each per ``ttl``. When tokens were last used is kept in memory
and written at most once a minute.

Agent streams are authenticated once, when they open, from the store (not the cache);
``still_valid`` is what the stream keeper asks every few seconds to close streams whose
token was revoked or has expired."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import structlog

from control_plane.access import token_secrets
from control_plane.access.principals import Principal
from control_plane.access.roles import parse_role
from control_plane.access.tokens import Tokens
from control_plane.access.web_sessions import WebSessions
from control_plane.errors import PermissionDenied, Unauthenticated
from control_plane.store.models import AgentTokenRow, ApiTokenRow, WebSessionRow

__all__ = ["NO_CREDENTIAL", "Authenticator"]

log = structlog.get_logger("legato.access")

NO_CREDENTIAL = (
    "this call needs a credential: send the metadata `authorization: Bearer <token>`. The "
    "CLI takes one from --token, LEGATO_TOKEN or its context (`legato config set-context`); "
    "an admin creates tokens with `legato tokens create`"
)
_CACHE_LIMIT = 10_000
SESSION_CREDENTIAL = "web session "
"""How a web session's principal names its credential (then the session's id)."""
USE_FLUSH_SECONDS = 60.0

Kind = Literal["api", "agent", "session"]
_NOT_API = {
    "agent": (
        "an agent enrolment token (lga_...) only lets an agent connect; call the API "
        "with an API token (`legato tokens create`)",
        "AGENT_TOKEN_NOT_ALLOWED",
    ),
    "session": (
        "a web UI session (lgs_...) is the browser's, sent as its cookie; call the API with "
        "an API token (`legato tokens create`)",
        "SESSION_NOT_A_TOKEN",
    ),
    "code": (
        "a sign-in code (lgc_...) opens a web UI session once; call the API with an API "
        "token (`legato tokens create`)",
        "SESSION_NOT_A_TOKEN",
    ),
}


@dataclass
class _Cached:
    checked: float
    row: ApiTokenRow | AgentTokenRow | WebSessionRow | None


class Authenticator:
    def __init__(
        self,
        tokens: Tokens,
        *,
        clock: Callable[[], datetime],
        sessions: WebSessions | None = None,
        ttl: float = 2.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._tokens = tokens
        self._sessions = sessions
        self._clock = clock
        self._ttl = ttl
        self._monotonic = monotonic
        self._cache: dict[tuple[Kind, str], _Cached] = {}
        self._used: dict[Kind, dict[str, datetime]] = {"api": {}, "agent": {}}

    # -- API tokens ---------------------------------------------------------------------

    async def api(self, presented: str, *, claimed_user: str = "") -> Principal:
        parsed = token_secrets.parse(presented)
        if parsed is None:
            shape = (
                "it starts like one but is not lgt_<16-character id>_<43-character secret>: "
                "cut short, or with something extra"
                if presented.strip().startswith("lgt_")
                else "API tokens look like lgt_<id>_<secret>"
            )
            raise Unauthenticated(
                f"the credential sent is not a Legato token ({shape}); "
                + NO_CREDENTIAL.split(": ", 1)[1],
                reason="CREDENTIAL_MALFORMED",
            )
        if parsed.kind != "api":
            message, reason = _NOT_API[parsed.kind]
            raise PermissionDenied(message, reason=reason)
        row = await self._row("api", parsed.id)
        if not isinstance(row, ApiTokenRow) or not token_secrets.matches(parsed, row.secret_hash):
            raise Unauthenticated(
                "the token is not valid: no token has that id, or its secret does not match",
                reason="INVALID_TOKEN",
            )
        self._check_alive("token", row.name, row.revoke_time, row.expire_time)
        self._used["api"][row.id] = self._clock()
        return Principal(
            kind="token",
            name=row.name,
            role=parse_role(row.role),
            token_id=row.id,
            expire_time=row.expire_time,
            credential=f"token {row.id}",
            claimed_user=claimed_user,
        )

    # -- web UI sessions ----------------------------------------------------------------

    async def web_session(self, presented: str, *, claimed_user: str = "") -> Principal:
        """The API token a web UI session (its cookie's value) acts as."""
        parsed = token_secrets.parse(presented)
        row = None
        if parsed is not None and parsed.kind == "session" and self._sessions is not None:
            row = await self._row("session", parsed.id)
        if (
            parsed is None
            or not isinstance(row, WebSessionRow)
            or row.secret_hash is None
            or not token_secrets.matches(parsed, row.secret_hash)
        ):
            raise Unauthenticated(
                "the web session is not valid (the server no longer knows it); sign in again",
                reason="SESSION_INVALID",
            )
        if row.revoke_time is not None:
            raise Unauthenticated(
                "you signed out of this web session; sign in again", reason="SESSION_ENDED"
            )
        if row.expire_time is not None and row.expire_time <= self._clock():
            raise Unauthenticated(
                f"the web session expired at {row.expire_time:%Y-%m-%d %H:%M:%S} UTC; sign in "
                "again",
                reason="SESSION_EXPIRED",
            )
        token = await self._row("api", row.token_id)
        if not isinstance(token, ApiTokenRow):
            raise Unauthenticated(
                "the token this web session was opened with no longer exists; sign in again",
                reason="SESSION_INVALID",
            )
        self._check_alive("token", token.name, token.revoke_time, token.expire_time)
        self._used["api"][token.id] = self._clock()
        expiry = [t for t in (row.expire_time, token.expire_time) if t is not None]
        return Principal(
            kind="token",
            name=token.name,
            role=parse_role(token.role),
            token_id=token.id,
            expire_time=min(expiry) if expiry else None,
            credential=f"{SESSION_CREDENTIAL}{row.id}",
            claimed_user=claimed_user,
        )

    async def token_for_session(self, token_id: str) -> tuple[str, datetime | None]:
        """The name and expiry of the live API token ``token_id`` (a sign-in link's),
        fresh from the store."""
        token = await self._row("api", token_id, fresh=True)
        if not isinstance(token, ApiTokenRow):
            raise Unauthenticated(
                "the token this sign-in link was made for no longer exists",
                reason="INVALID_TOKEN",
            )
        self._check_alive("token", token.name, token.revoke_time, token.expire_time)
        return token.name, token.expire_time

    def forget_session(self, session_id: str) -> None:
        """Drop a session from the cache (it was just signed out here)."""
        self._cache.pop(("session", session_id), None)

    # -- agents -------------------------------------------------------------------------

    async def agent(
        self, presented: str, *, certificate_agent: str = "", fresh: bool = False
    ) -> Principal:
        """The agent a stream belongs to, from its enrolment token and/or the agent named
        by its verified client certificate (both must agree when both are given).
        ``fresh`` reads the token from the store whatever the cache holds: an agent's
        stream is authenticated once, when it opens, so that read is cheap, and an agent
        cut off for a revoked token cannot come straight back through a replica whose
        cache still holds the token as it was."""
        if not presented:
            if not certificate_agent:
                raise Unauthenticated(
                    "an agent must prove who it is: give it an enrolment token (--token or "
                    "LEGATO_AGENT_TOKEN; an admin creates one with `legato agents token "
                    "create --name NAME`) or a client certificate that names it",
                    reason="AGENT_CREDENTIAL_MISSING",
                )
            enrolment = await self._tokens.enrolment_of(certificate_agent)
            if enrolment is None:
                raise PermissionDenied(
                    f"the client certificate names agent {certificate_agent!r}, which is not "
                    "enrolled (it has no live enrolment token); `legato agents token create "
                    f"--name {certificate_agent}` enrols it",
                    reason="AGENT_NOT_ENROLLED",
                )
            self._used["agent"][enrolment.id] = self._clock()
            return _agent_principal(enrolment, f"certificate {certificate_agent}")
        parsed = token_secrets.parse(presented)
        if parsed is None or parsed.kind != "agent":
            raise Unauthenticated(
                "the credential sent is not an agent enrolment token (they start with lga_); "
                "`legato agents token create --name NAME` makes one",
                reason="INVALID_TOKEN",
            )
        row = await self._row("agent", parsed.id, fresh=fresh)
        if not isinstance(row, AgentTokenRow) or not token_secrets.matches(parsed, row.secret_hash):
            raise Unauthenticated(
                "the enrolment token is not valid: no token has that id, or its secret does "
                "not match",
                reason="INVALID_TOKEN",
            )
        self._check_alive("agent token", row.id, row.revoke_time, row.expire_time)
        if certificate_agent and certificate_agent != row.agent:
            raise PermissionDenied(
                f"the enrolment token is for agent {row.agent!r} but the client certificate "
                f"names agent {certificate_agent!r}; use the certificate made for this agent",
                reason="AGENT_IDENTITY_MISMATCH",
            )
        self._used["agent"][row.id] = self._clock()
        return _agent_principal(row, f"token {row.id}")

    # -- revocation ---------------------------------------------------------------------

    async def still_valid(self, principal: Principal) -> bool:
        """Whether ``principal``'s token is still live (cached like a call's check)."""
        if not principal.token_id:
            return True
        now = self._clock()
        if principal.expire_time is not None and principal.expire_time <= now:
            return False
        session_id = principal.credential.removeprefix(SESSION_CREDENTIAL)
        if session_id != principal.credential:
            session = await self._row("session", session_id)
            if session is None or session.revoke_time is not None:
                return False
        kind: Kind = "agent" if principal.kind == "agent" else "api"
        row = await self._row(kind, principal.token_id)
        if row is None or row.revoke_time is not None:
            return False
        return row.expire_time is None or row.expire_time > now

    def forget(self, token_id: str) -> None:
        """Drop a token from the cache (it was just revoked here)."""
        self._cache.pop(("api", token_id), None)
        self._cache.pop(("agent", token_id), None)

    # -- last use -----------------------------------------------------------------------

    async def flush_use(self) -> None:
        api, agent = self._used["api"], self._used["agent"]
        self._used = {"api": {}, "agent": {}}
        await self._tokens.record_use(api, agent)

    async def run_forever(self) -> None:
        while True:
            await asyncio.sleep(USE_FLUSH_SECONDS)
            try:
                await self.flush_use()
            except Exception:
                log.exception("token_use_flush_failed")

    # -- plumbing -----------------------------------------------------------------------

    async def _row(
        self, kind: Kind, token_id: str, *, fresh: bool = False
    ) -> ApiTokenRow | AgentTokenRow | WebSessionRow | None:
        now = self._monotonic()
        cached = self._cache.get((kind, token_id))
        if cached is not None and now - cached.checked < self._ttl and not fresh:
            return cached.row
        row: ApiTokenRow | AgentTokenRow | WebSessionRow | None
        if kind == "api":
            row = await self._tokens.api_token(token_id)
        elif kind == "session":
            row = await self._sessions.row(token_id) if self._sessions is not None else None
        else:
            row = await self._tokens.agent_token(token_id)
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[(kind, token_id)] = _Cached(now, row)
        return row

    def _check_alive(
        self, what: str, name: str, revoked: datetime | None, expires: datetime | None
    ) -> None:
        if revoked is not None:
            raise Unauthenticated(
                f"the {what} {name!r} was revoked at {revoked:%Y-%m-%d %H:%M:%S} UTC; ask an "
                "admin for a new one",
                reason="TOKEN_REVOKED",
            )
        if expires is not None and expires <= self._clock():
            raise Unauthenticated(
                f"the {what} {name!r} expired at {expires:%Y-%m-%d %H:%M:%S} UTC; ask an admin "
                "for a new one",
                reason="TOKEN_EXPIRED",
            )


def _agent_principal(row: AgentTokenRow, credential: str) -> Principal:
    return Principal(
        kind="agent",
        name=row.agent,
        token_id=row.id,
        expire_time=row.expire_time,
        labels={str(k): str(v) for k, v in (row.labels or {}).items()},
        connections=tuple(row.connections or ()),
        credential=credential,
    )
