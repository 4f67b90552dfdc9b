"""``legato certs create``: development certificates (a CA, a server certificate, agent
and client certificates) made with the ``cryptography`` package; see ``legato.devcerts``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["register"]

DEFAULT_DIR = Path(".legato") / "certs"


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    certs = sub.add_parser("certs", help="development TLS certificates")
    certs_sub = certs.add_subparsers(dest="certs_command", metavar="COMMAND")
    certs_sub.required = True
    p = certs_sub.add_parser(
        "create",
        help="make a CA (or reuse the one in --dir), a server certificate and client ones",
        description="Make development certificates: ca.pem/ca.key (kept and reused), "
        "server.pem/server.key (kept while it names every --host), agent-NAME.pem/.key "
        "(naming the agent spiffe://legato/agent/NAME) and client-NAME.pem/.key. Keys are "
        "written 0600. A running server picks renewed files up by itself.",
    )
    p.add_argument("--dir", default=str(DEFAULT_DIR), help=f"where (default {DEFAULT_DIR})")
    p.add_argument(
        "--host",
        action="append",
        default=[],
        help="a name or IP address the server is reached at (localhost, 127.0.0.1 and ::1 "
        "are always included); repeatable. An existing server.pem that names every --host "
        "is kept; a new --host reissues it with its old names too",
    )
    p.add_argument(
        "--agent", action="append", default=[], metavar="NAME", help="an agent certificate"
    )
    p.add_argument(
        "--client", action="append", default=[], metavar="NAME", help="a client certificate"
    )
    p.add_argument(
        "--no-server", action="store_true", help="make no server certificate (add clients)"
    )
    p.add_argument("--days", type=int, default=365, help="validity in days (default 365)")
    p.set_defaults(handler=create, needs_client=False)


def create(args: argparse.Namespace) -> int:
    try:
        from legato.devcerts import create_certs
    except ModuleNotFoundError:  # pragma: no cover - cryptography is in the server extras
        print(
            "legato certs create: needs the cryptography package: pip install 'legato[server]'",
            file=sys.stderr,
        )
        return 1
    try:
        files = create_certs(
            Path(args.dir),
            hosts=args.host,
            agents=args.agent,
            clients=args.client,
            server=not args.no_server,
            days=args.days,
        )
    except ImportError:
        print(
            "legato certs create: needs the cryptography package: pip install 'legato[server]'",
            file=sys.stderr,
        )
        return 1
    except (OSError, ValueError) as exc:
        print(f"legato certs create: {exc}", file=sys.stderr)
        return 1
    for path in files.kept:
        print(f"kept  {path}")
    for path in files.created:
        print(f"wrote {path}")
    if files.server is not None:
        print(
            f"\nserve with:  legato server --tls-cert {files.server} --tls-key {files.server_key}"
            f" [--client-ca {files.ca}]"
        )
    print(f"clients:     --ca {files.ca}")
    for name, (cert, key) in files.agents.items():
        print(f"agent {name}:  legato agent --ca {files.ca} --cert {cert} --key {key}")
    if files.agents:
        print(
            "an agent's certificate is accepted once the agent is enrolled: "
            "legato agents token create --name NAME"
        )
    return 0
