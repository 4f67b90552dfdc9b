"""TLS for the control plane's listeners, from the PEM files the config names: gRPC
server credentials (requiring a client certificate signed by ``--client-ca`` when given:
mTLS) and an ``ssl.SSLContext`` for the HTTP listener (TLS only: webhook senders do not
present client certificates)."""

from __future__ import annotations

import ssl
from pathlib import Path

import grpc

from control_plane.config import ServerConfig
from control_plane.errors import FailedPrecondition

__all__ = ["grpc_credentials", "http_context"]


def grpc_credentials(config: ServerConfig) -> grpc.ServerCredentials | None:
    if not config.tls_cert:
        return None
    key = _read(config.tls_key, "--tls-key")
    cert = _read(config.tls_cert, "--tls-cert")
    client_ca = _read(config.client_ca, "--client-ca") if config.client_ca else None
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=client_ca, require_client_auth=client_ca is not None
    )


def http_context(config: ServerConfig) -> ssl.SSLContext | None:
    if not config.tls_cert:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(config.tls_cert, config.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise FailedPrecondition(
            f"--tls-cert/--tls-key cannot be used: {exc}; give a PEM certificate and the "
            "private key that matches it",
            reason="INVALID_TLS",
        ) from None
    return context


def _read(path: str, flag: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise FailedPrecondition(
            f"{flag} {path}: {exc.strerror or exc}", reason="INVALID_TLS"
        ) from None
