"""``legato activity``: the activity log, newest first: who did what, when, to what, under
which request id, and how it ended."""

from __future__ import annotations

import argparse
import itertools
from datetime import UTC, datetime, timedelta

from legato.cli.output import emit_message, local_time, render_table
from legato.cli.tokens import parse_expiry
from legato.client import Client
from legato.spec.enums import short_name
from legato.spec.units import UnitError, parse_duration
from legato.v1 import access_pb2
from legato.v1 import audit_service_pb2 as pb

__all__ = ["register"]


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    help_text = "the activity log: who changed what, when, and how it ended"
    p = sub.add_parser("activity", parents=[common], help=help_text, description=help_text)
    p.set_defaults(handler=activity, needs_client=True)
    p.add_argument("--pipeline", default="", help="only entries about this pipeline")
    p.add_argument("--actor", default="", help="only entries by this token or agent")
    p.add_argument("--action", default="", help="only this action, e.g. ApplyPipeline")
    p.add_argument("--since", metavar="WHEN", help="entries since a duration ago (1h) or a date")
    p.add_argument("--until", metavar="WHEN", help="entries before a duration ago (30m) or a date")
    p.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")


def activity(client: Client, args: argparse.Namespace) -> int:
    since = _ago(args.since)
    until = _ago(args.until)
    events = list(
        itertools.islice(
            client.list_audit_events(
                pipeline=args.pipeline,
                actor=args.actor,
                action=args.action,
                since=since,
                until=until,
                page_size=min(max(args.limit, 1), 1000),
            ),
            max(args.limit, 1),
        )
    )
    if args.output != "table":
        emit_message(pb.ListAuditEventsResponse(events=events), args.output)
        return 0
    if not events:
        filtered = since or until or args.pipeline or args.actor or args.action
        print("no activity" + (" matches" if filtered else ""))
        return 0
    rows = [
        [
            local_time(e.time),
            f"{e.actor} ({_enum(access_pb2.ActorKind, e.actor_kind)})",
            e.action,
            e.resource,
            _outcome(e),
            e.request_id or "-",
        ]
        for e in events
    ]
    print(render_table(["TIME", "ACTOR", "ACTION", "RESOURCE", "OUTCOME", "REQUEST"], rows))
    return 0


def _outcome(event: access_pb2.AuditEvent) -> str:
    outcome = _enum(access_pb2.AuditOutcome, event.outcome)
    return f"{outcome}: {event.error}" if event.error else outcome


def _enum(enum: object, value: int) -> str:
    descriptor = enum.DESCRIPTOR.values_by_number.get(value)  # type: ignore[attr-defined]
    return short_name(descriptor) if descriptor is not None and value else "-"


def _ago(text: str | None) -> datetime | None:
    """``--since 1h`` is an hour ago (not an hour from now, as an expiry would be); a
    date or time is taken as it is."""
    if not text:
        return None
    try:
        return datetime.now(UTC) - timedelta(seconds=parse_duration(text))
    except UnitError:
        return parse_expiry(text)
