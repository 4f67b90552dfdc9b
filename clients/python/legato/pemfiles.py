"""PEM files for TLS (CA bundles, certificates, private keys), read and checked with the
standard library's OpenSSL before gRPC gets them: gRPC itself only says "Failed to create
security handshaker" at the first connection. Every error names the flag and the path
and says what was expected; the server (``--tls-cert``, ``--tls-key``, ``--client-ca``),
the agent and the CLI/SDK (``--ca``, ``--cert``, ``--key``) share these checks."""

from __future__ import annotations

import os
import re
import ssl
from pathlib import Path

__all__ = ["PemError", "Signature", "read_certificates", "read_key_pair", "signature"]

Signature = tuple[tuple[int, int, int] | None, ...]

_CERTIFICATE = b"-----BEGIN CERTIFICATE-----"
_KEY = re.compile(rb"-----BEGIN (?:(?:RSA|EC|DSA) )?PRIVATE KEY-----")
_ENCRYPTED = re.compile(rb"-----BEGIN ENCRYPTED PRIVATE KEY-----|Proc-Type: 4,ENCRYPTED")


class PemError(ValueError):
    """A PEM file that cannot be used; the message names the flag and the path."""


def read_certificates(path: str, flag: str) -> bytes:
    """The bytes of a file of one or more PEM certificates (a CA bundle, a certificate)."""
    data = _read(path, flag)
    if _CERTIFICATE not in data:
        raise PemError(
            f"{flag} {path}: not a PEM certificate (it has no '-----BEGIN CERTIFICATE-----' "
            "line); give the certificate file (e.g. ca.pem), not a key or a DER file"
        )
    try:
        ssl.create_default_context(cadata=data.decode("ascii", errors="replace"))
    except ssl.SSLError as exc:
        raise PemError(f"{flag} {path}: not a valid PEM certificate ({_why(exc)})") from None
    return data


def read_key_pair(
    cert: str, key: str, *, cert_flag: str = "--cert", key_flag: str = "--key"
) -> tuple[bytes, bytes]:
    """The bytes of a certificate and its private key, checked to belong together."""
    cert_data = read_certificates(cert, cert_flag)
    key_data = _read(key, key_flag)
    if _ENCRYPTED.search(key_data):
        raise PemError(
            f"{key_flag} {key}: the key is encrypted, which gRPC cannot use; give an "
            "unencrypted PEM key (`openssl pkey -in KEY -out plain.key`) readable by this "
            "user only"
        )
    if not _KEY.search(key_data):
        raise PemError(
            f"{key_flag} {key}: not a PEM private key (it has no '-----BEGIN PRIVATE KEY-----' "
            "line); give the .key file that goes with the certificate"
        )

    def encrypted() -> str:
        raise PemError(f"{key_flag} {key}: the key is encrypted, which gRPC cannot use")

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        context.load_cert_chain(
            str(Path(cert).expanduser()), str(Path(key).expanduser()), password=encrypted
        )
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise PemError(
                f"{key_flag} {key} is not the private key of {cert_flag} {cert}; give the key "
                "that was made with that certificate"
            ) from None
        raise PemError(
            f"{cert_flag} {cert} and {key_flag} {key} cannot be used together ({_why(exc)})"
        ) from None
    except OSError as exc:
        raise PemError(f"{key_flag} {key}: {exc.strerror or exc}") from None
    return cert_data, key_data


def _read(path: str, flag: str) -> bytes:
    try:
        return Path(path).expanduser().read_bytes()
    except OSError as exc:
        raise PemError(f"{flag} {path}: {exc.strerror or exc}") from None


def _why(exc: ssl.SSLError) -> str:
    return str(exc.reason or exc.strerror or exc).replace("_", " ").lower()


def signature(*paths: str) -> Signature:
    """A cheap fingerprint of files (inode, size, modification time; None for an empty
    path or a missing file): when it changes, a file was renewed or replaced."""

    def one(path: str) -> tuple[int, int, int] | None:
        if not path:
            return None
        try:
            info = os.stat(Path(path).expanduser())
        except OSError:
            return None
        return (info.st_ino, info.st_size, info.st_mtime_ns)

    return tuple(one(path) for path in paths)
