"""Schedule commands: ``schedule preview|pause|resume`` and ``backfill``.

``schedule preview`` lists the next fire times in the schedule's zone and in UTC, marks
the ones a daylight saving change moved or doubled, and says why the schedule is not
firing when it is not (paused and why, archived). ``backfill`` creates a run for each fire
time of a past range (``--dry-run`` lists them), runs behind the live ones.

``--from`` and ``--to`` without a UTC offset (``2026-03-27``, ``2026-03-27T09:00``) are
read in the schedule's time zone, as its cron is, and the output says so; with an offset
(``…+01:00``, ``…Z``) they are that moment. Times are printed in the schedule's zone,
with the zone's name."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime, time, tzinfo

from legato.cli.output import (
    emit_message,
    format_moment,
    render_table,
    schedule_zone,
    zoned_time,
)
from legato.cli.specfiles import CommandError
from legato.client import Client
from legato.errors import RpcError
from legato.v1 import run_pb2

__all__ = ["register"]

Handler = Callable[[Client, argparse.Namespace], int]


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    schedule = sub.add_parser(
        "schedule",
        help="preview, pause or resume a pipeline's schedule",
        description="Preview, pause or resume a pipeline's schedule.",
    )
    actions = schedule.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True

    def action(name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
        parser = actions.add_parser(name, parents=[common], help=help_text, description=help_text)
        parser.set_defaults(handler=handler, needs_client=True)
        parser.add_argument("pipeline", help="the pipeline whose schedule it is")
        return parser

    p = action("preview", preview, "the next fire times, local and UTC, with DST marked")
    p.add_argument("--count", type=int, default=10, help="how many (default 10, at most 1000)")
    p.add_argument(
        "--from",
        dest="start",
        type=_moment,
        metavar="WHEN",
        help="list fire times after this date or ISO time (default now); without an offset, "
        "in the schedule's zone",
    )
    p = action("pause", pause, "stop firing until resumed")
    p.add_argument("--reason", default="", help="shown wherever the schedule is shown")
    action("resume", resume, "fire again from the next fire time (the pause is not caught up)")

    p = sub.add_parser(
        "backfill",
        parents=[common],
        help="run a schedule's fire times of a past range",
        description=(
            "Create a run for each fire time of PIPELINE's schedule in [--from, --to), "
            "queued behind live runs; or show (--status) or cancel (--cancel) a backfill."
        ),
    )
    p.set_defaults(handler=backfill, needs_client=True)
    p.add_argument("pipeline", nargs="?", default="", help="the pipeline whose schedule to run")
    p.add_argument(
        "--from",
        dest="start",
        type=_moment,
        metavar="WHEN",
        help="the first fire time's lower bound (included): a date or an ISO time; without an "
        "offset, in the schedule's zone",
    )
    p.add_argument(
        "--to",
        dest="end",
        type=_moment,
        metavar="WHEN",
        help="the upper bound (excluded), read like --from",
    )
    p.add_argument("--dry-run", action="store_true", help="list the fire times, create nothing")
    p.add_argument(
        "--only-missing", action="store_true", help="skip logical times that already succeeded"
    )
    p.add_argument("--status", metavar="ID", help="show a backfill's progress")
    p.add_argument("--cancel", metavar="ID", help="cancel a backfill's queued and running runs")


def _moment(text: str) -> datetime:
    """A date (its midnight) or an ISO 8601 time; naive unless it has an offset: the
    command puts it in the schedule's zone (:func:`_in_zone`)."""
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), time())
        return datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a date (2026-03-27) or an ISO time (2026-03-27T09:00, or with "
            "an offset: 2026-03-27T09:00+01:00)"
        ) from None


def _in_zone(moment: datetime | None, zone: tzinfo) -> datetime | None:
    """``moment`` as given when it has an offset, else that wall time in ``zone``."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=zone)


def _zone_of(client: Client, pipeline: str) -> tuple[tzinfo, str]:
    """The schedule's zone and its name (UTC when the pipeline has no schedule or cannot
    be read: the server then says why)."""
    try:
        found = client.get_pipeline(pipeline)
    except RpcError:
        return UTC, "UTC"
    name = found.spec.schedule.timezone or "UTC"
    return schedule_zone(name), name


def _naive(*moments: datetime | None) -> bool:
    return any(m is not None and m.tzinfo is None for m in moments)


def preview(client: Client, args: argparse.Namespace) -> int:
    start = args.start
    read_in = ""
    if _naive(start):
        zone, read_in = _zone_of(client, args.pipeline)
        start = _in_zone(start, zone)
    found = client.preview_schedule(args.pipeline, count=args.count, start=start)
    if args.output != "table":
        emit_message(found, args.output)
        return 0
    zone = schedule_zone(found.timezone)
    print(f"{'schedule:':<10}{found.cron} ({found.timezone})")
    state = found.state
    if state.paused:
        print(f"{'state:':<10}paused — {state.pause_reason}")
    elif found.waiting_reason:
        print(f"{'state:':<10}{found.waiting_reason}")
    else:
        print(f"{'state:':<10}active, next at {zoned_time(state.next_fire_time, zone)}")
    if state.consecutive_failures:
        print(f"{'failures:':<10}{state.consecutive_failures} in a row")
    if start is not None and read_in:
        print(f"{'from:':<10}{format_moment(start)} (--from read in {read_in})")
    print()
    rows = [
        [
            f.local_time.replace("T", " "),
            f.time.ToDatetime(tzinfo=UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
            f.dst_note or "",
        ]
        for f in found.fire_times
    ]
    print(render_table(["LOCAL", "UTC", "DST"], rows))
    return 0


def pause(client: Client, args: argparse.Namespace) -> int:
    pipeline = client.pause_schedule(args.pipeline, reason=args.reason)
    if args.output != "table":
        emit_message(pipeline, args.output)
        return 0
    print(f"schedule of {pipeline.name} paused: {pipeline.schedule.pause_reason}")
    return 0


def resume(client: Client, args: argparse.Namespace) -> int:
    pipeline = client.resume_schedule(args.pipeline)
    if args.output != "table":
        emit_message(pipeline, args.output)
        return 0
    zone = schedule_zone(pipeline.spec.schedule.timezone)
    nxt = zoned_time(pipeline.schedule.next_fire_time, zone)
    print(f"schedule of {pipeline.name} resumed; next fire time {nxt}")
    return 0


def backfill(client: Client, args: argparse.Namespace) -> int:
    if args.status or args.cancel:
        found = (
            client.get_backfill(args.status) if args.status else client.cancel_backfill(args.cancel)
        )
        return _show(found, args, _zone_of(client, found.pipeline))
    if not args.pipeline or args.start is None or args.end is None:
        print(
            "legato backfill: give PIPELINE --from WHEN --to WHEN (or --status / --cancel ID)",
            file=sys.stderr,
        )
        raise CommandError
    zone, zone_name = _zone_of(client, args.pipeline)
    read_in = zone_name if _naive(args.start, args.end) else ""
    start, end = _in_zone(args.start, zone), _in_zone(args.end, zone)
    assert start is not None and end is not None
    response = client.create_backfill(
        args.pipeline, start, end, dry_run=args.dry_run, only_missing=args.only_missing
    )
    if args.output != "table":
        emit_message(response, args.output)
        return 0
    read = f"; --from and --to read in {read_in}" if read_in else ""
    times = [t.ToDatetime(tzinfo=UTC) for t in response.logical_times]
    if args.dry_run:
        print(f"{len(times)} fire times in {zone_name} (dry run, nothing created{read}):")
        for moment in times:
            print(f"  {format_moment(moment.astimezone(zone))}  ({moment:%Y-%m-%d %H:%M} UTC)")
        return 0
    return _show(response.backfill, args, (zone, zone_name), read_in=read_in)


def _show(
    found: run_pb2.Backfill,
    args: argparse.Namespace,
    zone: tuple[tzinfo, str],
    *,
    read_in: str = "",
) -> int:
    if args.output != "table":
        emit_message(found, args.output)
        return 0
    status = run_pb2.BackfillStatus.Name(found.status).removeprefix("BACKFILL_STATUS_").lower()
    print(f"{'backfill:':<10}{found.id}")
    print(f"{'pipeline:':<10}{found.pipeline}")
    span = f"{zoned_time(found.start_time, zone[0])} to {zoned_time(found.end_time, zone[0])}"
    notes = [note for note in ("only missing" if found.only_missing else "",) if note]
    if read_in:
        notes.append(f"--from and --to read in {read_in}")
    print(f"{'range:':<10}{span}" + (f" ({'; '.join(notes)})" if notes else ""))
    print(f"{'status:':<10}{status}")
    print(
        f"{'runs:':<10}{found.runs_done} of {found.runs_total} done, {found.runs_failed} failed"
        f" (legato runs --backfill {found.id})"
    )
    return 0
