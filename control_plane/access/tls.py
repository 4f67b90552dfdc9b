"""TLS for the control plane's listeners, from the PEM files the config names: gRPC
server credentials (requiring a client certificate signed by ``--client-ca`` when given:
mTLS) and an ``ssl.SSLContext`` for the HTTP listener (TLS only: webhook senders do not
present client certificates).

The files are checked at start-up (a certificate and the key that matches it, a CA that
holds certificates), so a wrong file stops the server with a message naming the flag.

**Renewal needs no restart.** Before each TLS handshake a listener looks at the files
(``os.stat``: inode, size, modification time, so a replaced Kubernetes secret or a
``legato certs create`` counts) and, when they changed and still make a valid pair (and
CA), serves the new ones to new connections; open connections keep theirs. A renewal
caught half-written (the key renewed, not yet the certificate) is skipped, logged once,
and looked at again when the files change next."""

from __future__ import annotations

import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass

import grpc
import structlog

from control_plane.config import ServerConfig
from control_plane.errors import FailedPrecondition
from legato.pemfiles import PemError, Signature, read_certificates, read_key_pair, signature

__all__ = ["CertificateFiles", "grpc_credentials", "http_context"]

log = structlog.get_logger("legato.server")


@dataclass(frozen=True)
class Material:
    """The PEM bytes of one generation of the files."""

    cert: bytes
    key: bytes
    client_ca: bytes | None


class CertificateFiles:
    """The server's certificate, key and client CA, read again when they change."""

    def __init__(self, cert: str, key: str, client_ca: str = "", *, listener: str) -> None:
        self._paths = (cert, key, client_ca)
        self._listener = listener
        self._lock = threading.Lock()
        self._signature = signature(*self._paths)
        self._refused: Signature | None = None
        self.material = _load(cert, key, client_ca)

    @classmethod
    def of(cls, config: ServerConfig, *, listener: str) -> CertificateFiles:
        return cls(config.tls_cert, config.tls_key, config.client_ca, listener=listener)

    def renewed(self) -> Material | None:
        """The files' new contents when they changed since the last look and make a valid
        certificate (else None: keep serving the current ones)."""
        now = signature(*self._paths)
        with self._lock:
            if now in (self._signature, self._refused):
                return None
            try:
                material = _load(*self._paths)
            except FailedPrecondition as exc:
                self._refused = now
                log.warning("tls_renewal_skipped", listener=self._listener, error=exc.message)
                return None
            self._signature, self._refused, self.material = now, None, material
        log.info("tls_renewed", listener=self._listener, cert=self._paths[0])
        return material


def grpc_credentials(config: ServerConfig) -> grpc.ServerCredentials | None:
    """Credentials for the gRPC port (None: plaintext) that follow renewed files."""
    if not config.tls_cert:
        return None
    files = CertificateFiles.of(config, listener="grpc")

    def fetch() -> grpc.ServerCertificateConfiguration | None:
        # Called by gRPC's core before each handshake, on its own threads.
        try:
            material = files.renewed()
        except Exception:  # never fail a handshake over the renewal check
            log.exception("tls_renewal_check_failed", listener="grpc")
            return None
        return None if material is None else _grpc_configuration(material)

    return grpc.dynamic_ssl_server_credentials(
        _grpc_configuration(files.material),
        fetch,  # type: ignore[arg-type]  # gRPC documents None: "keep the current one"
        require_client_authentication=bool(config.client_ca),
    )


def http_context(config: ServerConfig) -> ssl.SSLContext | None:
    """The HTTP listener's TLS context (None: plaintext); each handshake switches to the
    renewed files' context when they changed."""
    if not config.tls_cert:
        return None
    files = CertificateFiles(config.tls_cert, config.tls_key, listener="http")
    first = _ssl_context(config.tls_cert, config.tls_key)
    current = [first]

    def on_hello(connection: ssl.SSLObject | ssl.SSLSocket, name: str | None, _: object) -> None:
        try:
            if files.renewed() is not None:
                current[0] = _ssl_context(config.tls_cert, config.tls_key)
        except FailedPrecondition as exc:  # changed again meanwhile: looked at next time
            log.warning("tls_renewal_skipped", listener="http", error=exc.message)
        except Exception:  # never fail a handshake over the renewal check
            log.exception("tls_renewal_check_failed", listener="http")
        if current[0] is not first:
            connection.context = current[0]

    callback: Callable[..., None] = on_hello
    first.sni_callback = callback
    return first


def _grpc_configuration(material: Material) -> grpc.ServerCertificateConfiguration:
    return grpc.ssl_server_certificate_configuration(
        [(material.key, material.cert)], root_certificates=material.client_ca
    )


def _ssl_context(cert: str, key: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except OSError as exc:  # checked by _load just before; only a race gets here
        raise FailedPrecondition(
            f"--tls-cert {cert} / --tls-key {key}: {exc.strerror or exc}", reason="INVALID_TLS"
        ) from None
    return context


def _load(cert: str, key: str, client_ca: str) -> Material:
    """The files' bytes, after checking with OpenSSL that they are what they claim."""
    try:
        cert_data, key_data = read_key_pair(cert, key, cert_flag="--tls-cert", key_flag="--tls-key")
        ca_data = read_certificates(client_ca, "--client-ca") if client_ca else None
    except PemError as exc:
        raise FailedPrecondition(str(exc), reason="INVALID_TLS") from None
    return Material(cert=cert_data, key=key_data, client_ca=ca_data)
