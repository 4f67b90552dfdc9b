"""Event commands: ``events publish TYPE --data JSON`` starts the runs of the pipelines
subscribed to TYPE whose filter matches, and prints them."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from legato.cli.output import emit_message, render_table
from legato.cli.specfiles import CommandError
from legato.client import Client

__all__ = ["register"]

Handler = Callable[[Client, argparse.Namespace], int]


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    events = sub.add_parser("events", help="publish events that start subscribed pipelines")
    events_sub = events.add_subparsers(dest="events_command", metavar="COMMAND")
    events_sub.required = True
    help_text = "publish an event; pipelines with a matching event trigger start a run"
    p = events_sub.add_parser("publish", parents=[common], help=help_text, description=help_text)
    p.set_defaults(handler=publish, needs_client=True)
    p.add_argument("type", metavar="TYPE", help="the event type, e.g. orders.created")
    p.add_argument(
        "--data",
        default="{}",
        metavar="JSON",
        help="the payload, a JSON object; @FILE reads it from a file, - from stdin (default {})",
    )
    p.add_argument(
        "--request-id",
        default=None,
        metavar="ID",
        help="publishing again with this id starts nothing new and shows the first runs",
    )
    p.add_argument("--source", default="", help="who publishes it, e.g. a service name")


def publish(client: Client, args: argparse.Namespace) -> int:
    payload = _payload(args)
    response = client.publish_event(
        args.type, payload, request_id=args.request_id, source=args.source
    )
    if args.output != "table":
        emit_message(response, args.output)
        return 0
    count = len(response.run_ids)
    started = "no runs started" if not count else f"{count} run{'s' * (count != 1)} started"
    if response.duplicate:
        print(f"event {response.event_id} was published before with this request id: {started}")
    else:
        print(f"event {response.event_id} published: {started}")
    if count:
        rows = [[run_id, client.get_run(run_id).pipeline] for run_id in response.run_ids]
        print(render_table(["RUN", "PIPELINE"], rows))
    return 0


def _payload(args: argparse.Namespace) -> dict[str, Any]:
    raw: str = args.data
    where = "--data"
    try:
        if raw == "-":
            raw, where = sys.stdin.read(), "stdin"
        elif raw.startswith("@"):
            where = raw[1:]
            raw = Path(where).read_text(encoding="utf-8")
    except OSError as error:
        _fail(args, f"{where}: cannot read the payload ({error.strerror})")
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as error:
        _fail(args, f"{where} is not JSON: {error}")
    if not isinstance(data, dict):
        _fail(args, f'{where} must be a JSON object, like {{"order": 42}}')
    return data


def _fail(args: argparse.Namespace, message: str) -> NoReturn:
    print(f"legato {args.command} {args.events_command}: {message}", file=sys.stderr)
    raise CommandError
