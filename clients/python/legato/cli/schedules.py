"""Schedule commands: ``schedule preview|pause|resume`` and ``backfill``.

``schedule preview`` lists the next fire times in the schedule's zone and in UTC, marks
the ones a daylight saving change moved or doubled, and says why the schedule is not
firing when it is not (paused and why, archived). ``backfill`` creates a run for each fire
time of a past range (``--dry-run`` lists them), runs behind the live ones."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime, time

from legato.cli.output import emit_message, local_time, render_table
from legato.cli.specfiles import CommandError
from legato.client import Client
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
        parser.add_argument("pipeline")
        return parser

    p = action("preview", preview, "the next fire times, local and UTC, with DST marked")
    p.add_argument("--count", type=int, default=10, help="how many (default 10, at most 1000)")
    p.add_argument(
        "--from",
        dest="start",
        type=_moment,
        metavar="WHEN",
        help="list fire times after this date or ISO time (default now)",
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
    p.add_argument("pipeline", nargs="?", default="")
    p.add_argument("--from", dest="start", type=_moment, metavar="WHEN")
    p.add_argument("--to", dest="end", type=_moment, metavar="WHEN")
    p.add_argument("--dry-run", action="store_true", help="list the fire times, create nothing")
    p.add_argument(
        "--only-missing", action="store_true", help="skip logical times that already succeeded"
    )
    p.add_argument("--status", metavar="ID", help="show a backfill's progress")
    p.add_argument("--cancel", metavar="ID", help="cancel a backfill's queued and running runs")


def _moment(text: str) -> datetime:
    """A date (midnight, local time) or an ISO 8601 time (local time without an offset)."""
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), time()).astimezone()
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a date (2026-03-27) or an ISO time (2026-03-27T09:00+01:00)"
        ) from None
    return moment if moment.tzinfo else moment.astimezone()


def preview(client: Client, args: argparse.Namespace) -> int:
    found = client.preview_schedule(args.pipeline, count=args.count, start=args.start)
    if args.output != "table":
        emit_message(found, args.output)
        return 0
    print(f"{'schedule:':<10}{found.cron} ({found.timezone})")
    state = found.state
    if state.paused:
        print(f"{'state:':<10}paused — {state.pause_reason}")
    elif found.waiting_reason:
        print(f"{'state:':<10}{found.waiting_reason}")
    else:
        print(f"{'state:':<10}active, next at {local_time(state.next_fire_time)}")
    if state.consecutive_failures:
        print(f"{'failures:':<10}{state.consecutive_failures} in a row")
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
    nxt = local_time(pipeline.schedule.next_fire_time)
    print(f"schedule of {pipeline.name} resumed; next fire time {nxt}")
    return 0


def backfill(client: Client, args: argparse.Namespace) -> int:
    if args.status or args.cancel:
        found = (
            client.get_backfill(args.status) if args.status else client.cancel_backfill(args.cancel)
        )
        return _show(found, args)
    if not args.pipeline or args.start is None or args.end is None:
        print(
            "legato backfill: give PIPELINE --from WHEN --to WHEN (or --status / --cancel ID)",
            file=sys.stderr,
        )
        raise CommandError
    response = client.create_backfill(
        args.pipeline, args.start, args.end, dry_run=args.dry_run, only_missing=args.only_missing
    )
    if args.output != "table":
        emit_message(response, args.output)
        return 0
    times = [t.ToDatetime(tzinfo=UTC) for t in response.logical_times]
    if args.dry_run:
        print(f"{len(times)} fire times (dry run, nothing created):")
        for moment in times:
            print(f"  {moment.astimezone():%Y-%m-%d %H:%M:%S %Z}  ({moment:%Y-%m-%d %H:%M} UTC)")
        return 0
    return _show(response.backfill, args)


def _show(found: run_pb2.Backfill, args: argparse.Namespace) -> int:
    if args.output != "table":
        emit_message(found, args.output)
        return 0
    status = run_pb2.BackfillStatus.Name(found.status).removeprefix("BACKFILL_STATUS_").lower()
    print(f"{'backfill:':<10}{found.id}")
    print(f"{'pipeline:':<10}{found.pipeline}")
    span = f"{local_time(found.start_time)} to {local_time(found.end_time)}"
    print(f"{'range:':<10}{span}" + (" (only missing)" if found.only_missing else ""))
    print(f"{'status:':<10}{status}")
    print(
        f"{'runs:':<10}{found.runs_done} of {found.runs_total} done, {found.runs_failed} failed"
        f" (legato runs --backfill {found.id})"
    )
    return 0
