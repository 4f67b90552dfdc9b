"""The legato SDK and CLI.

``legato.v1`` holds the generated stubs of the API; ``Client`` is the SDK's entry point;
``legato.spec`` reads and writes the pipeline YAML format."""

from legato.client import Client
from legato.errors import FieldViolation, RpcError

__all__ = ["Client", "FieldViolation", "RpcError"]
__version__ = "0.1.0"
