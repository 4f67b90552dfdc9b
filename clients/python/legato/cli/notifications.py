"""``legato notifications [RUN]``: the notifications written about runs' events and how
their delivery went; ``legato notify test``: a test message through each of a pipeline's
notifications, one line per channel (see docs/notifications.md)."""

from __future__ import annotations

import argparse
import itertools
from collections import Counter

import grpc

from legato.cli.output import emit_message, local_time, render_table
from legato.cli.runref import resolve_run
from legato.cli.specfiles import CommandError, load_all, print_violations
from legato.client import Client
from legato.errors import RpcError
from legato.spec.enums import short_name
from legato.v1 import pipeline_service_pb2
from legato.v1 import run_service_pb2 as pb

__all__ = ["register", "run_notifications"]

STATUS = pb.NotificationStatus.DESCRIPTOR
ERROR_CHARS = 80


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    help_text = "list notifications, newest first: event, channel, delivery status, last error"
    p = sub.add_parser("notifications", parents=[common], help=help_text, description=help_text)
    p.set_defaults(handler=list_notifications, needs_client=True)
    p.add_argument(
        "run",
        metavar="RUN",
        nargs="?",
        default="",
        help="only this run's: an id, a unique prefix of a recent one, or latest",
    )
    p.add_argument("--limit", type=int, default=20, help="at most this many (default 20, 0: all)")

    notify = sub.add_parser(
        "notify",
        help="test a pipeline's notifications",
        description="Test a pipeline's notifications.",
    )
    actions = notify.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    help_text = (
        "send a test message now through each of a pipeline's notifications (or of a spec "
        "file's, before it is applied) and show what each receiver answered; exits 1 when "
        "any failed"
    )
    p = actions.add_parser("test", parents=[common], help=help_text, description=help_text)
    p.set_defaults(handler=test_notifications, needs_client=True)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--pipeline", metavar="NAME", help="an applied pipeline (its latest version)"
    )
    source.add_argument(
        "-f", "--file", metavar="FILE", help="a spec file (YAML or JSON, or - for stdin)"
    )
    p.add_argument(
        "--position",
        dest="positions",
        type=_position,
        action="append",
        default=[],
        metavar="N",
        help="only the notification at this index of notifications: (0 is the first); repeatable",
    )


def list_notifications(client: Client, args: argparse.Namespace) -> int:
    if args.run:
        args.run = resolve_run(client, args)
    found = client.list_notifications(
        run_id=args.run, page_size=min(args.limit, 1000) if args.limit > 0 else 0
    )
    items = list(itertools.islice(found, args.limit) if args.limit > 0 else found)
    if args.output != "table":
        emit_message(pb.ListNotificationsResponse(notifications=items), args.output)
        return 0
    if not items:
        print(f"no notifications for run {args.run}" if args.run else "no notifications")
        return 0
    rows = [
        [
            local_time(n.create_time),
            n.run_id,
            n.pipeline,
            n.event,
            n.target,
            _status(n),
            str(n.attempts),
            _cut(n.last_error),
        ]
        for n in items
    ]
    headers = ["TIME", "RUN", "PIPELINE", "EVENT", "TARGET", "STATUS", "ATTEMPTS", "LAST ERROR"]
    print(render_table(headers, rows))
    return 0


def test_notifications(client: Client, args: argparse.Namespace) -> int:
    if args.file:
        (loaded,) = load_all([args.file])
        try:
            found = client.test_notifications(spec=loaded.spec, positions=args.positions)
        except RpcError as error:
            if error.reason != "INVALID_PIPELINE_SPEC":
                raise
            print_violations(loaded, error)
            raise CommandError from None
    else:
        found = client.test_notifications(pipeline=args.pipeline, positions=args.positions)
    if args.output != "table":
        emit_message(found, args.output)
    else:
        for result in found.results:
            print(_tried(result))
    if any(not result.ok for result in found.results):
        raise CommandError
    return 0


def _tried(result: pipeline_service_pb2.NotificationTestResult) -> str:
    """``✓ webhook https://…: 200 OK`` or ``✗ slack webhook 'x' #data: 404 no_service``."""
    mark = "✓" if result.ok else "✗"
    return f"{mark} {result.target or result.channel}: {' '.join(result.detail.split())}"


def _position(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a position (0, 1, 2, ...)")
    return value


# How `legato status RUN` counts a run's notifications, in this order.
_STATES = ("delivered", "pending", "sending", "retrying", "suppressed", "failed")


def run_notifications(client: Client, run_id: str) -> list[str]:
    """Lines for ``legato status RUN``: how many of the run's notifications are in each
    state, then each one that failed or is being retried, with its last error (none when
    the run has no notifications, or the caller may not list them)."""
    try:
        items = list(client.list_notifications(run_id=run_id))
    except RpcError as error:
        if error.code in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNIMPLEMENTED):
            return []
        raise
    if not items:
        return []
    states = [_state(n) for n in items]
    counts = Counter(states)
    lines = ["notifications: " + ", ".join(f"{counts[s]} {s}" for s in _STATES if counts[s])]
    for notification, state in zip(items, states, strict=True):
        if state in ("failed", "retrying"):
            tries = f"{notification.attempts} attempt{'' if notification.attempts == 1 else 's'}"
            lines.append(
                f"  ✗ {notification.event} to {notification.target}: {_status(notification)} "
                f"after {tries}: {_cut(notification.last_error)}"
            )
    if len(lines) > 1:
        lines.append(f"  (legato notifications {run_id} lists them all)")
    return lines


def _state(notification: pb.NotificationDelivery) -> str:
    if notification.status == pb.NOTIFICATION_STATUS_PENDING and notification.attempts:
        return "retrying"
    value = STATUS.values_by_number.get(notification.status)
    return short_name(value) if value is not None else str(notification.status)


def _status(notification: pb.NotificationDelivery) -> str:
    value = STATUS.values_by_number.get(notification.status)
    name = short_name(value) if value is not None else str(notification.status)
    if notification.status == pb.NOTIFICATION_STATUS_PENDING and notification.attempts:
        return f"retrying at {local_time(notification.next_attempt_time)}"
    return name


def _cut(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= ERROR_CHARS else line[: ERROR_CHARS - 1] + "…"
