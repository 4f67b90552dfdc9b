"""API tokens and agent enrolment tokens in the store (``access/tokens.py``), their
secrets (``access/token_secrets.py``) and the cached check every call goes through
(``access/authenticator.py``), on both databases. Time is injected: a wall clock for
expiry, a monotonic one for the cache, so nothing here sleeps."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from control_plane.access import token_secrets
from control_plane.access.actors import Actor
from control_plane.access.authenticator import Authenticator
from control_plane.access.tokens import Tokens
from control_plane.errors import (
    AlreadyExists,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)
from control_plane.store.db import Database
from control_plane.store.migrate import upgrade
from control_plane.store.models import AgentTokenRow, ApiTokenRow, AuditEntryRow

ADMIN = Actor("root", request_id="req-1", kind="token")
START = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@dataclass
class Clocks:
    """The wall clock (expiry) and the monotonic one (cache), both moved by hand."""

    now: datetime = START
    mono: float = 1000.0

    def wall(self) -> datetime:
        return self.now

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
        self.mono += seconds


class CountingTokens(Tokens):
    """The real store, counting the lookups authentication makes."""

    reads: list[str]

    def __init__(self, db: Database, *, clock: Clocks) -> None:
        super().__init__(db, clock=clock.wall)
        self.reads = []

    async def api_token(self, token_id: str) -> ApiTokenRow | None:
        self.reads.append(token_id)
        return await super().api_token(token_id)

    async def agent_token(self, token_id: str) -> AgentTokenRow | None:
        self.reads.append(token_id)
        return await super().agent_token(token_id)


@dataclass
class World:
    db: Database
    clocks: Clocks
    tokens: CountingTokens
    auth: Authenticator

    async def audit(self) -> list[AuditEntryRow]:
        async with self.db.read() as session:
            rows = await session.execute(select(AuditEntryRow).order_by(AuditEntryRow.id))
            return list(rows.scalars())


@pytest.fixture
async def world(db_url: str) -> AsyncIterator[World]:
    db = Database(db_url)
    await upgrade(db)
    clocks = Clocks()
    tokens = CountingTokens(db, clock=clocks)
    auth = Authenticator(tokens, clock=clocks.wall, ttl=2.0, monotonic=clocks.monotonic)
    try:
        yield World(db, clocks, tokens, auth)
    finally:
        await db.dispose()


# -- secrets -----------------------------------------------------------------------------


def test_a_secret_names_its_kind_and_id_and_only_its_hash_is_kept() -> None:
    token_id, secret, digest = token_secrets.new_secret("api")
    prefix, found_id, rest = secret.split("_", 2)
    assert (prefix, found_id) == ("lgt", token_id)
    assert len(token_id) == 16 and len(rest) == 43
    assert digest == hashlib.sha256(rest.encode()).hexdigest()
    assert secret not in digest and rest not in digest
    parsed = token_secrets.parse(secret)
    assert parsed is not None and (parsed.kind, parsed.id) == ("api", token_id)
    assert token_secrets.matches(parsed, digest)

    agent_id, agent_secret, _ = token_secrets.new_secret("agent")
    assert agent_secret.startswith(f"lga_{agent_id}_")
    agent = token_secrets.parse(agent_secret)
    assert agent is not None and agent.kind == "agent"
    assert not token_secrets.matches(agent, digest)
    assert token_secrets.new_secret("api")[1] != secret


@pytest.mark.parametrize(
    "value",
    [
        "",
        "garbage",
        "Bearer lgt_x",
        "lgx_aaaaaaaaaaaaaaaa_" + "a" * 43,  # unknown prefix
        "lgt_AAAAAAAAAAAAAAAA_" + "a" * 43,  # the id is lower-case base32
        "lgt_aaaaaaaaaaaaaaa_" + "a" * 43,  # id one short
        "lgt_aaaaaaaaaaaaaaaa_" + "a" * 42,  # secret one short
        "lgt_aaaaaaaaaaaaaaaa_" + "a" * 43 + "!",
    ],
)
def test_anything_not_shaped_like_a_token_is_not_parsed(value: str) -> None:
    assert token_secrets.parse(value) is None


def test_a_presented_token_may_carry_surrounding_whitespace() -> None:
    _, secret, digest = token_secrets.new_secret("api")
    parsed = token_secrets.parse(f"  {secret}\n")
    assert parsed is not None and token_secrets.matches(parsed, digest)


# -- API tokens in the store -------------------------------------------------------------


async def test_create_returns_the_secret_once_and_records_who_made_it(world: World) -> None:
    created = await world.tokens.create("ci", "operator", ADMIN, description="deploys")
    row = created.row
    assert (row.name, row.role, row.creator, row.create_time) == ("ci", "operator", "root", START)
    assert created.secret.startswith(f"lgt_{row.id}_")
    stored = await world.tokens.api_token(row.id)
    assert stored is not None and stored.description == "deploys"
    assert created.secret.split("_", 2)[2] not in repr(stored.__dict__)
    (entry,) = await world.audit()
    assert (entry.action, entry.resource, entry.actor, entry.actor_kind) == (
        "CreateToken",
        "tokens/ci",
        "root",
        "token",
    )
    assert (entry.request_id, entry.outcome, entry.details["role"]) == (
        "req-1",
        "succeeded",
        "operator",
    )
    assert created.secret not in str(entry.details)


async def test_invalid_requests_name_each_field(world: World) -> None:
    with pytest.raises(InvalidArgument) as caught:
        await world.tokens.create(
            "no spaces", None, ADMIN, description="x" * 1001, expire_time=START - timedelta(1)
        )
    fields = [v.field for v in caught.value.violations]
    assert fields == ["name", "role", "description", "expire_time"]
    assert caught.value.message.startswith("the token cannot be created: name: 'no spaces'")
    assert "in the past" in caught.value.violations[3].description
    with pytest.raises(InvalidArgument, match="name: required"):
        await world.tokens.create("", "viewer", ADMIN)
    assert await world.audit() == []


async def test_a_live_name_is_unique_and_reusable_once_revoked(world: World) -> None:
    first = await world.tokens.create("ci", "viewer", ADMIN)
    with pytest.raises(AlreadyExists, match="legato tokens revoke ci") as caught:
        await world.tokens.create("ci", "admin", ADMIN)
    assert caught.value.reason == "TOKEN_EXISTS"
    revoked = await world.tokens.revoke("ci", ADMIN)
    assert (revoked.id, revoked.revoke_time) == (first.row.id, START)
    rotated = await world.tokens.create("ci", "admin", ADMIN)
    assert rotated.row.id != first.row.id
    # By name, the live token is the one revoked next; by id, any.
    world.clocks.advance(5)
    again = await world.tokens.revoke("ci", ADMIN)
    assert again.id == rotated.row.id
    assert (await world.tokens.revoke(first.row.id, ADMIN)).revoke_time == START
    actions = [(e.action, e.details.get("token_id")) for e in await world.audit()]
    assert actions == [
        ("CreateToken", first.row.id),
        ("RevokeToken", first.row.id),
        ("CreateToken", rotated.row.id),
        ("RevokeToken", rotated.row.id),
    ]  # revoking a revoked token changes nothing and records nothing
    with pytest.raises(NotFound, match="no API token named 'nope'; `legato tokens list`"):
        await world.tokens.revoke("nope", ADMIN)


async def test_list_hides_revoked_and_expired_tokens_and_pages(world: World) -> None:
    for name in ("a", "b", "c", "d"):
        await world.tokens.create(name, "viewer", ADMIN)
    await world.tokens.create("e", "viewer", ADMIN, expire_time=START + timedelta(hours=1))
    await world.tokens.revoke("b", ADMIN)
    world.clocks.advance(3600)  # e expires

    async def names(show_revoked: bool, size: int) -> list[str]:
        seen: list[str] = []
        page_token = ""
        while True:
            page = await world.tokens.list(
                show_revoked=show_revoked, page_size=size, page_token=page_token
            )
            assert len(page.items) <= size
            seen += [row.name for row in page.items]
            page_token = page.next_page_token
            if not page_token:
                return seen

    assert await names(False, 2) == ["a", "c", "d"]
    assert await names(True, 2) == ["a", "b", "c", "d", "e"]
    assert await world.tokens.count_admins() == 0
    await world.tokens.create("boss", "admin", ADMIN)
    assert await world.tokens.count_admins() == 1


# -- agent enrolment tokens in the store -------------------------------------------------


async def test_an_enrolment_carries_labels_and_connections(world: World) -> None:
    created = await world.tokens.create_agent(
        "a1", ADMIN, labels={"region": "eu"}, connections=[" warehouse ", "warehouse", "crm"]
    )
    row = created.row
    assert created.secret.startswith(f"lga_{row.id}_")
    assert (row.agent, row.labels, row.connections) == (
        "a1",
        {"region": "eu"},
        ["warehouse", "crm"],
    )
    (entry,) = await world.audit()
    assert (entry.action, entry.resource, entry.request_id) == (
        "CreateAgentToken",
        "agents/a1",
        "req-1",
    )
    assert entry.details["connections"] == ["warehouse", "crm"]


async def test_an_enrolment_refuses_what_an_agent_could_abuse(world: World) -> None:
    with pytest.raises(InvalidArgument) as caught:
        await world.tokens.create_agent(
            "bad name",
            ADMIN,
            labels={"connection/warehouse": "true", "ok": "x" * 201},
            connections=["warehouse", "no spaces"],
        )
    assert [v.field for v in caught.value.violations] == [
        "agent",
        "labels[connection/warehouse]",
        "labels[ok]",
        "connections[1]",
    ]
    assert "--connections" in caught.value.violations[1].description
    assert await world.audit() == []


async def test_enrolment_lookups_see_only_live_tokens(world: World) -> None:
    old = await world.tokens.create_agent("a1", ADMIN, labels={"v": "1"})
    world.clocks.advance(1)
    new = await world.tokens.create_agent("a1", ADMIN, labels={"v": "2"})
    short = await world.tokens.create_agent("a2", ADMIN, expire_time=START + timedelta(minutes=1))
    newest = await world.tokens.enrolment_of("a1")
    assert newest is not None and newest.id == new.row.id
    await world.tokens.revoke_agent(new.row.id, ADMIN)
    fallback = await world.tokens.enrolment_of("a1")
    assert fallback is not None and fallback.id == old.row.id
    world.clocks.advance(60)
    assert await world.tokens.enrolment_of("a2") is None
    ids = {old.row.id, new.row.id, short.row.id, "unknownunknownxx"}
    assert await world.tokens.dead_agent_tokens(ids) == ids - {old.row.id}
    assert await world.tokens.dead_agent_tokens(set()) == set()
    page = await world.tokens.list_agent(
        agent="a1", show_revoked=False, page_size=10, page_token=""
    )
    assert [row.id for row in page.items] == [old.row.id]
    with pytest.raises(NotFound, match="`legato agents token list`"):
        await world.tokens.revoke_agent("unknownunknownxx", ADMIN)


async def test_last_use_is_stored_in_batches(world: World) -> None:
    api = await world.tokens.create("ci", "viewer", ADMIN)
    agent = await world.tokens.create_agent("a1", ADMIN)
    world.clocks.advance(30)
    await world.auth.api(api.secret)
    await world.auth.agent(agent.secret)
    await world.auth.flush_use()
    stored_api = await world.tokens.api_token(api.row.id)
    stored_agent = await world.tokens.agent_token(agent.row.id)
    assert stored_api is not None and stored_api.last_use_time == START + timedelta(seconds=30)
    assert stored_agent is not None and stored_agent.last_use_time == START + timedelta(seconds=30)
    await world.auth.flush_use()  # nothing new: no write at all


# -- the authenticator -------------------------------------------------------------------


async def test_a_valid_api_token_is_its_name_and_role(world: World) -> None:
    created = await world.tokens.create("ci", "editor", ADMIN, expire_time=START + timedelta(1))
    who = await world.auth.api(created.secret, claimed_user="alice")
    assert (who.kind, who.name, who.role, who.token_id) == ("token", "ci", "editor", created.row.id)
    assert who.expire_time == START + timedelta(1)
    assert who.actor("r1") == Actor("ci", request_id="r1", kind="token")
    assert who.actor("r1").details == {"client_user": "alice"}


async def test_bad_credentials_are_refused_with_what_to_do(world: World) -> None:
    created = await world.tokens.create("ci", "viewer", ADMIN)
    agent = await world.tokens.create_agent("a1", ADMIN)
    with pytest.raises(Unauthenticated, match=r"not a Legato token .*authorization: Bearer"):
        await world.auth.api("hunter2")
    forged = created.secret[:-4] + ("AAAA" if not created.secret.endswith("AAAA") else "BBBB")
    with pytest.raises(Unauthenticated, match="secret does not match") as caught:
        await world.auth.api(forged)
    assert caught.value.reason == "INVALID_TOKEN"
    unknown = token_secrets.new_secret("api")[1]
    with pytest.raises(Unauthenticated, match="no token has that id"):
        await world.auth.api(unknown)
    with pytest.raises(PermissionDenied, match="only lets an agent connect") as denied:
        await world.auth.api(agent.secret)
    assert denied.value.reason == "AGENT_TOKEN_NOT_ALLOWED"
    with pytest.raises(Unauthenticated, match="not an agent enrolment token"):
        await world.auth.agent(created.secret)


async def test_one_store_read_per_token_per_ttl_however_many_calls(world: World) -> None:
    created = await world.tokens.create("ci", "viewer", ADMIN)
    unknown = token_secrets.new_secret("api")[1]
    for _ in range(500):
        await world.auth.api(created.secret)
        with pytest.raises(Unauthenticated):
            await world.auth.api(unknown)
        world.clocks.mono += 0.003  # 500 calls of each within 1.5 s
    assert world.tokens.reads == [created.row.id, unknown.split("_")[1]]
    world.clocks.mono += 0.6  # the TTL has passed: one read each again
    for _ in range(100):
        await world.auth.api(created.secret)
    assert world.tokens.reads.count(created.row.id) == 2


async def test_a_revocation_elsewhere_is_seen_after_the_ttl(world: World) -> None:
    created = await world.tokens.create("ci", "viewer", ADMIN)
    await world.auth.api(created.secret)
    # Another replica revokes it: this one keeps its cached row until the TTL ends.
    await world.tokens.revoke("ci", ADMIN)
    world.clocks.mono += 1.9
    await world.auth.api(created.secret)
    world.clocks.mono += 0.2
    with pytest.raises(Unauthenticated, match="'ci' was revoked at 2026-12-01 12:00:00") as caught:
        await world.auth.api(created.secret)
    assert caught.value.reason == "TOKEN_REVOKED"


async def test_forget_makes_a_revocation_count_at_once(world: World) -> None:
    created = await world.tokens.create("ci", "viewer", ADMIN)
    agent = await world.tokens.create_agent("a1", ADMIN)
    await world.auth.api(created.secret)
    who = await world.auth.agent(agent.secret)
    await world.tokens.revoke("ci", ADMIN)
    await world.tokens.revoke_agent(agent.row.id, ADMIN)
    world.auth.forget(created.row.id)
    world.auth.forget(agent.row.id)
    with pytest.raises(Unauthenticated, match="revoked"):
        await world.auth.api(created.secret)
    with pytest.raises(Unauthenticated, match=r"agent token .* was revoked"):
        await world.auth.agent(agent.secret)
    assert not await world.auth.still_valid(who)


async def test_expiry_counts_at_once_even_for_a_cached_token(world: World) -> None:
    created = await world.tokens.create(
        "ci", "viewer", ADMIN, expire_time=START + timedelta(hours=1)
    )
    who = await world.auth.api(created.secret)
    assert await world.auth.still_valid(who)
    world.clocks.now += timedelta(hours=1)  # the wall clock only: the row is still cached
    with pytest.raises(Unauthenticated, match="expired at 2026-12-01 13:00:00 UTC") as caught:
        await world.auth.api(created.secret)
    assert caught.value.reason == "TOKEN_EXPIRED"
    assert not await world.auth.still_valid(who)
    assert world.tokens.reads == [created.row.id]


async def test_an_agent_is_who_its_enrolment_says(world: World) -> None:
    created = await world.tokens.create_agent(
        "a1", ADMIN, labels={"region": "eu"}, connections=["warehouse"]
    )
    who = await world.auth.agent(created.secret)
    assert (who.kind, who.name, who.labels, who.connections) == (
        "agent",
        "a1",
        {"region": "eu"},
        ("warehouse",),
    )
    assert who.allows_connection("warehouse") and not who.allows_connection("crm")
    assert who.credential == f"token {created.row.id}"
    # A client certificate naming the same agent agrees; one naming another does not.
    assert (await world.auth.agent(created.secret, certificate_agent="a1")).name == "a1"
    with pytest.raises(PermissionDenied, match="names agent 'a2'") as caught:
        await world.auth.agent(created.secret, certificate_agent="a2")
    assert caught.value.reason == "AGENT_IDENTITY_MISMATCH"


async def test_a_certificate_alone_gets_the_agents_live_enrolment(world: World) -> None:
    with pytest.raises(Unauthenticated, match="legato agents token create --name NAME") as caught:
        await world.auth.agent("")
    assert caught.value.reason == "AGENT_CREDENTIAL_MISSING"
    with pytest.raises(PermissionDenied, match="'a1', which is not enrolled") as denied:
        await world.auth.agent("", certificate_agent="a1")
    assert denied.value.reason == "AGENT_NOT_ENROLLED"
    created = await world.tokens.create_agent("a1", ADMIN, labels={"gpu": "yes"})
    who = await world.auth.agent("", certificate_agent="a1")
    assert (who.name, who.labels, who.token_id) == ("a1", {"gpu": "yes"}, created.row.id)
    assert who.credential == "certificate a1"


async def test_an_expired_or_revoked_enrolment_is_refused(world: World) -> None:
    created = await world.tokens.create_agent("a1", ADMIN, expire_time=START + timedelta(days=1))
    await world.auth.agent(created.secret)
    world.clocks.advance(86400)
    with pytest.raises(Unauthenticated, match="expired") as caught:
        await world.auth.agent(created.secret)
    assert caught.value.reason == "TOKEN_EXPIRED"


async def test_an_agent_stream_opening_reads_its_token_afresh(world: World) -> None:
    created = await world.tokens.create_agent("a1", ADMIN)
    await world.auth.agent(created.secret, fresh=True)
    await world.tokens.revoke_agent(created.row.id, ADMIN)  # on another replica
    await world.auth.agent(created.secret)  # a call within the TTL: the cached row
    with pytest.raises(Unauthenticated, match="was revoked"):
        await world.auth.agent(created.secret, fresh=True)
    assert world.tokens.reads == [created.row.id] * 2
