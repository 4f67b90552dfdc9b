"""`legato certs create`: a development CA, server, agent and client certificates that
the control plane, agents and OpenSSL accept, made again without losing what was there."""

from __future__ import annotations

import socket
import ssl
import stat
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from legato.devcerts import create_certs
from legato.pemfiles import PemError, read_certificates, read_key_pair

pytestmark = pytest.mark.timeout(60)

LEGATO = str(Path(sys.executable).with_name("legato"))


def certs_create(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [LEGATO, "certs", "create", *args], capture_output=True, text=True, timeout=30
    )


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def names(cert: x509.Certificate) -> tuple[list[str], list[str], list[str]]:
    alt = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return (
        alt.get_values_for_type(x509.DNSName),
        [str(ip) for ip in alt.get_values_for_type(x509.IPAddress)],
        alt.get_values_for_type(x509.UniformResourceIdentifier),
    )


def usages(cert: x509.Certificate) -> list[x509.ObjectIdentifier]:
    return list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def test_certs_create_writes_a_ca_and_certificates_it_signed(tmp_path: Path) -> None:
    made = certs_create(
        "--dir",
        str(tmp_path),
        "--agent",
        "a1",
        "--client",
        "ci",
        "--host",
        "cp.example.com",
        "--host",
        "10.1.2.3",
    )
    assert made.returncode == 0, made.stderr
    files = {
        "ca.pem",
        "ca.key",
        "server.pem",
        "server.key",
        "agent-a1.pem",
        "agent-a1.key",
        "client-ci.pem",
        "client-ci.key",
    }
    assert {path.name for path in tmp_path.iterdir()} == files
    for name in files:
        assert f"wrote {tmp_path / name}" in made.stdout
        if name.endswith(".key"):
            assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600, name
            serialization.load_pem_private_key((tmp_path / name).read_bytes(), password=None)
    assert "legato agents token create --name" in made.stdout

    ca = load(tmp_path / "ca.pem")
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    server, agent, client = (
        load(tmp_path / f) for f in ("server.pem", "agent-a1.pem", "client-ci.pem")
    )
    for cert in (server, agent, client):
        cert.verify_directly_issued_by(ca)
        assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca

    dns, ips, uris = names(server)
    assert dns == ["localhost", "cp.example.com"]
    assert ips == ["127.0.0.1", "::1", "10.1.2.3"]
    assert uris == []
    assert usages(server) == [ExtendedKeyUsageOID.SERVER_AUTH]

    assert names(agent) == ([], [], ["spiffe://legato/agent/a1"])
    assert usages(agent) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert usages(client) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    with pytest.raises(x509.ExtensionNotFound):
        client.extensions.get_extension_for_class(x509.SubjectAlternativeName)


def test_running_it_again_reuses_the_ca_and_keeps_the_server_certificate(
    tmp_path: Path,
) -> None:
    first = certs_create("--dir", str(tmp_path), "--agent", "a1", "--host", "cp.example.com")
    assert first.returncode == 0, first.stderr
    ca_before = (tmp_path / "ca.pem").read_bytes()
    server_before = (tmp_path / "server.pem").read_bytes()
    agent_before = (tmp_path / "agent-a1.pem").read_bytes()

    again = certs_create("--dir", str(tmp_path), "--agent", "a2")
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "ca.pem").read_bytes() == ca_before
    assert f"kept  {tmp_path / 'ca.pem'}" in again.stdout
    # No --host this time: the server certificate keeps cp.example.com (it is not reissued).
    assert (tmp_path / "server.pem").read_bytes() == server_before
    assert (tmp_path / "agent-a1.pem").read_bytes() == agent_before
    ca = load(tmp_path / "ca.pem")
    load(tmp_path / "agent-a2.pem").verify_directly_issued_by(ca)

    # A new --host reissues the server certificate with its old names and the new one.
    wider = certs_create("--dir", str(tmp_path), "--host", "10.0.0.5", "--no-server")
    assert (tmp_path / "server.pem").read_bytes() == server_before  # --no-server: untouched
    assert wider.returncode == 0
    wider = certs_create("--dir", str(tmp_path), "--host", "10.0.0.5")
    assert wider.returncode == 0, wider.stderr
    dns, ips, _ = names(load(tmp_path / "server.pem"))
    assert dns == ["localhost", "cp.example.com"]
    assert ips == ["127.0.0.1", "::1", "10.0.0.5"]
    load(tmp_path / "server.pem").verify_directly_issued_by(ca)
    assert (tmp_path / "ca.pem").read_bytes() == ca_before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--agent", "../evil"], "--agent '../evil' is not a valid name"),
        (["--client", "a b"], "--client 'a b' is not a valid name"),
        (["--host", "https://cp.example.com:7470"], "is not a host name or an IP address"),
        (["--days", "0"], "--days 0: a certificate must be valid for at least 1 day"),
    ],
)
def test_bad_arguments_are_named_and_nothing_is_written(
    tmp_path: Path, args: list[str], message: str
) -> None:
    made = certs_create("--dir", str(tmp_path / "certs"), *args)
    assert made.returncode == 1
    assert message in made.stderr
    assert not (tmp_path / "certs").exists()


def test_a_ca_without_its_key_is_not_replaced(tmp_path: Path) -> None:
    create_certs(tmp_path)
    ca = (tmp_path / "ca.pem").read_bytes()
    (tmp_path / "ca.key").unlink()
    made = certs_create("--dir", str(tmp_path), "--agent", "a1")
    assert made.returncode == 1
    assert "ca.pem is there but" in made.stderr and "ca.key is not" in made.stderr
    assert (tmp_path / "ca.pem").read_bytes() == ca
    assert not (tmp_path / "agent-a1.pem").exists()


def test_openssl_accepts_the_server_certificate_for_every_name(tmp_path: Path) -> None:
    """A real TLS handshake with hostname checks, as a client dialling each name would."""
    files = create_certs(tmp_path, hosts=["cp.example.com"])
    assert files.server is not None and files.server_key is not None
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(files.server, files.server_key)
    client_context = ssl.create_default_context(cafile=str(files.ca))
    for name in ("localhost", "127.0.0.1", "::1", "cp.example.com"):
        assert handshake(server_context, client_context, name) == "ok", name
    assert "Hostname mismatch" in handshake(server_context, client_context, "other.example.com")


def handshake(server_context: ssl.SSLContext, client_context: ssl.SSLContext, name: str) -> str:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        connection, _ = listener.accept()
        try:
            with server_context.wrap_socket(connection, server_side=True) as tls:
                tls.recv(1)
        except (ssl.SSLError, OSError):
            pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
            client_context.wrap_socket(raw, server_hostname=name),
        ):
            return "ok"
    except ssl.SSLCertVerificationError as exc:
        return str(exc)
    finally:
        thread.join(timeout=10)
        listener.close()


def test_pem_checks_name_the_flag_and_the_path(tmp_path: Path) -> None:
    files = create_certs(tmp_path, agents=["a1"], clients=["ci"])
    cert, key = files.agents["a1"]
    _, other_key = files.clients["ci"]
    assert read_certificates(str(files.ca), "--ca").startswith(b"-----BEGIN CERTIFICATE-----")
    assert read_key_pair(str(cert), str(key))[1] == key.read_bytes()
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    encrypted = tmp_path / "encrypted.key"
    encrypted.write_bytes(
        serialization.load_pem_private_key(key.read_bytes(), password=None).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    cases: list[tuple[Callable[[], object], str]] = [
        (
            lambda: read_certificates(str(tmp_path / "nosuch.pem"), "--ca"),
            f"--ca {tmp_path / 'nosuch.pem'}: No such file or directory",
        ),
        (lambda: read_certificates(str(tmp_path), "--ca"), f"--ca {tmp_path}: Is a directory"),
        (lambda: read_certificates(str(key), "--ca"), f"--ca {key}: not a PEM certificate"),
        (
            lambda: read_key_pair(str(cert), str(garbage)),
            f"--key {garbage}: not a PEM private key",
        ),
        (
            lambda: read_key_pair(str(cert), str(other_key)),
            f"--key {other_key} is not the private key of --cert {cert}",
        ),
        (
            lambda: read_key_pair(str(cert), str(encrypted)),
            f"--key {encrypted}: the key is encrypted",
        ),
        (
            lambda: read_key_pair(str(garbage), str(key), cert_flag="--tls-cert"),
            f"--tls-cert {garbage}: not a PEM certificate",
        ),
    ]
    for call, message in cases:
        with pytest.raises(PemError) as caught:
            call()
        assert message in str(caught.value)
