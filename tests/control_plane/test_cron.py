"""Cron parsing: the accepted grammar, its normal form, and errors that name field and value."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from croniter import croniter

from control_plane.scheduling.cron import MACROS, CronError, parse_cron

ALL_MINUTES = frozenset(range(60))
ALL_HOURS = frozenset(range(24))
ALL_DAYS = frozenset(range(1, 32))
ALL_MONTHS = frozenset(range(1, 13))
ALL_WEEKDAYS = frozenset(range(7))


@pytest.mark.parametrize(
    ("text", "expression"),
    [
        ("0 9 * * *", "0 9 * * *"),
        ("  0   9 *  * *  ", "0 9 * * *"),
        ("*/15 * * * *", "*/15 * * * *"),
        ("0 */6 * * *", "0 */6 * * *"),
        ("0 0 * * MON", "0 0 * * 1"),
        ("0 0 * * mon-fri", "0 0 * * 1-5"),
        ("0 0 1 jan,Jul *", "0 0 1 1,7 *"),
        ("5/20 * * * *", "5-59/20 * * * *"),
        ("1-10/3 * * * *", "1-10/3 * * * *"),
        ("0 0 * * 7", "0 0 * * 7"),
        ("0 0 * * FRI-SUN", "0 0 * * 5-7"),
        ("0 0 * JAN-MAR/2 *", "0 0 * 1-3/2 *"),
        ("@daily", "0 0 * * *"),
        ("@HOURLY", "0 * * * *"),
    ],
)
def test_normalized_expression(text: str, expression: str) -> None:
    spec = parse_cron(text)
    assert spec.expression == expression
    assert spec.source == text
    assert croniter.is_valid(spec.expression)


@pytest.mark.parametrize(
    ("text", "field", "values"),
    [
        ("*/15 * * * *", "minutes", {0, 15, 30, 45}),
        ("5/20 * * * *", "minutes", {5, 25, 45}),
        ("1-10/3 * * * *", "minutes", {1, 4, 7, 10}),
        ("0,30 * * * *", "minutes", {0, 30}),
        ("0 9-17 * * *", "hours", set(range(9, 18))),
        ("0 0 1,15 * *", "days", {1, 15}),
        ("0 0 * JAN-MAR/2 *", "months", {1, 3}),
        ("0 0 * * MON-FRI", "weekdays", {1, 2, 3, 4, 5}),
        ("0 0 * * 7", "weekdays", {0}),
        ("0 0 * * 0,7", "weekdays", {0}),
        ("0 0 * * FRI-SUN", "weekdays", {5, 6, 0}),
        ("0 0 * * 0-7/2", "weekdays", {0, 2, 4, 6}),
    ],
)
def test_field_values(text: str, field: str, values: set[int]) -> None:
    assert getattr(parse_cron(text), field) == frozenset(values)


def test_unrestricted_fields_hold_every_value() -> None:
    spec = parse_cron("* * * * *")
    assert spec.minutes == ALL_MINUTES
    assert spec.hours == ALL_HOURS
    assert spec.days == ALL_DAYS
    assert spec.months == ALL_MONTHS
    assert spec.weekdays == ALL_WEEKDAYS
    assert spec.macro is None


@pytest.mark.parametrize(("macro", "expression"), sorted(MACROS.items()))
def test_macros(macro: str, expression: str) -> None:
    spec = parse_cron(macro)
    assert spec.expression == expression
    assert spec.macro == macro
    assert croniter.is_valid(spec.expression)


def test_macro_sets() -> None:
    weekly = parse_cron("@weekly")
    assert weekly.minutes == weekly.hours == weekly.weekdays == frozenset({0})
    yearly = parse_cron("@annually")
    assert yearly.days == yearly.months == frozenset({1})


@pytest.mark.parametrize(
    ("text", "field", "value", "message"),
    [
        (
            "0 0 * * * *",
            "expression",
            "0 0 * * * *",
            "cron needs 5 fields (minute hour day-of-month month day-of-week), "
            "got 6: '0 0 * * * *'",
        ),
        (
            "0 9 *",
            "expression",
            "0 9 *",
            "cron needs 5 fields (minute hour day-of-month month day-of-week), got 3: '0 9 *'",
        ),
        (
            "",
            "expression",
            "",
            "cron needs 5 fields (minute hour day-of-month month day-of-week), got 0: ''",
        ),
        ("61 * * * *", "minute", "61", "minute field '61' is out of range 0-59"),
        ("0 24 * * *", "hour", "24", "hour field '24' is out of range 0-23"),
        ("0 0 0 * *", "day-of-month", "0", "day-of-month field '0' is out of range 1-31"),
        ("0 0 * 13 *", "month", "13", "month field '13' is out of range 1-12"),
        ("0 0 * * 8", "day-of-week", "8", "day-of-week field '8' is out of range 0-7"),
        ("10-61 * * * *", "minute", "61", "minute field '61' is out of range 0-59"),
        (
            "0 0 * * MOM",
            "day-of-week",
            "MOM",
            "day-of-week field 'MOM' is not a day name (use 0-7 or SUN-SAT) — did you mean 'MON'?",
        ),
        (
            "0 0 * JAM *",
            "month",
            "JAM",
            "month field 'JAM' is not a month name (use 1-12 or JAN-DEC) — did you mean 'JAN'?",
        ),
        (
            "0 0 * * XYZ",
            "day-of-week",
            "XYZ",
            "day-of-week field 'XYZ' is not a day name (use 0-7 or SUN-SAT)",
        ),
        ("abc * * * *", "minute", "abc", "minute field 'abc' is not a number; use 0-59"),
        ("0 MON * * *", "hour", "MON", "hour field 'MON' is not a number; use 0-23"),
        (
            "*/0 * * * *",
            "minute",
            "*/0",
            "minute field '*/0' has a step of 0; use a step of 1 or more",
        ),
        (
            "0 1-5/0 * * *",
            "hour",
            "1-5/0",
            "hour field '1-5/0' has a step of 0; use a step of 1 or more",
        ),
        (
            "*/x * * * *",
            "minute",
            "*/x",
            "minute field '*/x' has step 'x', which is not a number",
        ),
        (
            "0 17-9 * * *",
            "hour",
            "17-9",
            "hour field '17-9' is a reversed range; write the smaller value first (9-17) "
            "or use a list",
        ),
        (
            "0 0 * * FRI-MON",
            "day-of-week",
            "FRI-MON",
            "day-of-week field 'FRI-MON' is a reversed range; write the smaller value first "
            "(1-5) or use a list",
        ),
        (
            "1,,2 * * * *",
            "minute",
            "1,,2",
            "minute field '1,,2' has an empty item in its list",
        ),
        (
            "@dayly",
            "expression",
            "@dayly",
            "unknown cron macro '@dayly' (use one of @yearly, @annually, @monthly, @weekly, "
            "@daily, @midnight, @hourly, or five fields) — did you mean '@daily'?",
        ),
        (
            "@reboot",
            "expression",
            "@reboot",
            "unknown cron macro '@reboot' (use one of @yearly, @annually, @monthly, @weekly, "
            "@daily, @midnight, @hourly, or five fields)",
        ),
        (
            "0 0 30 2 *",
            "day-of-month",
            "30",
            "day-of-month field '30' never occurs in the selected months (FEB); "
            "pick a day that exists",
        ),
        ("0 0 L * *", "day-of-month", "L", "day-of-month field 'L' is not a number; use 1-31"),
    ],
)
def test_errors_name_field_and_value(text: str, field: str, value: str, message: str) -> None:
    with pytest.raises(CronError) as caught:
        parse_cron(text)
    assert (caught.value.field, caught.value.value, str(caught.value)) == (field, value, message)


def test_cron_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="out of range"):
        parse_cron("0 0 32 * *")


def test_impossible_day_is_fine_when_weekdays_add_days() -> None:
    # Both restricted: a day matches when either field does, so Mondays in February fire.
    spec = parse_cron("0 0 30 2 MON")
    assert spec.days == {30}
    assert spec.weekdays == {1}


def test_matches_uses_or_when_both_day_fields_are_restricted() -> None:
    spec = parse_cron("0 0 1 * MON")
    assert spec.matches(datetime(2026, 7, 1, tzinfo=UTC))  # a Wednesday, the 1st
    assert spec.matches(datetime(2026, 7, 6, tzinfo=UTC))  # a Monday
    assert not spec.matches(datetime(2026, 7, 7, tzinfo=UTC))  # neither
    assert not spec.matches(datetime(2026, 7, 6, 0, 1, tzinfo=UTC))  # wrong minute


def test_matches_uses_and_when_one_day_field_is_a_star() -> None:
    spec = parse_cron("0 9 * * MON-FRI")
    assert spec.matches(datetime(2026, 7, 3, 9, tzinfo=UTC))  # Friday
    assert not spec.matches(datetime(2026, 7, 4, 9, tzinfo=UTC))  # Saturday


@pytest.mark.parametrize(
    "text",
    ["*/7 * * * *", "0 9-17 * * MON-FRI", "30 */4 1,15 * *", "0 0 1 * MON", "15 3 * * SUN"],
)
def test_matches_agrees_with_croniter(text: str) -> None:
    spec = parse_cron(text)
    start = datetime(2026, 6, 1, tzinfo=UTC)
    fired = croniter(spec.expression, start - timedelta(minutes=1))
    expected = [fired.get_next(datetime) for _ in range(30)]
    found: list[datetime] = []
    moment = start
    while len(found) < 30:
        if spec.matches(moment):
            found.append(moment)
        moment += timedelta(minutes=1)
    assert found == expected
