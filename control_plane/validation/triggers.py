"""Triggers: events (with a filter over ``event``), signed webhooks, database changes."""

from __future__ import annotations

from collections.abc import Iterator

from control_plane.pipelines.expressions import ExpressionError, parse_expression
from legato.v1 import spec_pb2

from .fields import COLUMN, DAY, SECOND, TABLE, check_duration, check_required
from .params import check_param_values
from .violations import Violation, index, join

__all__ = ["EVENT_ROOTS", "MAX_POLL_INTERVAL", "MIN_POLL_INTERVAL", "check_triggers"]

EVENT_ROOTS = ("event",)
MIN_POLL_INTERVAL = 1 * SECOND
MAX_POLL_INTERVAL = 1 * DAY


def check_triggers(spec: spec_pb2.PipelineSpec) -> Iterator[Violation]:
    for position, trigger in enumerate(spec.triggers):
        path = index("triggers", position)
        kind = trigger.WhichOneof("kind")
        if kind == "event":
            yield from _check_event(join(path, "event"), trigger.event, spec)
        elif kind == "webhook":
            yield from check_required(
                join(path, "webhook.secret"),
                trigger.webhook.secret,
                "a webhook trigger needs secret, the name of the secret its HMAC-SHA256 "
                "signature is checked against",
            )
        elif kind == "database":
            yield from _check_database(join(path, "database"), trigger.database)
        else:
            yield Violation(
                path, "trigger has no kind; set exactly one of event, webhook, database"
            )


def _check_event(
    path: str, event: spec_pb2.EventTrigger, spec: spec_pb2.PipelineSpec
) -> Iterator[Violation]:
    yield from check_required(
        join(path, "type"),
        event.type,
        "an event trigger needs type, the type of the events that start a run",
    )
    if event.filter:
        try:
            parse_expression(event.filter, allowed_roots=EVENT_ROOTS)
        except ExpressionError as exc:
            yield Violation(join(path, "filter"), str(exc))
    yield from check_param_values(join(path, "params"), event.params, spec)


def _check_database(path: str, database: spec_pb2.DatabaseTrigger) -> Iterator[Violation]:
    yield from check_required(
        join(path, "connection"),
        database.connection,
        "a database trigger needs connection, the name of a connection configured on agents",
    )
    if database.channel and database.table:
        yield Violation(
            join(path, "table"),
            "set channel (LISTEN/NOTIFY) or table (polled by watermark), not both",
        )
    elif not database.channel and not database.table:
        yield Violation(
            path,
            "a database trigger needs channel (PostgreSQL LISTEN/NOTIFY) or table "
            "(polled for rows whose watermark column grew); set one of them",
        )
    elif database.table and not TABLE.fullmatch(database.table):
        yield Violation(
            join(path, "table"),
            f"'{database.table}' is not a table name; write table or schema.table",
        )
    if database.table:
        yield from _check_watermark(join(path, "watermark"), database.watermark)
    if database.HasField("every"):
        yield from check_duration(
            join(path, "every"),
            database.every,
            minimum=MIN_POLL_INTERVAL,
            maximum=MAX_POLL_INTERVAL,
        )


def _check_watermark(path: str, watermark: str) -> Iterator[Violation]:
    if not watermark:
        yield Violation(
            path,
            "a polled table needs watermark, the column whose growth marks new rows "
            "(like updated_at or id)",
        )
    elif not COLUMN.fullmatch(watermark):
        yield Violation(path, f"'{watermark}' is not a column name; use letters, digits and '_'")
