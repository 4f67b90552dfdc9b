"""The legato SDK and CLI.

``legato.v1`` holds the generated stubs of the API; ``Client`` is the SDK's entry point;
``legato.spec`` reads and writes the pipeline YAML format. Names are loaded on first use,
so ``import legato.spec`` does not load gRPC."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from legato.client import Client
    from legato.errors import FieldViolation, RpcError

__all__ = ["Client", "FieldViolation", "RpcError"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name == "Client":
        from legato.client import Client

        return Client
    if name in ("FieldViolation", "RpcError"):
        from legato import errors

        return getattr(errors, name)
    raise AttributeError(f"module 'legato' has no attribute {name!r}")
