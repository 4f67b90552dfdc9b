#!/opt/legato/bin/python
"""legato-healthcheck: is the Legato process in this container healthy? Exit 0 if so, 1 if not.

The images run it as their HEALTHCHECK, and the Helm chart's probes run it too. It reads
the settings the process reads (the ``LEGATO_SERVER_*`` / ``LEGATO_AGENT_*`` variables;
flags override them when a process was started with flags instead) and works with
authentication on: it needs no API token.

``legato-healthcheck server`` — every check that can run must pass, and one must run:

- **gRPC**: ``grpc.health.v1.Health/Check`` on the gRPC listener (``LEGATO_SERVER_LISTEN``,
  dialled on loopback when it listens on every address) must answer ``SERVING``; it
  answers ``NOT_SERVING`` once shutdown starts. Health needs no credential. Over TLS
  (``LEGATO_SERVER_TLS_CERT``) it trusts exactly the server's own certificate, read from
  that file, and names the host the certificate names. On an mTLS server
  (``LEGATO_SERVER_CLIENT_CA``) it needs a client certificate,
  ``LEGATO_HEALTHCHECK_CERT`` and ``LEGATO_HEALTHCHECK_KEY``; without one this check is
  skipped (said in the output) and the HTTP check must do.
- **HTTP**: ``GET /metrics`` on the HTTP listener (``LEGATO_SERVER_HTTP_LISTEN``; skipped
  when ``off``) must answer: ``401`` (it asks for a token: the listener works) or ``200``.
  With ``LEGATO_HEALTHCHECK_TOKEN_FILE`` (a file holding an API token of any role) it
  must answer ``200`` with ``legato_database_up 1``: the database answers too.

``legato-healthcheck agent [--connected]`` — the agent's metrics page
(``LEGATO_AGENT_METRICS_LISTEN``; the agent image sets ``0.0.0.0:9464``) must answer;
with ``--connected``, ``legato_agent_connected`` must be 1 (its stream to the control
plane is open). Use ``--connected`` for readiness, never for liveness: an agent whose
control plane is away keeps its steps running, and restarting it would kill them.
"""

from __future__ import annotations

import argparse
import os
import re
import ssl
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["main"]

UNHEALTHY = 1
_WILDCARDS = {"", "0.0.0.0", "::", "[::]", "*"}


class UnhealthyError(Exception):
    """A check that failed; the message says which and why."""


@dataclass(frozen=True)
class Result:
    check: str
    detail: str


def main(argv: list[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    args = _parser().parse_args(argv)
    try:
        if args.role == "server":
            results = check_server(env, args.grpc, args.http, args.timeout)
        else:
            results = [check_agent(env, args.metrics, args.timeout, connected=args.connected)]
    except UnhealthyError as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        return UNHEALTHY
    for result in results:
        print(f"healthy: {result.check}: {result.detail}")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="legato-healthcheck",
        description="Exit 0 when the Legato server or agent in this container is healthy.",
    )
    parser.add_argument(
        "--timeout", type=float, default=4.0, help="seconds each check may take (default 4)"
    )
    roles = parser.add_subparsers(dest="role", required=True, metavar="ROLE")
    server = roles.add_parser("server", help="check the control plane")
    server.add_argument(
        "--grpc",
        metavar="HOST:PORT",
        help="the gRPC listener (default LEGATO_SERVER_LISTEN, else 127.0.0.1:7470)",
    )
    server.add_argument(
        "--http",
        metavar="HOST:PORT|off",
        help="the HTTP listener (default LEGATO_SERVER_HTTP_LISTEN, else 127.0.0.1:7471)",
    )
    agent = roles.add_parser("agent", help="check an executor agent")
    agent.add_argument(
        "--metrics",
        metavar="[HOST:]PORT",
        help="its metrics page (default LEGATO_AGENT_METRICS_LISTEN)",
    )
    agent.add_argument(
        "--connected",
        action="store_true",
        help="also require its stream to the control plane to be open (readiness)",
    )
    return parser


def dial_address(listen: str, setting: str) -> tuple[str, int]:
    """Where to dial a listener from inside its container: its own host, or loopback
    when it listens on every address."""
    host, sep, port = listen.strip().rpartition(":")
    if not sep:
        host, port = "", listen.strip()
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise UnhealthyError(
            f"{setting}={listen!r} is not HOST:PORT with a port from 1 to 65535; "
            "give the address the process listens on"
        )
    if host in _WILDCARDS:
        host = "::1" if ":" in host else "127.0.0.1"
    return host.strip("[]"), int(port)


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def check_server(
    env: Mapping[str, str], grpc_listen: str | None, http_listen: str | None, timeout: float
) -> list[Result]:
    tls_cert = env.get("LEGATO_SERVER_TLS_CERT", "")
    results: list[Result] = []
    skipped: list[str] = []

    listen = grpc_listen or env.get("LEGATO_SERVER_LISTEN") or "127.0.0.1:7470"
    host, port = dial_address(listen, "LEGATO_SERVER_LISTEN")
    client_cert = env.get("LEGATO_HEALTHCHECK_CERT", "")
    client_key = env.get("LEGATO_HEALTHCHECK_KEY", "")
    if tls_cert and env.get("LEGATO_SERVER_CLIENT_CA") and not (client_cert and client_key):
        skipped.append(
            "gRPC skipped: the server requires client certificates (LEGATO_SERVER_CLIENT_CA) "
            "and LEGATO_HEALTHCHECK_CERT/LEGATO_HEALTHCHECK_KEY are not set"
        )
    else:
        results.append(_grpc_health(host, port, tls_cert, client_cert, client_key, timeout=timeout))

    http = http_listen or env.get("LEGATO_SERVER_HTTP_LISTEN") or "127.0.0.1:7471"
    if http.strip().lower() == "off":
        skipped.append("HTTP skipped: LEGATO_SERVER_HTTP_LISTEN=off")
    else:
        http_host, http_port = dial_address(http, "LEGATO_SERVER_HTTP_LISTEN")
        token_file = env.get("LEGATO_HEALTHCHECK_TOKEN_FILE", "")
        results.append(_http_metrics(http_host, http_port, tls_cert, token_file, timeout))

    if not results:
        raise UnhealthyError(
            "nothing could be checked: "
            + "; ".join(skipped)
            + ". Give the check a client certificate, or keep the HTTP listener on"
        )
    return results + [Result("note", why) for why in skipped]


def _grpc_health(
    host: str, port: int, tls_cert: str, client_cert: str, client_key: str, *, timeout: float
) -> Result:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    target = _hostport(host, port)
    options: list[tuple[str, str]] = []
    if tls_cert:
        pem = _read(tls_cert, "LEGATO_SERVER_TLS_CERT")
        name = certificate_name(pem)
        if name:
            options.append(("grpc.ssl_target_name_override", name))
        chain = None
        if client_cert:
            chain = (
                _read(client_key, "LEGATO_HEALTHCHECK_KEY"),
                _read(client_cert, "LEGATO_HEALTHCHECK_CERT"),
            )
        credentials = grpc.ssl_channel_credentials(
            root_certificates=pem,
            private_key=chain[0] if chain else None,
            certificate_chain=chain[1] if chain else None,
        )
        channel = grpc.secure_channel(target, credentials, options=options)
    else:
        channel = grpc.insecure_channel(target)
    scheme = "grpcs" if tls_cert else "grpc"
    # The stubs' HealthStub declares no methods; Check is there at run time.
    stub: Any = health_pb2_grpc.HealthStub(channel)
    with channel:
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout)
        except grpc.RpcError as exc:
            code = exc.code() if isinstance(exc, grpc.Call) else None
            details = exc.details() if isinstance(exc, grpc.Call) else str(exc)
            raise UnhealthyError(
                f"gRPC health check of {scheme}://{target} failed: "
                f"{code.name if code else 'error'}: {details}"
            ) from None
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    if reply.status != health_pb2.HealthCheckResponse.SERVING:
        raise UnhealthyError(f"gRPC health of {scheme}://{target} is {status} (shutting down?)")
    return Result("gRPC", f"{scheme}://{target} is {status}")


def certificate_name(pem: bytes) -> str:
    """The first DNS name (else the common name) of the first certificate in ``pem``."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    cert = x509.load_pem_x509_certificate(pem)
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns = names.get_values_for_type(x509.DNSName)
        if dns:
            return str(dns[0])
    except x509.ExtensionNotFound:
        pass
    common = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(common[0].value) if common else ""


def _http_metrics(host: str, port: int, tls_cert: str, token_file: str, timeout: float) -> Result:
    scheme = "https" if tls_cert else "http"
    url = f"{scheme}://{_hostport(host, port)}/metrics"
    context = None
    if tls_cert:
        # Trust exactly the server's own certificate; the address is loopback, which the
        # certificate need not name.
        context = ssl.create_default_context(
            cadata=_read(tls_cert, "LEGATO_SERVER_TLS_CERT").decode()
        )
        context.check_hostname = False
        context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    request = urllib.request.Request(url)
    if token_file:
        token = _read(token_file, "LEGATO_HEALTHCHECK_TOKEN_FILE").decode().strip()
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            status, body = response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        status, body = exc.code, ""
    except (OSError, ValueError) as exc:
        raise UnhealthyError(f"GET {url} failed: {_reason(exc)}") from None
    if token_file:
        if status != 200:
            raise UnhealthyError(
                f"GET {url} answered {status} with the token of LEGATO_HEALTHCHECK_TOKEN_FILE "
                "(401: unknown, revoked or expired token; 503: the database cannot be reached)"
            )
        if gauge(body, "legato_database_up") != 1:
            raise UnhealthyError(
                f"GET {url}: legato_database_up is not 1: the database is unavailable"
            )
        return Result("HTTP", f"{url} answered 200 and the database is up")
    if status not in (200, 401):
        raise UnhealthyError(f"GET {url} answered {status}, not 200 or 401")
    return Result("HTTP", f"{url} answered {status}")


def check_agent(
    env: Mapping[str, str], metrics: str | None, timeout: float, *, connected: bool
) -> Result:
    listen = metrics or env.get("LEGATO_AGENT_METRICS_LISTEN", "")
    if not listen:
        raise UnhealthyError(
            "the agent serves no metrics page to check: set LEGATO_AGENT_METRICS_LISTEN "
            "(the agent image sets 0.0.0.0:9464), or pass --metrics HOST:PORT"
        )
    host, port = dial_address(listen, "LEGATO_AGENT_METRICS_LISTEN")
    url = f"http://{_hostport(host, port)}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body = response.read().decode(errors="replace")
    except (OSError, ValueError) as exc:
        raise UnhealthyError(f"GET {url} failed: {_reason(exc)}") from None
    is_connected = gauge(body, "legato_agent_connected")
    if is_connected is None:
        raise UnhealthyError(
            f"GET {url} answered, but without legato_agent_connected: not an agent?"
        )
    running = gauge(body, "legato_agent_running_steps")
    slots = gauge(body, "legato_agent_slots")
    state = "connected" if is_connected == 1 else "not connected to the control plane"
    detail = (
        f"{url}: {state}, {running:g} of {slots:g} slots busy"
        if running is not None and slots is not None
        else f"{url}: {state}"
    )
    if connected and is_connected != 1:
        raise UnhealthyError(f"{detail} (--connected needs its stream to be open)")
    return Result("agent", detail)


def gauge(page: str, name: str) -> float | None:
    """The value of an unlabelled sample in a Prometheus text page."""
    match = re.search(rf"^{re.escape(name)} (\S+)$", page, re.MULTILINE)
    return float(match.group(1)) if match else None


def _read(path: str, setting: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise UnhealthyError(f"{setting}={path}: cannot read it ({exc.strerror or exc})") from None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason)
    return str(exc)


if __name__ == "__main__":
    sys.exit(main())
