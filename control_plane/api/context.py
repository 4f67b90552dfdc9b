"""Facts about the caller taken from request metadata."""

from __future__ import annotations

from typing import Any

import grpc

from control_plane.registry import Actor

__all__ = ["USER_METADATA_KEY", "actor_from"]

# Sent by the SDK and CLI (the OS user unless configured); replaced by the identity of a
# bearer token once authentication is configured.
USER_METADATA_KEY = "legato-user"


def actor_from(context: grpc.aio.ServicerContext[Any, Any], request_id: str = "") -> Actor:
    name = ""
    for key, value in context.invocation_metadata() or ():
        if key == USER_METADATA_KEY and isinstance(value, str):
            name = value.strip()[:200]
    return Actor(name=name or "anonymous", request_id=request_id.strip()[:200])
