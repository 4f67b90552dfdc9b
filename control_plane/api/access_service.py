"""legato.v1.AccessService: who the caller is; API tokens; agent enrolment tokens."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import grpc

from control_plane.access.authenticator import Authenticator
from control_plane.access.tokens import Tokens
from control_plane.access.web_sessions import WebSessions
from control_plane.api.access_convert import (
    actor_kind_message,
    agent_token_message,
    role_message,
    role_of,
    token_message,
)
from control_plane.api.bounded import bounded_items
from control_plane.api.context import actor_from, caller
from control_plane.api.convert import timestamp
from control_plane.execution.agents import Agents
from legato.v1 import access_service_pb2 as pb
from legato.v1 import access_service_pb2_grpc

__all__ = ["AccessServicer"]

Context = grpc.aio.ServicerContext[Any, Any]


class AccessServicer(access_service_pb2_grpc.AccessServiceServicer):
    def __init__(
        self,
        tokens: Tokens,
        authenticator: Authenticator | None,
        agents: Agents,
        web_sessions: WebSessions,
    ) -> None:
        self._tokens = tokens
        self._authenticator = authenticator
        self._agents = agents
        self._web_sessions = web_sessions

    async def GetCaller(
        self, request: pb.GetCallerRequest, context: Context
    ) -> pb.GetCallerResponse:
        who = caller()
        return pb.GetCallerResponse(
            kind=actor_kind_message(who.kind),
            name=who.name,
            role=role_message(who.role),
            token_id=who.token_id,
            expire_time=timestamp(who.expire_time),
        )

    async def CreateSignInLink(
        self, request: pb.CreateSignInLinkRequest, context: Context
    ) -> pb.CreateSignInLinkResponse:
        link = await self._web_sessions.create_code(
            caller(), request.next_path, actor_from(context, request.request_id)
        )
        return pb.CreateSignInLinkResponse(url=link.url, expire_time=timestamp(link.expire_time))

    async def CreateToken(
        self, request: pb.CreateTokenRequest, context: Context
    ) -> pb.CreateTokenResponse:
        created = await self._tokens.create(
            request.name,
            role_of(request.role),
            actor_from(context, request.request_id),
            description=request.description,
            expire_time=_time(request, "expire_time"),
        )
        return pb.CreateTokenResponse(token=token_message(created.row), secret=created.secret)

    async def ListTokens(
        self, request: pb.ListTokensRequest, context: Context
    ) -> pb.ListTokensResponse:
        page = await self._tokens.list(
            show_revoked=request.show_revoked,
            page_size=request.page_size,
            page_token=request.page_token,
        )
        tokens, next_token = bounded_items(page, token_message)
        return pb.ListTokensResponse(tokens=tokens, next_page_token=next_token)

    async def RevokeToken(
        self, request: pb.RevokeTokenRequest, context: Context
    ) -> pb.RevokeTokenResponse:
        row = await self._tokens.revoke(request.name, actor_from(context, request.request_id))
        if self._authenticator is not None:
            self._authenticator.forget(row.id)
        return pb.RevokeTokenResponse(token=token_message(row))

    async def CreateAgentToken(
        self, request: pb.CreateAgentTokenRequest, context: Context
    ) -> pb.CreateAgentTokenResponse:
        created = await self._tokens.create_agent(
            request.agent,
            actor_from(context, request.request_id),
            labels=dict(request.labels),
            connections=list(request.connections),
            expire_time=_time(request, "expire_time"),
        )
        return pb.CreateAgentTokenResponse(
            token=agent_token_message(created.row), secret=created.secret
        )

    async def ListAgentTokens(
        self, request: pb.ListAgentTokensRequest, context: Context
    ) -> pb.ListAgentTokensResponse:
        page = await self._tokens.list_agent(
            agent=request.agent,
            show_revoked=request.show_revoked,
            page_size=request.page_size,
            page_token=request.page_token,
        )
        tokens, next_token = bounded_items(page, agent_token_message)
        return pb.ListAgentTokensResponse(tokens=tokens, next_page_token=next_token)

    async def RevokeAgentToken(
        self, request: pb.RevokeAgentTokenRequest, context: Context
    ) -> pb.RevokeAgentTokenResponse:
        row = await self._tokens.revoke_agent(request.id, actor_from(context, request.request_id))
        if self._authenticator is not None:
            self._authenticator.forget(row.id)
        # This replica's stream of that agent closes at once; others within seconds.
        await self._agents.revoked({row.id})
        return pb.RevokeAgentTokenResponse(token=agent_token_message(row))


def _time(request: Any, name: str) -> datetime | None:
    if not request.HasField(name):
        return None
    value: datetime = getattr(request, name).ToDatetime(tzinfo=UTC)
    return value
