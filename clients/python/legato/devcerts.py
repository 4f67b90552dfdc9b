"""Development certificates (``legato certs create``): a CA, a server certificate, and
client certificates for agents and for people, with the ``cryptography`` package, so
neither the tests nor the docs need openssl.

- ``ca.pem`` / ``ca.key``: the CA (kept and reused when the directory has one, so more
  certificates can be added later). Give ``ca.pem`` to clients (``--ca``) and to the
  server as ``--client-ca`` for mTLS.
- ``server.pem`` / ``server.key``: for ``legato server --tls-cert --tls-key``; its names
  are ``localhost``, ``127.0.0.1``, ``::1`` and every ``--host``. An existing one is kept
  when it already names every host asked for (so adding an agent later does not drop a
  host given before); asking for a new host reissues it with its old names and the new
  one. Delete it to start again with fewer names.
- ``agent-NAME.pem`` / ``.key``: an agent's client certificate. It names the agent with
  the URI ``spiffe://legato/agent/NAME`` (and the common name NAME); the control plane
  takes that as the agent's identity. Asking for it again issues a new one.
- ``client-NAME.pem`` / ``.key``: a client certificate for the CLI or SDK when the server
  requires one (mTLS); it carries no identity, the API token does.

Keys are ECDSA P-256, written with mode 0600. Every file is written to a temporary name
and renamed into place, so a server that reloads renewed files never reads half of one.
These are for development and tests; in production use your own PKI with the same names."""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

__all__ = ["AGENT_URI_PREFIX", "CertFiles", "agent_uri", "create_certs"]

AGENT_URI_PREFIX = "spiffe://legato/agent/"
# The same names `legato agent --name` accepts.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_HOST = re.compile(r"(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*")
_ALWAYS_DNS = ("localhost",)
_ALWAYS_IPS = ("127.0.0.1", "::1")
# A kept server certificate must stay valid at least this long.
_KEEP_MARGIN = timedelta(days=30)


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
    kept: list[Path]
    """Files that were there and are still right (the CA, a server certificate that names
    every host asked for)."""


def create_certs(
    directory: Path,
    *,
    hosts: Sequence[str] = (),
    agents: Sequence[str] = (),
    clients: Sequence[str] = (),
    server: bool = True,
    days: int = 365,
) -> CertFiles:
    """Make (or reuse) the CA in ``directory`` and the certificates asked for. Raises
    ValueError naming a bad host, name or number of days, or a CA without its key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    if days < 1:
        raise ValueError(f"--days {days}: a certificate must be valid for at least 1 day")
    for kind, names in (("--agent", agents), ("--client", clients)):
        for name in names:
            if not _NAME.fullmatch(name):
                raise ValueError(
                    f"{kind} {name!r} is not a valid name; use letters, digits, '.', '_', '-' "
                    "(it becomes a file name and, for an agent, its identity)"
                )
    wanted_dns, wanted_ips = _split_hosts(hosts)

    directory.mkdir(parents=True, exist_ok=True)
    created: list[Path] = []
    kept: list[Path] = []
    now = datetime.now(UTC) - timedelta(minutes=5)
    until = now + timedelta(days=days)

    def write_key(path: Path, key: Any) -> None:
        _write(
            path,
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
            mode=0o600,
        )
        created.append(path)

    def write_cert(path: Path, cert: Any) -> None:
        _write(path, cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
        created.append(path)

    ca_path, ca_key_path = directory / "ca.pem", directory / "ca.key"
    if ca_path.exists() != ca_key_path.exists():
        there, missing = (ca_path, ca_key_path) if ca_path.exists() else (ca_key_path, ca_path)
        raise ValueError(
            f"{there} is there but {missing} is not: certificates cannot be added to a CA "
            f"without both; put {missing.name} back, or move {there.name} away to make a new "
            "CA (then every certificate it signed must be made again)"
        )
    if ca_path.exists():
        ca_cert = x509.load_pem_x509_certificate(ca_path.read_bytes())
        ca_key: Any = serialization.load_pem_private_key(ca_key_path.read_bytes(), password=None)
        kept.append(ca_path)
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
            .not_valid_after(min(until, ca_cert.not_valid_after_utc))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                critical=False,
            )
        )
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        # The key first: a reloading server sees a new key with the old certificate (a
        # mismatch it skips) rather than a certificate whose key is not there yet.
        write_key(key_path, key)
        write_cert(cert_path, builder.sign(ca_key, hashes.SHA256()))

    server_pem: Path | None = None
    server_key: Path | None = None
    if server:
        server_pem, server_key = directory / "server.pem", directory / "server.key"
        dns = [*_ALWAYS_DNS]
        ips = [*_ALWAYS_IPS]
        existing = _existing_server_names(server_pem, server_key, ca_cert)
        if existing is not None:
            dns += [name for name in existing[0] if name not in dns]
            ips += [ip for ip in existing[1] if ip not in ips]
        new_names = [d for d in wanted_dns if d not in dns] + [
            i for i in wanted_ips if i not in ips
        ]
        if existing is not None and not new_names:
            kept += [server_pem, server_key]
        else:
            dns += [d for d in wanted_dns if d not in dns]
            ips += [i for i in wanted_ips if i not in ips]
            alt: list[Any] = [x509.DNSName(d) for d in dns]
            alt += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
            common = next((d for d in dns if d not in _ALWAYS_DNS), "localhost")
            issue(common, alt, ExtendedKeyUsageOID.SERVER_AUTH, server_key, server_pem)
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
        kept=kept,
    )


def _split_hosts(hosts: Sequence[str]) -> tuple[list[str], list[str]]:
    """``--host`` values as (DNS names, IP addresses in their normal form)."""
    dns: list[str] = []
    ips: list[str] = []
    for host in hosts:
        text = host.strip()
        try:
            ips.append(str(ipaddress.ip_address(text.strip("[]"))))
        except ValueError:
            if not _HOST.fullmatch(text):
                raise ValueError(
                    f"--host {host!r} is not a host name or an IP address (give the name "
                    "alone, without a port or scheme: cp.example.com, 10.0.0.5, ::1)"
                ) from None
            dns.append(text.lower())
    return dns, ips


def _existing_server_names(
    cert_path: Path, key_path: Path, ca_cert: Any
) -> tuple[list[str], list[str]] | None:
    """The names of the server certificate already in the directory, if it can be kept:
    signed by this CA, with its key, valid for a while yet."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    if not (cert_path.exists() and key_path.exists()):
        return None
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        cert.verify_directly_issued_by(ca_cert)
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        alt = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except Exception:  # unreadable, signed by another CA, without names: issue a new one
        return None
    if key.public_key() != cert.public_key():
        return None
    if cert.not_valid_after_utc < datetime.now(UTC) + _KEEP_MARGIN:
        return None
    dns = [str(name) for name in alt.get_values_for_type(x509.DNSName)]
    ips = [str(ip) for ip in alt.get_values_for_type(x509.IPAddress)]
    return dns, ips


def _write(path: Path, data: bytes, *, mode: int) -> None:
    partial = path.with_name(f".{path.name}.tmp")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(partial, mode)
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
