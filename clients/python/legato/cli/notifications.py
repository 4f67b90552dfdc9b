"""``legato notifications [RUN]``: the notifications written about runs' events and how
their delivery went (see docs/notifications.md)."""

from __future__ import annotations

import argparse
import itertools

from legato.cli.output import emit_message, local_time, render_table
from legato.client import Client
from legato.spec.enums import short_name
from legato.v1 import run_service_pb2 as pb

__all__ = ["register"]

STATUS = pb.NotificationStatus.DESCRIPTOR
ERROR_CHARS = 80


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    help_text = "list notifications, newest first: event, channel, delivery status, last error"
    p = sub.add_parser("notifications", parents=[common], help=help_text, description=help_text)
    p.set_defaults(handler=list_notifications, needs_client=True)
    p.add_argument("run", metavar="RUN", nargs="?", default="", help="only this run's")
    p.add_argument("--limit", type=int, default=20, help="at most this many (default 20, 0: all)")


def list_notifications(client: Client, args: argparse.Namespace) -> int:
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


def _status(notification: pb.NotificationDelivery) -> str:
    value = STATUS.values_by_number.get(notification.status)
    name = short_name(value) if value is not None else str(notification.status)
    if notification.status == pb.NOTIFICATION_STATUS_PENDING and notification.attempts:
        return f"retrying at {local_time(notification.next_attempt_time)}"
    return name


def _cut(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= ERROR_CHARS else line[: ERROR_CHARS - 1] + "…"
