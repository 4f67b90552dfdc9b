"""Cron expressions: parsing with errors that say which field, which value and what is allowed.

Grammar (the classic five fields, separated by spaces)::

    minute  hour  day-of-month  month  day-of-week
    0-59    0-23  1-31          1-12   0-7 (0 and 7 are Sunday)

Each field is a comma-separated list of terms; a term is ``*``, a number ``5``, a range
``1-5``, or one of those with a step: ``*/15``, ``1-30/5``, ``5/15`` (from 5 to the field's
maximum, every 15). Month names ``JAN``-``DEC`` and weekday names ``SUN``-``SAT`` are accepted
in any case, alone or in ranges (``MON-FRI``, ``JAN-MAR``). In day-of-week, ``SUN`` at the end
of a range means 7, so ``FRI-SUN`` is Friday to Sunday. A range must go upwards: ``17-9`` is
refused rather than wrapped. Macros stand for a whole expression:

    @yearly, @annually  0 0 1 1 *       @daily, @midnight   0 0 * * *
    @monthly            0 0 1 * *       @hourly             0 * * * *
    @weekly             0 0 * * 0

When both day-of-month and day-of-week are restricted (neither covers its whole range), a
day matches when *either* does, as in Vixie cron and croniter: ``0 0 1 * MON`` fires on the
1st and on every Monday. Otherwise both must match.

:class:`CronSpec.expression` is the normalized form handed to croniter for fire times:
macros expanded, names replaced by their numbers (``MON-FRI`` becomes ``1-5``), ``a/n``
written as ``a-max/n``, terms otherwise as written and fields joined by single spaces.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from datetime import datetime

__all__ = ["MACROS", "CronError", "CronSpec", "parse_cron"]

MACROS: dict[str, str] = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

_MONTH_NAMES = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DAY_NAMES = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
# The most days each month can have (February in a leap year).
_MONTH_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_TERM = re.compile(r"(?P<base>[^/]*)(?:/(?P<step>.*))?")


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: dict[str, int] = field(default_factory=dict)
    kind: str = ""  # "month" or "day" when names are accepted

    @property
    def allowed(self) -> str:
        if self.kind == "month":
            return f"{self.low}-{self.high} or JAN-DEC"
        if self.kind == "day":
            return f"{self.low}-{self.high} or SUN-SAT"
        return f"{self.low}-{self.high}"


_FIELDS = (
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day-of-month", 1, 31),
    _Field("month", 1, 12, {n: i + 1 for i, n in enumerate(_MONTH_NAMES)}, "month"),
    _Field("day-of-week", 0, 7, {n: i for i, n in enumerate(_DAY_NAMES)}, "day"),
)


class CronError(ValueError):
    """A cron expression that does not parse.

    ``field`` is ``minute``, ``hour``, ``day-of-month``, ``month``, ``day-of-week`` or
    ``expression`` (for the expression as a whole), ``value`` the offending text.
    """

    def __init__(self, field: str, value: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.value = value


@dataclass(frozen=True)
class CronSpec:
    """A parsed cron expression.

    ``source`` is the text as written, ``expression`` the normalized five-field form (see the
    module docstring), ``macro`` the macro it came from, if any. The sets hold the values each
    field allows; ``weekdays`` uses 0-6 with 0 for Sunday (7 is folded into 0).
    """

    source: str
    expression: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    macro: str | None = None

    @property
    def day_of_month_restricted(self) -> bool:
        return len(self.days) < 31

    @property
    def day_of_week_restricted(self) -> bool:
        return len(self.weekdays) < 7

    def matches(self, moment: datetime) -> bool:
        """Whether the wall-clock minute of ``moment`` is a fire time (seconds ignored)."""
        if (
            moment.minute not in self.minutes
            or moment.hour not in self.hours
            or moment.month not in self.months
        ):
            return False
        day_ok = moment.day in self.days
        weekday_ok = moment.isoweekday() % 7 in self.weekdays
        if self.day_of_month_restricted and self.day_of_week_restricted:
            return day_ok or weekday_ok
        return day_ok and weekday_ok


def parse_cron(text: str) -> CronSpec:
    """Parse ``text`` (five fields or a macro); raise :class:`CronError` when it is invalid."""
    stripped = text.strip()
    macro: str | None = None
    if stripped.startswith("@"):
        macro = stripped.lower()
        if macro not in MACROS:
            raise CronError("expression", stripped, _unknown_macro(stripped))
        stripped = MACROS[macro]
    parts = stripped.split()
    if len(parts) != len(_FIELDS):
        raise CronError("expression", text, _field_count(text, len(parts)))
    values: list[frozenset[int]] = []
    normalized: list[str] = []
    for spec_field, part in zip(_FIELDS, parts, strict=True):
        allowed, norm = _parse_field(spec_field, part)
        values.append(allowed)
        normalized.append(norm)
    minutes, hours, days, months, weekdays = values
    weekdays = frozenset(d % 7 for d in weekdays)
    _check_days_exist(parts[2], days, months, weekdays)
    return CronSpec(
        source=text,
        expression=" ".join(normalized),
        minutes=minutes,
        hours=hours,
        days=days,
        months=months,
        weekdays=weekdays,
        macro=macro,
    )


def _unknown_macro(value: str) -> str:
    known = ", ".join(MACROS)
    close = difflib.get_close_matches(value.lower(), list(MACROS), n=1)
    hint = f" — did you mean '{close[0]}'?" if close else ""
    return f"unknown cron macro '{value}' (use one of {known}, or five fields){hint}"


def _field_count(text: str, count: int) -> str:
    return (
        "cron needs 5 fields (minute hour day-of-month month day-of-week), "
        f"got {count}: '{text.strip()}'"
    )


def _parse_field(spec: _Field, text: str) -> tuple[frozenset[int], str]:
    allowed: set[int] = set()
    terms: list[str] = []
    for term in text.split(","):
        if not term:
            raise CronError(
                spec.name, text, f"{spec.name} field '{text}' has an empty item in its list"
            )
        values, norm = _parse_term(spec, term)
        allowed.update(values)
        terms.append(norm)
    return frozenset(allowed), ",".join(terms)


def _parse_term(spec: _Field, term: str) -> tuple[list[int], str]:
    match = _TERM.fullmatch(term)
    assert match is not None  # the pattern matches any string
    base, step_text = match.group("base"), match.group("step")
    step = 1 if step_text is None else _parse_step(spec, term, step_text)
    if base == "*":
        low, high, norm = spec.low, spec.high, "*"
    elif "-" in base:
        low, high = _parse_range(spec, base)
        norm = f"{low}-{high}"
    else:
        low = _parse_value(spec, base)
        high = low if step_text is None else spec.high
        norm = str(low) if step_text is None else f"{low}-{high}"
    if step_text is not None:
        norm = f"{norm}/{step}"
    return list(range(low, high + 1, step)), norm


def _parse_step(spec: _Field, term: str, text: str) -> int:
    if not text.isdigit():
        raise CronError(
            spec.name, term, f"{spec.name} field '{term}' has step '{text}', which is not a number"
        )
    step = int(text)
    if step == 0:
        raise CronError(
            spec.name, term, f"{spec.name} field '{term}' has a step of 0; use a step of 1 or more"
        )
    return step


def _parse_range(spec: _Field, text: str) -> tuple[int, int]:
    first, _, last = text.partition("-")
    low = _parse_value(spec, first)
    high = _parse_value(spec, last)
    if spec.kind == "day" and high == 0 and low > 0 and last.upper() == "SUN":
        high = 7
    if low > high:
        raise CronError(
            spec.name,
            text,
            f"{spec.name} field '{text}' is a reversed range; "
            f"write the smaller value first ({high}-{low}) or use a list",
        )
    return low, high


def _parse_value(spec: _Field, text: str) -> int:
    if text.isdigit():
        number = int(text)
        if not spec.low <= number <= spec.high:
            raise CronError(
                spec.name,
                text,
                f"{spec.name} field '{text}' is out of range {spec.low}-{spec.high}",
            )
        return number
    upper = text.upper()
    if upper in spec.names:
        return spec.names[upper]
    raise CronError(spec.name, text, _bad_value(spec, text))


def _bad_value(spec: _Field, text: str) -> str:
    if not text:
        return f"{spec.name} field has an empty value; use {spec.allowed}"
    if not spec.names:
        return f"{spec.name} field '{text}' is not a number; use {spec.allowed}"
    noun = "month" if spec.kind == "month" else "day"
    close = difflib.get_close_matches(text.upper(), list(spec.names), n=1, cutoff=0.6)
    hint = f" — did you mean '{close[0]}'?" if close else ""
    return f"{spec.name} field '{text}' is not a {noun} name (use {spec.allowed}){hint}"


def _check_days_exist(
    text: str, days: frozenset[int], months: frozenset[int], weekdays: frozenset[int]
) -> None:
    """Refuse a day-of-month that no selected month has (``30 2``), unless weekdays add days."""
    if len(weekdays) < 7 and len(days) < 31:
        return
    if any(day <= _MONTH_DAYS[month - 1] for month in months for day in days):
        return
    names = ", ".join(_MONTH_NAMES[m - 1] for m in sorted(months))
    raise CronError(
        "day-of-month",
        text,
        f"day-of-month field '{text}' never occurs in the selected months ({names}); "
        "pick a day that exists",
    )
