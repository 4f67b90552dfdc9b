"""Development certificates (``legato certs create``): a CA, a server certificate, and
client certificates for agents and for people, with the ``cryptography`` package, so
neither the tests nor the docs need openssl.

- ``ca.pem`` / ``ca.key``: the CA (kept and reused when the directory has one, so more
  certificates can be added later). Give ``ca.pem`` to clients (``--ca``) and to the
  server as ``--client-ca`` for mTLS.
- ``server.pem`` / ``server.key``: for ``legato server --tls-cert --tls-key``; its names
  are ``localhost``, ``127.0.0.1``, ``::1`` and every ``--host``.
- ``agent-NAME.pem`` / ``.key``: an agent's client certificate. It names the agent with
  the URI ``spiffe://legato/agent/NAME`` (and the common name NAME); the control plane
  takes that as the agent's identity.
- ``client-NAME.pem`` / ``.key``: a client certificate for the CLI or SDK when the server
  requires one (mTLS); it carries no identity, the API token does.

Keys are ECDSA P-256, written with mode 0600. These are for development and tests; in
production use your own PKI with the same names."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

__all__ = ["AGENT_URI_PREFIX", "CertFiles", "agent_uri", "create_certs"]

AGENT_URI_PREFIX = "spiffe://legato/agent/"


def agent_uri(name: str) -> str:
    return AGENT_URI_PREFIX + name


@dataclass(frozen=True)
class CertFiles:
    """What ``create_certs`` wrote or reused."""

    ca: Path
    ca_key: Path
    server: Path | None
    server_key: Path | None
    agents: dict[str, tuple[Path, Path]]
    clients: dict[str, tuple[Path, Path]]
    created: list[Path]


def create_certs(
    directory: Path,
    *,
    hosts: Sequence[str] = (),
    agents: Sequence[str] = (),
    clients: Sequence[str] = (),
    server: bool = True,
    days: int = 365,
) -> CertFiles:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory.mkdir(parents=True, exist_ok=True)
    created: list[Path] = []
    now = datetime.now(UTC) - timedelta(minutes=5)
    until = now + timedelta(days=days)

    def write_key(path: Path, key: Any) -> None:
        data = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(path, 0o600)
        created.append(path)

    def write_cert(path: Path, cert: Any) -> None:
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        created.append(path)

    ca_path, ca_key_path = directory / "ca.pem", directory / "ca.key"
    if ca_path.exists() and ca_key_path.exists():
        ca_cert = x509.load_pem_x509_certificate(ca_path.read_bytes())
        ca_key: Any = serialization.load_pem_private_key(ca_key_path.read_bytes(), password=None)
    else:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Legato development CA")])
        ca_cert = (
            x509.CertificateBuilder()
            .subject_name(ca_name)
            .issuer_name(ca_name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(now + timedelta(days=max(days, 3650)))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
            )
            .sign(ca_key, hashes.SHA256())
        )
        write_key(ca_key_path, ca_key)
        write_cert(ca_path, ca_cert)

    def issue(
        common_name: str, names: list[Any], usage: Any, key_path: Path, cert_path: Path
    ) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(until)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                critical=False,
            )
        )
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        write_key(key_path, key)
        write_cert(cert_path, builder.sign(ca_key, hashes.SHA256()))

    server_pem: Path | None = None
    server_key: Path | None = None
    if server:
        dns: list[str] = ["localhost"]
        ips: list[str] = ["127.0.0.1", "::1"]
        for host in hosts:
            try:
                ipaddress.ip_address(host)
            except ValueError:
                if host not in dns:
                    dns.append(host)
            else:
                if host not in ips:
                    ips.append(host)
        alt: list[Any] = [x509.DNSName(d) for d in dns]
        alt += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
        server_pem, server_key = directory / "server.pem", directory / "server.key"
        issue(
            dns[-1] if hosts else "localhost",
            alt,
            ExtendedKeyUsageOID.SERVER_AUTH,
            server_key,
            server_pem,
        )
    agent_files: dict[str, tuple[Path, Path]] = {}
    for name in agents:
        cert_path, key_path = directory / f"agent-{name}.pem", directory / f"agent-{name}.key"
        issue(
            name,
            [x509.UniformResourceIdentifier(agent_uri(name))],
            ExtendedKeyUsageOID.CLIENT_AUTH,
            key_path,
            cert_path,
        )
        agent_files[name] = (cert_path, key_path)
    client_files: dict[str, tuple[Path, Path]] = {}
    for name in clients:
        cert_path, key_path = directory / f"client-{name}.pem", directory / f"client-{name}.key"
        issue(name, [], ExtendedKeyUsageOID.CLIENT_AUTH, key_path, cert_path)
        client_files[name] = (cert_path, key_path)
    return CertFiles(
        ca=ca_path,
        ca_key=ca_key_path,
        server=server_pem,
        server_key=server_key,
        agents=agent_files,
        clients=client_files,
        created=created,
    )
