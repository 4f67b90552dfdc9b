"""API tokens and agent enrolment tokens: create (the secret is returned once and only
its hash is stored), list, revoke, and the lookups authentication needs.

Every change writes its activity-log entry in its own transaction. A token's name is
unique among the tokens not revoked (a partial unique index), so a name can be reused
after its token was revoked, which is how a token is rotated under the same name."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.elements import ColumnElement

from control_plane.access import token_secrets
from control_plane.access.actors import Actor
from control_plane.access.principals import ANY_CONNECTION
from control_plane.access.roles import ROLES, Role
from control_plane.errors import AlreadyExists, FieldViolation, InvalidArgument, NotFound
from control_plane.pagination import Page, PageRequest
from control_plane.quoting import quote
from control_plane.store import audit
from control_plane.store.db import Database
from control_plane.store.models import AgentTokenRow, ApiTokenRow

__all__ = ["AGENT_NAME", "CreatedAgentToken", "CreatedToken", "Tokens"]

TOKEN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,99}")
AGENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
LABEL_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,62}")
CONNECTION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
MAX_LABEL_VALUE = 200
MAX_LABELS = 64
MAX_DESCRIPTION = 1000


@dataclass(frozen=True)
class CreatedToken:
    row: ApiTokenRow
    secret: str


@dataclass(frozen=True)
class CreatedAgentToken:
    row: AgentTokenRow
    secret: str


class Tokens:
    def __init__(self, db: Database, *, clock: Callable[[], datetime]) -> None:
        self._db = db
        self._clock = clock

    # -- API tokens ---------------------------------------------------------------------

    async def create(
        self,
        name: str,
        role: Role | None,
        actor: Actor,
        *,
        description: str = "",
        expire_time: datetime | None = None,
    ) -> CreatedToken:
        problems = _name_problems("name", name, TOKEN_NAME, "letters, digits, '.', '_', '-', '@'")
        if role is None:
            problems.append(FieldViolation("role", f"required: one of {', '.join(ROLES)}"))
        if len(description) > MAX_DESCRIPTION:
            problems.append(FieldViolation("description", f"at most {MAX_DESCRIPTION} characters"))
        now = self._clock()
        problems += _expiry_problems(expire_time, now)
        if problems:
            raise _invalid("the token cannot be created", problems)
        assert role is not None
        token_id, secret, digest = token_secrets.new_secret("api")
        row = ApiTokenRow(
            id=token_id,
            name=name,
            role=role,
            description=description,
            secret_hash=digest,
            creator=actor.name,
            create_time=now,
            expire_time=expire_time,
        )
        try:
            async with self._db.write() as session:
                live = await session.execute(
                    select(ApiTokenRow.id).where(
                        ApiTokenRow.name == name, ApiTokenRow.revoke_time.is_(None)
                    )
                )
                if live.first() is not None:
                    raise _name_taken(name)
                session.add(row)
                audit.record(
                    session,
                    now=now,
                    actor=actor,
                    action="CreateToken",
                    resource=f"tokens/{name}",
                    details={"token_id": token_id, "role": role, **_expiry(expire_time)},
                )
        except IntegrityError:
            raise _name_taken(name) from None
        return CreatedToken(row=row, secret=secret)

    async def list(
        self, *, show_revoked: bool, page_size: int, page_token: str
    ) -> Page[ApiTokenRow]:
        page = PageRequest.parse(page_size, page_token, show_revoked=show_revoked)
        stmt = select(ApiTokenRow).order_by(ApiTokenRow.name, ApiTokenRow.id).limit(page.size + 1)
        if not show_revoked:
            now = self._clock()
            stmt = stmt.where(
                ApiTokenRow.revoke_time.is_(None),
                or_(ApiTokenRow.expire_time.is_(None), ApiTokenRow.expire_time > now),
            )
        if page.after is not None:
            name, token_id = page.after
            stmt = stmt.where(
                or_(
                    ApiTokenRow.name > name,
                    (ApiTokenRow.name == name) & (ApiTokenRow.id > token_id),
                )
            )
        async with self._db.read() as session:
            rows = list((await session.execute(stmt)).scalars())
        return page.page(rows, key=lambda row: [row.name, row.id])

    async def revoke(self, name_or_id: str, actor: Actor) -> ApiTokenRow:
        now = self._clock()
        async with self._db.write() as session:
            row = (
                (
                    await session.execute(
                        select(ApiTokenRow)
                        .where(
                            or_(ApiTokenRow.name == name_or_id, ApiTokenRow.id == name_or_id),
                        )
                        .order_by(ApiTokenRow.revoke_time.is_(None).desc(), ApiTokenRow.create_time)
                        .with_for_update()
                    )
                )
                .scalars()
                .first()
            )
            if row is None:
                raise NotFound(
                    f"there is no API token named {quote(name_or_id)}; `legato tokens list` "
                    "lists them",
                    reason="TOKEN_NOT_FOUND",
                )
            if row.revoke_time is None:
                row.revoke_time = now
                audit.record(
                    session,
                    now=now,
                    actor=actor,
                    action="RevokeToken",
                    resource=f"tokens/{row.name}",
                    details={"token_id": row.id},
                )
        return row

    async def api_token(self, token_id: str) -> ApiTokenRow | None:
        async with self._db.read() as session:
            return await session.get(ApiTokenRow, token_id)

    async def count_admins(self) -> int:
        now = self._clock()
        async with self._db.read() as session:
            rows = await session.execute(
                select(ApiTokenRow.id).where(
                    ApiTokenRow.role == "admin",
                    ApiTokenRow.revoke_time.is_(None),
                    or_(ApiTokenRow.expire_time.is_(None), ApiTokenRow.expire_time > now),
                )
            )
            return len(rows.all())

    # -- agent enrolment tokens ---------------------------------------------------------

    async def create_agent(
        self,
        agent: str,
        actor: Actor,
        *,
        labels: Mapping[str, str] | None = None,
        connections: Sequence[str] = (),
        expire_time: datetime | None = None,
    ) -> CreatedAgentToken:
        problems = _name_problems("agent", agent, AGENT_NAME, "letters, digits, '.', '_', '-'")
        labels = dict(labels or {})
        if len(labels) > MAX_LABELS:
            problems.append(FieldViolation("labels", f"at most {MAX_LABELS} labels"))
        for key, value in labels.items():
            if not LABEL_KEY.fullmatch(key) or key.startswith("connection/"):
                problems.append(
                    FieldViolation(
                        f"labels[{_short(key)}]",
                        "a label key is letters, digits, '.', '_', '/', '-' (at most 63), not "
                        "starting with connection/ (connections are given with --connections)",
                    )
                )
            elif len(value) > MAX_LABEL_VALUE or "\x00" in value:
                problems.append(
                    FieldViolation(f"labels[{key}]", f"at most {MAX_LABEL_VALUE} characters")
                )
        names = list(dict.fromkeys(c.strip() for c in connections if c.strip()))
        for index, name in enumerate(names):
            if name != ANY_CONNECTION and not CONNECTION_NAME.fullmatch(name):
                problems.append(
                    FieldViolation(
                        f"connections[{index}]",
                        f"{_short(name)!r} is not a connection name (letters, digits, '.', "
                        "'_', '-') or *",
                    )
                )
        now = self._clock()
        problems += _expiry_problems(expire_time, now)
        if problems:
            raise _invalid("the agent token cannot be created", problems)
        token_id, secret, digest = token_secrets.new_secret("agent")
        row = AgentTokenRow(
            id=token_id,
            agent=agent,
            labels=labels,
            connections=names,
            secret_hash=digest,
            creator=actor.name,
            create_time=now,
            expire_time=expire_time,
        )
        async with self._db.write() as session:
            session.add(row)
            audit.record(
                session,
                now=now,
                actor=actor,
                action="CreateAgentToken",
                resource=f"agents/{agent}",
                details={
                    "token_id": token_id,
                    "labels": labels,
                    "connections": names,
                    **_expiry(expire_time),
                },
            )
        return CreatedAgentToken(row=row, secret=secret)

    async def list_agent(
        self, *, agent: str, show_revoked: bool, page_size: int, page_token: str
    ) -> Page[AgentTokenRow]:
        page = PageRequest.parse(page_size, page_token, agent=agent, show_revoked=show_revoked)
        stmt = (
            select(AgentTokenRow)
            .order_by(AgentTokenRow.agent, AgentTokenRow.id)
            .limit(page.size + 1)
        )
        if agent:
            stmt = stmt.where(AgentTokenRow.agent == agent)
        if not show_revoked:
            stmt = stmt.where(*_live_agent_token(self._clock()))
        if page.after is not None:
            name, token_id = page.after
            stmt = stmt.where(
                or_(
                    AgentTokenRow.agent > name,
                    (AgentTokenRow.agent == name) & (AgentTokenRow.id > token_id),
                )
            )
        async with self._db.read() as session:
            rows = list((await session.execute(stmt)).scalars())
        return page.page(rows, key=lambda row: [row.agent, row.id])

    async def revoke_agent(self, token_id: str, actor: Actor) -> AgentTokenRow:
        now = self._clock()
        async with self._db.write() as session:
            row = await session.get(AgentTokenRow, token_id, with_for_update=True)
            if row is None:
                raise NotFound(
                    f"there is no agent token {quote(token_id)}; `legato agents token list` "
                    "lists them",
                    reason="TOKEN_NOT_FOUND",
                )
            if row.revoke_time is None:
                row.revoke_time = now
                audit.record(
                    session,
                    now=now,
                    actor=actor,
                    action="RevokeAgentToken",
                    resource=f"agents/{row.agent}",
                    details={"token_id": row.id},
                )
        return row

    async def agent_token(self, token_id: str) -> AgentTokenRow | None:
        async with self._db.read() as session:
            return await session.get(AgentTokenRow, token_id)

    async def enrolment_of(self, agent: str) -> AgentTokenRow | None:
        """The newest live enrolment token of ``agent``: what a certificate naming the
        agent is granted (its labels and connections)."""
        async with self._db.read() as session:
            rows = await session.execute(
                select(AgentTokenRow)
                .where(AgentTokenRow.agent == agent, *_live_agent_token(self._clock()))
                .order_by(AgentTokenRow.create_time.desc())
                .limit(1)
            )
            return rows.scalars().first()

    async def dead_agent_tokens(self, token_ids: Iterable[str]) -> set[str]:
        """Which of ``token_ids`` are revoked, expired or gone."""
        wanted = set(token_ids)
        if not wanted:
            return set()
        async with self._db.read() as session:
            rows = await session.execute(
                select(AgentTokenRow.id).where(
                    AgentTokenRow.id.in_(sorted(wanted)), *_live_agent_token(self._clock())
                )
            )
            return wanted - set(rows.scalars())

    async def record_use(self, api: Mapping[str, datetime], agent: Mapping[str, datetime]) -> None:
        """Store when tokens were last used (batched by the caller; approximate)."""
        if not api and not agent:
            return
        async with self._db.write() as session:
            for table, uses in ((ApiTokenRow, api), (AgentTokenRow, agent)):
                for token_id, when in uses.items():
                    await session.execute(
                        update(table)
                        .where(table.id == token_id)
                        .values(last_use_time=when)
                        .execution_options(synchronize_session=False)
                    )


def _live_agent_token(now: datetime) -> list[ColumnElement[bool]]:
    return [
        AgentTokenRow.revoke_time.is_(None),
        or_(AgentTokenRow.expire_time.is_(None), AgentTokenRow.expire_time > now),
    ]


def _name_problems(
    field: str, value: str, pattern: re.Pattern[str], allowed: str
) -> list[FieldViolation]:
    if pattern.fullmatch(value):
        return []
    if not value:
        return [FieldViolation(field, "required")]
    return [
        FieldViolation(field, f"{_short(value)!r} is not a valid name; use {allowed} (at most 100)")
    ]


def _expiry_problems(expire_time: datetime | None, now: datetime) -> list[FieldViolation]:
    if expire_time is not None and expire_time <= now:
        return [
            FieldViolation(
                "expire_time", f"{expire_time.isoformat()} is in the past; give a future time"
            )
        ]
    return []


def _expiry(expire_time: datetime | None) -> dict[str, str]:
    return {"expire_time": expire_time.isoformat()} if expire_time is not None else {}


def _short(value: str, limit: int = 60) -> str:
    return value if len(value) <= limit else value[:limit] + "…"


def _invalid(what: str, problems: list[FieldViolation]) -> InvalidArgument:
    first = problems[0]
    return InvalidArgument(
        f"{what}: {first.field}: {first.description}",
        violations=problems,
        reason="INVALID_TOKEN_REQUEST",
    )


def _name_taken(name: str) -> AlreadyExists:
    return AlreadyExists(
        f"a token named {name!r} exists and is not revoked; revoke it first "
        f"(`legato tokens revoke {name}`) or choose another name",
        reason="TOKEN_EXISTS",
        metadata={"name": name},
    )
