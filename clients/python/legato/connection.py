"""Where the CLI and the SDK connect, and with which credentials.

Each setting comes from the first of these that has it:

1. an explicit argument (the CLI's ``--server``, ``--token``, ``--ca``, ``--cert``,
   ``--key``; ``Client(...)``'s keyword arguments);
2. the environment: ``LEGATO_SERVER``, ``LEGATO_TOKEN``, ``LEGATO_CA``, ``LEGATO_CERT``,
   ``LEGATO_KEY``;
3. the context (``--context``, ``LEGATO_CONTEXT``, or the current one) in the config file
   (``$LEGATO_CONFIG``, else ``$XDG_CONFIG_HOME/legato/config.yaml``, else
   ``~/.config/legato/config.yaml``), written by ``legato config set-context``;
4. the local credentials ``legato up`` writes (``.legato/credentials.yaml``, looked for in
   the working directory and its parents).

A token is bound to the server it was configured for: a context's token (or the local
credentials') is sent only to that context's server, never to another address given on
the command line, so ``--server elsewhere`` cannot leak it. The same holds for the
certificate files.

The config file holds tokens: it is written with mode 0600, and a file others can read
is refused with a message saying how to fix it.

A server is ``HOST:PORT`` (or a gRPC target such as ``dns:///host:7470`` or
``unix:/path``); a URL (``http://host:7470``) is refused with the address to give
instead, since gRPC would only say "Misformatted domain name"."""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "DEFAULT_SERVER",
    "LOCAL_CREDENTIALS",
    "ConfigFileError",
    "Connection",
    "check_address",
    "config_path",
    "find_local_credentials",
    "load_config",
    "resolve",
    "save_config",
]

DEFAULT_SERVER = "localhost:7470"
DEFAULT_PORT = 7470
URL_SCHEMES = ("http", "https", "grpc", "grpcs", "tcp")
"""Schemes people write before an address that gRPC does not take (its own resolver
schemes, ``dns:``, ``unix:``, ``ipv4:`` ..., are left alone)."""
LOCAL_CREDENTIALS = Path(".legato") / "credentials.yaml"
SETTINGS = ("server", "token", "ca", "cert", "key")


class ConfigFileError(ValueError):
    """The config file (or local credentials) cannot be used; the message says why."""


@dataclass(frozen=True)
class Connection:
    """A server and how to reach it. ``tls`` is on when a CA or client certificate is
    given (or ``tls: true`` in the context, for a server with a publicly trusted
    certificate)."""

    server: str = DEFAULT_SERVER
    token: str = field(default="", repr=False)
    ca: str = ""
    cert: str = ""
    key: str = ""
    tls: bool = False
    context: str = ""
    """The context it came from, if any."""

    @property
    def uses_tls(self) -> bool:
        return self.tls or bool(self.ca or self.cert)

    def channel_credentials(self) -> Any:
        """grpc ChannelCredentials, or None for plaintext."""
        import grpc

        if not self.uses_tls:
            return None
        if bool(self.cert) != bool(self.key):
            raise ConfigFileError(
                "a client certificate needs its key: give both --cert and --key (or neither)"
            )
        from legato.pemfiles import PemError, read_certificates, read_key_pair

        try:
            root = read_certificates(self.ca, "--ca") if self.ca else None
            chain, key = read_key_pair(self.cert, self.key) if self.cert else (None, None)
        except PemError as exc:
            raise ConfigFileError(str(exc)) from None
        return grpc.ssl_channel_credentials(
            root_certificates=root, private_key=key, certificate_chain=chain
        )


def resolve(
    *,
    server: str | None = None,
    token: str | None = None,
    ca: str | None = None,
    cert: str | None = None,
    key: str | None = None,
    context: str | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Connection:
    """The connection the arguments, environment, config file and local credentials say
    (see the module docstring for the order)."""
    env = os.environ if env is None else env
    explicit = {"server": server, "token": token, "ca": ca, "cert": cert, "key": key}
    from_env = {name: env.get(f"LEGATO_{name.upper()}") or None for name in SETTINGS}
    chosen: dict[str, str | None] = {
        name: explicit[name] if explicit[name] else from_env[name] for name in SETTINGS
    }
    config = load_config(env=env)
    name = context or env.get("LEGATO_CONTEXT") or str(config.get("current-context") or "")
    contexts = config.get("contexts") or {}
    fallback: dict[str, Any] = {}
    tls = False
    if name:
        if name not in contexts:
            known = ", ".join(sorted(contexts)) or "none"
            raise ConfigFileError(
                f"there is no context {name!r} in {config_path(env)} (contexts: {known}); "
                "`legato config set-context NAME --server ...` adds one"
            )
        fallback = dict(contexts[name] or {})
    else:
        local = find_local_credentials(cwd)
        if local is not None:
            fallback = local
    target = chosen["server"] or str(fallback.get("server") or "") or DEFAULT_SERVER
    if explicit["server"]:
        origin = "--server"
    elif from_env["server"]:
        origin = "LEGATO_SERVER"
    elif fallback.get("server"):
        origin = f"the server of context {name!r}" if name else "the server in .legato/"
    else:
        origin = "the server"
    check_address(target, origin)
    same_server = _same(target, str(fallback.get("server") or DEFAULT_SERVER))
    if same_server:
        tls = bool(fallback.get("tls"))
        # A client certificate and its key go together: one given here keeps the
        # context's pair out (a certificate with another's key cannot work).
        pair = ("cert", "key") if chosen["cert"] or chosen["key"] else ()
        for setting in ("token", "ca", "cert", "key"):
            if not chosen[setting] and setting not in pair:
                value = fallback.get(setting)
                if setting == "token" and not value and fallback.get("token-file"):
                    value = _read(str(fallback["token-file"]), "token-file").decode().strip()
                chosen[setting] = str(value) if value else None
    return Connection(
        server=target,
        token=chosen["token"] or "",
        ca=chosen["ca"] or "",
        cert=chosen["cert"] or "",
        key=chosen["key"] or "",
        tls=tls,
        context=name if same_server else "",
    )


def check_address(address: str, origin: str = "the server") -> None:
    """Refuse a URL where ``HOST:PORT`` belongs, saying what to give instead."""
    scheme, sep, rest = address.strip().partition("://")
    if not sep or scheme.lower() not in URL_SCHEMES:
        return
    hostport = rest.split("/", 1)[0]
    if hostport.rpartition(":")[2].isdigit() and ":" in hostport:
        suggested = hostport
    else:
        suggested = f"{hostport}:{DEFAULT_PORT}"
    tls = (
        "; TLS is not chosen by the scheme: give --ca (or `legato config set-context "
        "--tls` for a server with a public certificate)"
        if scheme.lower() in ("https", "grpcs")
        else ""
    )
    raise ConfigFileError(
        f"{origin} {address!r} is a URL; give HOST:PORT without the scheme: drop "
        f"'{scheme}://' and use {suggested}{tls}"
    )


def config_path(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    if env.get("LEGATO_CONFIG"):
        return Path(env["LEGATO_CONFIG"]).expanduser()
    base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base).expanduser() / "legato" / "config.yaml"


def load_config(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    path = config_path(env)
    try:
        return _load_private_yaml(path)
    except FileNotFoundError:
        return {}


def save_config(config: Mapping[str, Any], env: Mapping[str, str] | None = None) -> Path:
    """Write the config file (mode 0600, atomically)."""
    path = config_path(env)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    _write_private_yaml(path, dict(config))
    return path


def find_local_credentials(cwd: Path | None = None) -> dict[str, Any] | None:
    """The credentials ``legato up`` left in ``.legato/`` here or in a parent directory."""
    here = (cwd or Path.cwd()).resolve()
    for directory in (here, *here.parents):
        path = directory / LOCAL_CREDENTIALS
        try:
            data = _load_private_yaml(path)
        except FileNotFoundError:
            continue
        except ConfigFileError:
            raise
        data = dict(data)
        for setting in ("ca", "cert", "key"):
            if data.get(setting):
                data[setting] = str((path.parent / str(data[setting])).resolve())
        return data
    return None


def write_local_credentials(directory: Path, values: Mapping[str, Any]) -> Path:
    """Write ``.legato/credentials.yaml`` (mode 0600) in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / LOCAL_CREDENTIALS.name
    _write_private_yaml(path, dict(values))
    return path


def with_server(connection: Connection, server: str) -> Connection:
    return replace(connection, server=server)


def _load_private_yaml(path: Path) -> dict[str, Any]:
    info = path.stat()
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigFileError(
            f"{path} holds tokens but others can read it (mode {stat.S_IMODE(info.st_mode):o}); "
            f"run `chmod 600 {path}`"
        )
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise ConfigFileError(f"{where}: not valid YAML") from None
    if not isinstance(data, dict):
        raise ConfigFileError(f"{path}: expected a mapping at the top")
    return data


def _write_private_yaml(path: Path, data: dict[str, Any]) -> None:
    partial = path.with_name(path.name + ".tmp")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        yaml.safe_dump(data, handle, sort_keys=False)
    os.chmod(partial, 0o600)
    os.replace(partial, path)


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).expanduser().read_bytes()
    except OSError as exc:
        raise ConfigFileError(f"{what} {path}: {exc.strerror or exc}") from None


def _same(a: str, b: str) -> bool:
    return _normal(a) == _normal(b)


def _normal(address: str) -> str:
    host, _, port = address.strip().rpartition(":")
    host = host.strip("[]").lower()
    if host in ("localhost", "127.0.0.1", "::1"):
        host = "loopback"
    return f"{host}:{port}"
