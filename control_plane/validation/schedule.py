"""The schedule: cron expression, time zone, policies and the parameters of scheduled runs."""

from __future__ import annotations

import difflib
import zoneinfo
from collections.abc import Iterator
from functools import cache

from control_plane.scheduling.cron import CronError, parse_cron
from legato.v1 import spec_pb2

from .fields import DAY, check_duration, check_enum
from .params import check_param_values, has_value
from .violations import Violation

__all__ = ["MAX_PAUSE_AFTER_FAILURES", "check_schedule", "check_timezone"]

MAX_PAUSE_AFTER_FAILURES = 1000
MAX_LATE_AFTER = 7 * DAY


def check_schedule(spec: spec_pb2.PipelineSpec) -> Iterator[Violation]:
    schedule = spec.schedule
    yield from _check_cron(schedule.cron)
    if schedule.timezone:
        yield from check_timezone("schedule.timezone", schedule.timezone)
    yield from check_enum(
        "schedule.dst.skipped", spec_pb2.DstSkippedPolicy.DESCRIPTOR, schedule.dst.skipped
    )
    yield from check_enum(
        "schedule.dst.repeated", spec_pb2.DstRepeatedPolicy.DESCRIPTOR, schedule.dst.repeated
    )
    yield from check_enum("schedule.catchup", spec_pb2.CatchupPolicy.DESCRIPTOR, schedule.catchup)
    yield from check_enum("schedule.overlap", spec_pb2.OverlapPolicy.DESCRIPTOR, schedule.overlap)
    if schedule.pause_after_failures > MAX_PAUSE_AFTER_FAILURES:
        yield Violation(
            "schedule.pause_after_failures",
            f"{schedule.pause_after_failures} is more than the maximum of "
            f"{MAX_PAUSE_AFTER_FAILURES}; use 0 to never pause",
        )
    if schedule.HasField("late_after"):
        yield from check_duration(
            "schedule.late_after", schedule.late_after, maximum=MAX_LATE_AFTER
        )
    yield from check_param_values("schedule.params", schedule.params, spec)
    yield from _check_required_params(spec)


def _check_cron(cron: str) -> Iterator[Violation]:
    if not cron.strip():
        yield Violation(
            "schedule.cron",
            "a schedule needs a cron expression, like '0 9 * * *' or '@daily'",
        )
        return
    try:
        parse_cron(cron)
    except CronError as exc:
        yield Violation("schedule.cron", str(exc))


@cache
def _zones() -> dict[str, str]:
    """Every IANA zone name, by its lower-case spelling."""
    return {name.lower(): name for name in zoneinfo.available_timezones()}


def check_timezone(path: str, name: str) -> Iterator[Violation]:
    """``name`` must be an IANA time zone known to this installation (tzdata)."""
    zones = _zones()
    if name in zones.values():
        return
    match = zones.get(name.lower())
    if match is None:
        close = difflib.get_close_matches(name.lower(), list(zones), n=1, cutoff=0.8)
        match = zones[close[0]] if close else None
    hint = f" — did you mean '{match}'?" if match else "; use a name like Europe/Berlin or UTC"
    yield Violation(path, f"'{name}' is not an IANA time zone{hint}")


def _check_required_params(spec: spec_pb2.PipelineSpec) -> Iterator[Violation]:
    """Scheduled runs get no parameters but these, so required ones must be set here."""
    given = spec.schedule.params.fields
    path = "schedule.params" if spec.schedule.HasField("params") else "schedule"
    for name in sorted(spec.params):
        param = spec.params[name]
        missing = name not in given or not has_value(given[name])
        has_default = param.HasField("default") and has_value(param.default)
        if param.required and missing and not has_default:
            yield Violation(
                path,
                f"scheduled runs need a value for the required parameter '{name}'; "
                "set it in schedule.params or give the parameter a default",
            )
