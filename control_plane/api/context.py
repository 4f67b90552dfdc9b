"""The caller of the current call, as the access interceptor authenticated it.

The interceptor (``api/access.py``) sets it for the task that runs the call; servicers
read it with ``caller()`` or, for a mutation, ``actor_from(context, request_id)``, the
``Actor`` domain code records as the author of versions and in the activity log."""

from __future__ import annotations

import contextvars
from typing import Any

import grpc

from control_plane.access.actors import Actor
from control_plane.access.principals import Principal
from control_plane.errors import Unauthenticated

__all__ = [
    "USER_METADATA_KEY",
    "WEB_SESSION_METADATA_KEY",
    "actor_from",
    "caller",
    "claimed_user",
    "reset_caller",
    "set_caller",
    "web_session_of",
]

# Sent by the SDK and CLI (the OS user): kept in the activity log beside the
# authenticated identity as the user the client says it acts for; never trusted.
USER_METADATA_KEY = "legato-user"
# A web UI session's secret: the Connect adapter (api/connect_adapter.py) puts the
# browser's session cookie here, after checking the request is the UI's own.
WEB_SESSION_METADATA_KEY = "legato-web-session"

_CALLER: contextvars.ContextVar[Principal | None] = contextvars.ContextVar(
    "legato_caller", default=None
)


def set_caller(principal: Principal) -> contextvars.Token[Principal | None]:
    return _CALLER.set(principal)


def reset_caller(token: contextvars.Token[Principal | None]) -> None:
    _CALLER.reset(token)


def caller() -> Principal:
    """The authenticated caller; a call that reached a servicer always has one."""
    principal = _CALLER.get()
    if principal is None:
        raise Unauthenticated("the call was not authenticated")
    return principal


def actor_from(context: grpc.aio.ServicerContext[Any, Any], request_id: str = "") -> Actor:
    """The actor of a mutation: the authenticated caller, with the call's request id."""
    return caller().actor(request_id)


def claimed_user(context: grpc.aio.ServicerContext[Any, Any]) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == USER_METADATA_KEY and isinstance(value, str):
            return value.strip()[:200]
    return ""


def web_session_of(context: grpc.aio.ServicerContext[Any, Any]) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == WEB_SESSION_METADATA_KEY and isinstance(value, str):
            return value.strip()
    return ""
