"""Entry point of the ``legato`` command.

Client commands talk to a control plane over gRPC and print tables, or with
``-o json|yaml`` the response message in proto3 JSON with proto field names. Where and
with which credentials: ``--server``, ``--token``, ``--ca``, ``--cert``, ``--key``,
``--context``, else LEGATO_* variables, the current context (``legato config``) or the
credentials ``legato up`` left in ./.legato/ (see ``legato.connection``). ``server``,
``db`` and ``up`` run server code, which is imported only for them, so a client-only
install stays slim. Errors go to
stderr with a non-zero exit code, never a traceback; output into a pipe that was closed
(``legato runs | head -1``) ends the command quietly with exit code 141, as a process killed
by SIGPIPE, like other Unix tools."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from legato import __version__
from legato.cli import (
    activity,
    agents,
    certs,
    completion,
    config_cmd,
    events,
    lineage,
    notifications,
    pipelines,
    runs,
    schedules,
    server,
    stats,
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
EXIT_BROKEN_PIPE = 141
"""128 + SIGPIPE: what a shell reports for a producer whose reader went away."""


def build_parser() -> argparse.ArgumentParser:
    # Options every command takes; SUPPRESS keeps a subcommand from overwriting a value
    # given before the command name.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--server",
        default=argparse.SUPPRESS,
        metavar="HOST:PORT",
        help=SERVER_HELP,
    )
    common.add_argument(
        "-o",
        "--output",
        choices=FORMATS,
        default=argparse.SUPPRESS,
        help=OUTPUT_HELP,
    )
    for flag, text in CONNECTION_FLAGS:
        common.add_argument(flag, default=argparse.SUPPRESS, help=text)

    parser = argparse.ArgumentParser(
        prog="legato",
        description="Legato: data pipelines on a gRPC control plane with executor agents.",
    )
    # The same options before the command name; each command's help lists them too.
    parser.add_argument("--server", default=None, metavar="HOST:PORT", help=SERVER_HELP)
    for flag, text in CONNECTION_FLAGS:
        parser.add_argument(flag, default=None, help=text)
    parser.add_argument("-o", "--output", choices=FORMATS, default="table", help=OUTPUT_HELP)
    parser.add_argument(
        "--version", action="version", version=f"legato {__version__}", help="print the version"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    pipelines.register(sub, common)
    runs.register(sub, common)
    stats.register(sub, common)
    lineage.register(sub, common)
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
    completion.register(sub, common)
    # `legato X --help` opens with what X does, as the list of commands says it.
    for command in completion.command_tree(parser):
        if command.path and not command.parser.description and command.help:
            text = command.help
            command.parser.description = text[0].upper() + text[1:] + "."
    return parser


SERVER_HELP = "control plane address, without a scheme (env LEGATO_SERVER, default localhost:7470)"
OUTPUT_HELP = "table (default, for people), json or yaml (the response message)"
CONNECTION_FLAGS = [
    ("--token", "API token (env LEGATO_TOKEN, else the context's)"),
    ("--ca", "CA certificate (PEM) to check the server's against; turns TLS on (LEGATO_CA)"),
    ("--cert", "client certificate (PEM) when the server asks for one (LEGATO_CERT)"),
    ("--key", "the client certificate's key (LEGATO_KEY)"),
    ("--context", "a context of the config file (LEGATO_CONTEXT, else the current one)"),
]


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; its exit code. Output into a closed pipe ends it quietly, whichever
    command wrote it and whenever (a line of ``--follow``, or what is flushed at the end)."""
    try:
        try:
            code = _dispatch(list(sys.argv[1:] if argv is None else argv))
        except SystemExit:  # argparse: --help, --version, a usage error
            sys.stdout.flush()
            raise
        # What is still buffered goes now, so that a closed pipe shows here and not in
        # the interpreter's own flush at exit (which would print "Exception ignored").
        sys.stdout.flush()
    except BrokenPipeError:
        _discard_stdout()
        return EXIT_BROKEN_PIPE
    return code


def _dispatch(args_list: list[str]) -> int:
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


def _discard_stdout() -> None:
    """Point stdout at /dev/null: the reader is gone, and the interpreter flushes stdout
    once more at exit (Python's documented recipe for SIGPIPE)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # no file descriptor behind stdout (a test's capture)
        pass


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
