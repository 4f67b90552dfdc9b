"""``legato ui``: a one-time link that opens the web UI signed in as this CLI's token."""

from __future__ import annotations

import argparse
import webbrowser
from datetime import UTC

from legato.cli.output import emit_message
from legato.client import Client

__all__ = ["register"]


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    help_text = "open the web UI signed in as this token (prints a one-time sign-in link)"
    p = sub.add_parser(
        "ui",
        parents=[common],
        help=help_text,
        description=help_text
        + ". The link works once, for 5 minutes; the browser then holds a session of up to "
        "12 hours with this token's name and role, which `Sign out` (or revoking the token) "
        "ends.",
    )
    p.set_defaults(handler=ui, needs_client=True)
    p.add_argument(
        "path",
        nargs="?",
        default="/",
        help="the page to open, e.g. /runs/RUN_ID or /pipelines/etl (default /)",
    )
    p.add_argument(
        "--open",
        action="store_true",
        help="also open the link in this machine's web browser",
    )


def ui(client: Client, args: argparse.Namespace) -> int:
    path = args.path if args.path.startswith("/") else "/" + args.path
    link = client.create_sign_in_link(next_path=path)
    if args.output != "table":
        emit_message(link, args.output)
        return 0
    until = link.expire_time.ToDatetime(tzinfo=UTC).astimezone().strftime("%H:%M:%S %Z")
    print(f"Open this link to sign in to the web UI (it works once, until {until}):")
    print(f"  {link.url}")
    if args.open:
        webbrowser.open(link.url)
    return 0
