"""Services of the v1 contract that this release does not serve yet answer UNIMPLEMENTED
with a message naming the method, instead of gRPC's bare "Method not found"."""

from __future__ import annotations

from typing import Any

import grpc

from control_plane.errors import Unimplemented

__all__ = ["not_yet", "unimplemented_servicer"]


def not_yet(method: str, feature: str) -> Unimplemented:
    return Unimplemented(
        f"{method} is part of the legato.v1 API but this server does not serve it yet "
        f"(it arrives with {feature})",
        metadata={"method": method},
    )


def unimplemented_servicer(base: type[Any], service: str, feature: str) -> Any:
    """An instance of the generated ``base`` servicer whose every RPC raises ``not_yet``."""

    def make(method: str) -> Any:
        async def rpc(self: Any, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            raise not_yet(f"{service}.{method}", feature)

        return rpc

    methods = {
        name: make(name)
        for name in dir(base)
        if not name.startswith("_") and callable(getattr(base, name))
    }
    return type(f"Unimplemented{service}", (base,), methods)()
