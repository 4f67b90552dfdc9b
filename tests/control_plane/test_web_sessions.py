"""Web UI sessions in the store (``access/web_sessions.py``) and their check on every call
(``Authenticator.web_session``), on both databases, with the clocks moved by hand: a
sign-in code works once and only for five minutes, a session ends at its time, on
sign-out, or when its token is revoked or expires — whichever comes first."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from control_plane.access.authenticator import Authenticator
from control_plane.access.principals import Principal
from control_plane.access.tokens import Tokens
from control_plane.access.web_sessions import (
    CODE_SECONDS,
    KEEP_ENDED_SECONDS,
    SESSION_SECONDS,
    WebSessions,
)
from control_plane.errors import FailedPrecondition, InvalidArgument, Unauthenticated
from control_plane.store.db import Database
from control_plane.store.migrate import upgrade
from tests.control_plane.test_tokens import ADMIN, Clocks


@dataclass
class World:
    clocks: Clocks
    tokens: Tokens
    sessions: WebSessions
    auth: Authenticator

    async def principal(self, role: str = "viewer", **options: object) -> tuple[str, Principal]:
        created = await self.tokens.create(f"alice-{role}", role, ADMIN, **options)  # type: ignore[arg-type]
        return created.secret, await self.auth.api(created.secret)


@pytest.fixture
async def world(db_url: str) -> AsyncIterator[World]:
    db = Database(db_url)
    await upgrade(db)
    clocks = Clocks()
    tokens = Tokens(db, clock=clocks.wall)
    sessions = WebSessions(db, clock=clocks.wall)
    sessions.base_url = "https://legato.example"
    auth = Authenticator(
        tokens, clock=clocks.wall, ttl=2.0, monotonic=clocks.monotonic, sessions=sessions
    )
    try:
        yield World(clocks, tokens, sessions, auth)
    finally:
        await db.dispose()


async def test_a_code_works_once_and_its_session_acts_as_the_token(world: World) -> None:
    _, alice = await world.principal("operator")
    link = await world.sessions.create_code(alice, "/runs/r1", alice.actor("req-1"))
    assert link.url.startswith("https://legato.example/ui/signin?code=lgc_")
    assert (link.expire_time - world.clocks.now).total_seconds() == CODE_SECONDS
    code = link.url.split("code=", 1)[1]

    session = await world.sessions.exchange(code, world.auth.token_for_session)
    assert session.secret.startswith("lgs_") and session.next_path == "/runs/r1"
    assert session.max_age == SESSION_SECONDS
    me = await world.auth.web_session(session.secret)
    assert (me.name, me.role, me.token_id) == ("alice-operator", "operator", alice.token_id)
    assert me.credential.startswith("web session ")

    with pytest.raises(Unauthenticated, match="used already") as spent:
        await world.sessions.exchange(code, world.auth.token_for_session)
    assert spent.value.reason == "SIGN_IN_CODE_USED"
    forged = code[:-4] + ("AAAA" if not code.endswith("AAAA") else "BBBB")
    with pytest.raises(Unauthenticated):
        await world.sessions.exchange(forged, world.auth.token_for_session)


async def test_a_code_expires_after_five_minutes(world: World) -> None:
    _, alice = await world.principal()
    link = await world.sessions.create_code(alice, "/", alice.actor())
    world.clocks.advance(CODE_SECONDS + 1)
    with pytest.raises(Unauthenticated, match="expired") as expired:
        await world.sessions.exchange(link.url.split("code=")[1], world.auth.token_for_session)
    assert expired.value.reason == "SIGN_IN_CODE_EXPIRED"


async def test_a_session_ends_at_its_time_on_sign_out_or_with_its_token(world: World) -> None:
    secret, alice = await world.principal()
    first = await world.sessions.open(alice)
    world.clocks.advance(SESSION_SECONDS + 1)
    with pytest.raises(Unauthenticated, match="expired") as expired:
        await world.auth.web_session(first.secret)
    assert expired.value.reason == "SESSION_EXPIRED"

    second = await world.sessions.open(await world.auth.api(secret))
    assert await world.sessions.close(second.secret, alice.actor())
    world.clocks.advance(3)  # past the cache
    with pytest.raises(Unauthenticated, match="signed out") as ended:
        await world.auth.web_session(second.secret)
    assert ended.value.reason == "SESSION_ENDED"
    assert not await world.sessions.close(second.secret, alice.actor())  # once

    third = await world.sessions.open(await world.auth.api(secret))
    principal = await world.auth.web_session(third.secret)
    await world.tokens.revoke("alice-viewer", ADMIN)
    world.auth.forget(alice.token_id)
    with pytest.raises(Unauthenticated) as revoked:
        await world.auth.web_session(third.secret)
    assert revoked.value.reason == "TOKEN_REVOKED"
    assert not await world.auth.still_valid(principal)  # its open streams end too


async def test_a_session_never_outlives_its_token(world: World) -> None:
    hour = world.clocks.now.replace(hour=world.clocks.now.hour + 1)
    _, short = await world.principal(expire_time=hour)
    session = await world.sessions.open(short)
    assert session.expire_time == hour and session.max_age == 3600
    assert (await world.auth.web_session(session.secret)).expire_time == hour


async def test_what_cannot_sign_in(world: World) -> None:
    _, alice = await world.principal()
    for path in ("https://evil.example/", "//evil.example", "runs", "/\\evil", "/a\nb"):
        with pytest.raises(InvalidArgument, match="next_path"):
            await world.sessions.create_code(alice, path, alice.actor())
    agent = Principal(kind="agent", name="a1", token_id="x", credential="token x")
    with pytest.raises(FailedPrecondition, match="API token"):
        await world.sessions.create_code(agent, "/", agent.actor())
    anonymous = Principal(kind="anonymous", name="anonymous", role="admin", credential="none")
    with pytest.raises(FailedPrecondition, match="authentication is off") as off:
        await world.sessions.create_code(anonymous, "/", anonymous.actor())
    assert off.value.reason == "AUTH_OFF"
    world.sessions.base_url = ""
    with pytest.raises(FailedPrecondition, match="--http-listen") as unserved:
        await world.sessions.create_code(alice, "/", alice.actor())
    assert unserved.value.reason == "UI_NOT_SERVED"
    for presented in ("", "lgs_nope", "lgt_aaaaaaaaaaaaaaaa_" + "a" * 43):
        with pytest.raises(Unauthenticated) as invalid:
            await world.auth.web_session(presented)
        assert invalid.value.reason == "SESSION_INVALID"


async def test_ended_sessions_and_spent_codes_are_pruned_after_a_day(world: World) -> None:
    _, alice = await world.principal()
    live = await world.sessions.open(alice)
    ended = await world.sessions.open(alice)
    await world.sessions.close(ended.secret, alice.actor())
    unused = await world.sessions.create_code(alice, "/", alice.actor())
    world.clocks.advance(3600)
    assert await world.sessions.prune() == 0  # ended, but within the day
    world.clocks.advance(KEEP_ENDED_SECONDS)
    assert await world.sessions.prune() == 2  # the signed-out one and the unused code
    live_id = live.secret.split("_")[1]
    assert await world.sessions.row(live_id) is not None  # expired less than a day ago
    assert unused.url  # its row is gone: the link no longer works
    with pytest.raises(Unauthenticated):
        await world.sessions.exchange(unused.url.split("code=")[1], world.auth.token_for_session)
    world.clocks.advance(SESSION_SECONDS)
    assert await world.sessions.prune() == 1  # the live one, a day after it expired
    assert await world.sessions.row(live_id) is None


async def test_a_code_exchanged_twice_at_once_opens_one_session(world: World) -> None:
    _, alice = await world.principal()
    link = await world.sessions.create_code(alice, "/", alice.actor())
    code = link.url.split("code=")[1]
    results = await asyncio.gather(
        *(world.sessions.exchange(code, world.auth.token_for_session) for _ in range(4)),
        return_exceptions=True,
    )
    opened = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, Unauthenticated)]
    assert len(opened) == 1 and len(refused) == 3, results
    assert {r.reason for r in refused} == {"SIGN_IN_CODE_USED"}
