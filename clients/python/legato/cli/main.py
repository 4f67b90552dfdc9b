"""Entry point of the ``legato`` command.

Client commands talk to a control plane over gRPC and print tables, or with
``-o json|yaml`` the response message in proto3 JSON with proto field names. Where and
with which credentials: ``--server``, ``--token``, ``--ca``, ``--cert``, ``--key``,
``--context``, else LEGATO_* variables, the current context (``legato config``) or the
credentials ``legato up`` left in ./.legato/ (see ``legato.connection``). ``server``,
``db`` and ``up`` run server code, which is imported only for them, so a client-only
install stays slim. Errors go to
stderr with a non-zero exit code, never a traceback."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from legato import __version__
from legato.cli import (
    activity,
    agents,
    certs,
    config_cmd,
    events,
    notifications,
    pipelines,
    runs,
    schedules,
    server,
    tokens,
    ui,
)
from legato.cli.output import FORMATS
from legato.cli.specfiles import CommandError
from legato.client import Client
from legato.connection import ConfigFileError
from legato.errors import RpcError

__all__ = ["client_for", "main"]

EXIT_ERROR = 1


def build_parser() -> argparse.ArgumentParser:
    # Options every command takes; SUPPRESS keeps a subcommand from overwriting a value
    # given before the command name.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--server",
        default=argparse.SUPPRESS,
        metavar="HOST:PORT",
        help="control plane address (env LEGATO_SERVER, default localhost:7470)",
    )
    common.add_argument(
        "-o",
        "--output",
        choices=FORMATS,
        default=argparse.SUPPRESS,
        help="table (default), json or yaml",
    )
    for flag, text in CONNECTION_FLAGS:
        common.add_argument(flag, default=argparse.SUPPRESS, help=text)

    parser = argparse.ArgumentParser(
        prog="legato",
        description="Legato: data pipelines on a gRPC control plane with executor agents.",
    )
    parser.add_argument("--server", default=None, metavar="HOST:PORT", help=argparse.SUPPRESS)
    for flag, _ in CONNECTION_FLAGS:
        parser.add_argument(flag, default=None, help=argparse.SUPPRESS)
    parser.add_argument("-o", "--output", choices=FORMATS, default="table", help=argparse.SUPPRESS)
    parser.add_argument("--version", action="version", version=f"legato {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    pipelines.register(sub, common)
    runs.register(sub, common)
    notifications.register(sub, common)
    agents.register(sub, common)
    events.register(sub, common)
    schedules.register(sub, common)
    activity.register(sub, common)
    tokens.register(sub, common)
    ui.register(sub, common)
    config_cmd.register(sub, common)
    certs.register(sub, common)
    server.register(sub, common)
    return parser


CONNECTION_FLAGS = [
    ("--token", "API token (env LEGATO_TOKEN, else the context's)"),
    ("--ca", "CA certificate (PEM) to check the server's against; turns TLS on (LEGATO_CA)"),
    ("--cert", "client certificate (PEM) when the server asks for one (LEGATO_CERT)"),
    ("--key", "the client certificate's key (LEGATO_KEY)"),
    ("--context", "a context of the config file (LEGATO_CONTEXT, else the current one)"),
]


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    # `legato server ...` hands its arguments to the server's own parser.
    if args_list[:1] == ["server"]:
        return server.run_server(args_list[1:])
    if args_list[:1] == ["agent"]:
        return server.run_agent(args_list[1:])
    parser = build_parser()
    args = parser.parse_args(args_list)
    try:
        if not getattr(args, "needs_client", False):
            code: int = args.handler(args)
            return code
        with client_for(args) as client:
            code = args.handler(client, args)
            return code
    except CommandError:
        return EXIT_ERROR
    except ConfigFileError as error:
        print(f"legato {args.command}: {error}", file=sys.stderr)
        return EXIT_ERROR
    except RpcError as error:
        print(f"legato {args.command}: {error.message}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


def client_for(args: argparse.Namespace) -> Client:
    """A client with the connection the command's flags (and the environment, the context,
    the local credentials) say."""
    return Client(
        args.server,
        token=args.token,
        ca=args.ca,
        cert=args.cert,
        key=args.key,
        context=args.context,
    )


if __name__ == "__main__":
    sys.exit(main())
