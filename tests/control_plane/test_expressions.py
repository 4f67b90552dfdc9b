"""The safe expression language: what it computes, and everything it refuses."""

from __future__ import annotations

from typing import Any

import pytest

from control_plane.pipelines.expressions import (
    MAX_LENGTH,
    Expression,
    ExpressionError,
    parse_expression,
)

ROOTS = ("params", "steps", "run")
FUNCTIONS = "len, min, max, abs, round, int, float, str, bool, sum, any, all"


def context() -> dict[str, Any]:
    return {
        "params": {"days": 7, "region": "EU", "items": [3, 1, 2], "empty": "", "cut": None},
        "steps": {
            "extract": {"records": 127, "outputs": {"total": 98, "kind": "full"}},
            "load-users": {"records": 0, "outputs": {}},
        },
        "run": {"trigger": "schedule"},
    }


def parse(text: str) -> Expression:
    return parse_expression(text, allowed_roots=ROOTS)


def evaluate(text: str) -> Any:
    return parse(text).evaluate(context())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # literals
        ("42", 42),
        ("-1.5", -1.5),
        ("'a' + \"b\"", "ab"),
        ("[1, 2] + [3]", [1, 2, 3]),
        ("(1, 'x')", (1, "x")),
        ("{'a': 1, 'b': [2]}", {"a": 1, "b": [2]}),
        ("None", None),
        ("True and not False", True),
        # attribute access reads mapping keys, subscripts take any expression
        ("steps.extract.records", 127),
        ("steps.extract.outputs.total", 98),
        ("steps['load-users'].records", 0),
        ("steps['extract']['outputs']['kind']", "full"),
        ("steps.extract.outputs[run.trigger == 'schedule' and 'kind' or 'total']", "full"),
        ("params.items[0]", 3),
        ("params.items[-1]", 2),
        ("params.items[1:]", [1, 2]),
        ("params.region[:1]", "E"),
        # arithmetic
        ("steps.extract.records - steps.extract.outputs.total", 29),
        ("7 / 2", 3.5),
        ("7 // 2", 3),
        ("7 % 3", 1),
        ("-params.days", -7),
        ("'ab' * 3", "ababab"),
        ("[0] * 3", [0, 0, 0]),
        # comparisons, chained, membership, identity with None
        ("steps.extract.records > 100", True),
        ("0 < params.days <= 7", True),
        ("0 < params.days < 5", False),
        ("1 < 2 > 3", False),
        ("'extract' in steps", True),
        ("'missing' not in steps", True),
        ("2 in params.items", True),
        ("params.cut is None", True),
        ("params.days is not None", True),
        ("params.region != 'US'", True),
        # boolean operators return an operand, like Python
        ("params.empty or 'default'", "default"),
        ("params.days and 'yes'", "yes"),
        ("params.empty and params.never_read", ""),
        ("'a' if params.days > 3 else 'b'", "a"),
        ("'a' if params.days > 30 else 'b'", "b"),
        # functions and methods
        ("len(params.items)", 3),
        ("len(steps)", 2),
        ("min(params.items)", 1),
        ("max(4, 9, 2)", 9),
        ("abs(-3)", 3),
        ("round(2.567, 2)", 2.57),
        ("int('12') + int(3.9)", 15),
        ("float('1.5')", 1.5),
        ("str(params.days) + 'd'", "7d"),
        ("bool(params.empty)", False),
        ("sum(params.items)", 6),
        ("any([0, '', 3])", True),
        ("all([])", True),
        ("params.region.lower()", "eu"),
        ("'  x '.strip()", "x"),
        ("'xxaxx'.strip('x')", "a"),
        ("params.region.upper().startswith('E')", True),
        ("run.trigger.endswith('ule')", True),
        ("steps.extract.outputs.get('total', 0)", 98),
        ("steps['load-users'].outputs.get('total', 0)", 0),
        ("steps.extract.outputs.get('nothing')", None),
        # f-strings without format specs
        ("f'{params.region}-{params.days}d'", "EU-7d"),
        ("f'{params.region!r}'", "'EU'"),
        # whitespace around the expression, and several lines inside brackets
        ("  params.days  ", 7),
        ("(params.days >\n 3)", True),
    ],
)
def test_evaluates(text: str, expected: Any) -> None:
    assert evaluate(text) == expected


def test_step_references_and_root_names() -> None:
    expression = parse(
        "steps.extract.records > 0 and steps['load-users'].records == 0 "
        "and steps.get('score', {}) == {} and params.days > 1"
    )
    assert expression.step_references() == {"extract", "load-users", "score"}
    assert expression.root_names == {"steps", "params"}
    assert expression.text.startswith("steps.extract")


def test_dynamic_step_access_is_not_a_static_reference() -> None:
    assert parse("steps[params.region].records").step_references() == frozenset()


def test_an_expression_can_be_evaluated_many_times() -> None:
    expression = parse("params.days * 2")
    assert expression.evaluate({"params": {"days": 1}}) == 2
    assert expression.evaluate({"params": {"days": 5}}) == 10


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "__import__('os')",
            f"function calls other than {FUNCTIONS} are not allowed: '__import__' (at column 1)",
        ),
        (
            "open('/etc/passwd')",
            f"function calls other than {FUNCTIONS} are not allowed: 'open' (at column 1)",
        ),
        (
            "eval('1')",
            f"function calls other than {FUNCTIONS} are not allowed: 'eval' (at column 1)",
        ),
        (
            "().__class__",
            "attribute '__class__' is not allowed: names starting with '__' are reserved "
            "(at column 1)",
        ),
        (
            "params.__class__.__bases__",
            "attribute '__bases__' is not allowed: names starting with '__' are reserved "
            "(at column 1)",
        ),
        (
            "params.region.format(1)",
            "method calls other than .lower(), .upper(), .strip(), .startswith(), .endswith(), "
            ".get() are not allowed: 'format' (at column 1)",
        ),
        (
            "params.items[0](1)",
            f"function calls other than {FUNCTIONS} are not allowed: 'params.items[0]' "
            "(at column 1)",
        ),
        ("2**10000", "the ** operator is not allowed (at column 1)"),
        ("'a' * 10**9", "the ** operator is not allowed (at column 7)"),
        ("1 << 100", "the << operator is not allowed (at column 1)"),
        ("params.days | 1", "the | operator is not allowed (at column 1)"),
        ("~params.days", "the ~ operator is not allowed (at column 1)"),
        ("lambda: 1", "lambda expressions are not allowed (at column 1)"),
        ("[x for x in params.items]", "comprehensions are not allowed (at column 1)"),
        ("{k: 1 for k in steps}", "comprehensions are not allowed (at column 1)"),
        ("sum(x for x in params.items)", "generator expressions are not allowed (at column 4)"),
        ("(y := 1)", "assignment expressions (:=) are not allowed (at column 2)"),
        ("[*params.items]", "* unpacking is not allowed (at column 2)"),
        ("{**params}", "** unpacking in dicts is not allowed (at column 1)"),
        ("{1, 2}", "set literals are not allowed (at column 1)"),
        ("await params", "await is not allowed (at column 1)"),
        ("...", "ellipsis literals are not allowed (at column 1)"),
        ("b'x'", "bytes literals are not allowed (at column 1)"),
        ("1j", "complex literals are not allowed (at column 1)"),
        ("max(params.items, key=len)", "keyword arguments are not allowed (at column 1)"),
        ("len(1, 2)", "len() takes 1 argument, got 2 (at column 1)"),
        ("round()", "round() takes 1 to 2 arguments, got 0 (at column 1)"),
        ("min()", "min() takes at least 1 argument, got 0 (at column 1)"),
        ("'x'.startswith()", ".startswith() takes 1 argument, got 0 (at column 1)"),
        ("len", "'len' is a function; call it, as in len(x) (at column 1)"),
        (
            "params.days is 7",
            "'is' compares only with None (x is None); use == for values (at column 1)",
        ),
        (
            "parms.days > 1",
            "'parms' is not defined — did you mean 'params'?; names available: params, steps, "
            "run (at column 1)",
        ),
        (
            "params.days > limit",
            "'limit' is not defined; names available: params, steps, run (at column 15)",
        ),
        ("params.days >", "syntax error: the expression ends unexpectedly"),
        ("params.days > > 1", "syntax error: invalid syntax (at column 15)"),
        ("(params.days", "syntax error: '(' was never closed (at column 1)"),
        ("", "expression is empty"),
        ("   ", "expression is empty"),
        ("not " * 101 + "True", "expression is nested more than 100 levels deep (at column 401)"),
        ("1" + " + 1" * 100, "expression is nested more than 100 levels deep (at column 5)"),
        ("9" * 100, "integer is larger than 256 bits (at column 1)"),
    ],
)
def test_refused_when_parsed(text: str, message: str) -> None:
    with pytest.raises(ExpressionError) as caught:
        parse(text)
    assert str(caught.value) == message


def test_position_counts_from_the_text_as_written() -> None:
    with pytest.raises(ExpressionError) as caught:
        parse("   params.days > > 1")
    assert caught.value.column == 18
    assert caught.value.message == "syntax error: invalid syntax"
    with pytest.raises(ExpressionError) as caught:
        parse("(params.days >\n  nope)")
    assert str(caught.value).endswith("(at line 2, column 3)")


def test_format_specs_are_refused() -> None:
    # Python 3.11 and 3.12 place f-string parts at different columns; the message is the point.
    with pytest.raises(ExpressionError) as caught:
        parse("f'{params.days:>1000000000}'")
    assert caught.value.message == "format specs in f-strings are not allowed"


def test_too_long() -> None:
    with pytest.raises(ExpressionError) as caught:
        parse("1" + " " * MAX_LENGTH)
    assert str(caught.value) == "expression is 2001 characters long; the limit is 2000"


def test_allowed_roots_are_the_only_names() -> None:
    with pytest.raises(ExpressionError) as caught:
        parse_expression("params.x == 1", allowed_roots=("event",))
    assert str(caught.value) == "'params' is not defined; names available: event (at column 1)"
    assert parse_expression("event.type", allowed_roots={"event"}).root_names == {"event"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("steps.extract.outputs.total2", "steps.extract.outputs has no key 'total2' (at column 1)"),
        ("steps.transform.records", "steps has no key 'transform' (at column 1)"),
        ("steps['x-y']", "steps has no key 'x-y' (at column 1)"),
        (
            "steps.extract.records.value",
            "steps.extract.records is an integer, not a mapping; it has no attribute 'value' "
            "(at column 1)",
        ),
        (
            "params.region.lower",
            "params.region is a string, not a mapping; it has no attribute 'lower' (at column 1)",
        ),
        ("params.items[5]", "params.items has no index 5 (it has 3 items) (at column 1)"),
        ("params.items['a']", "params.items is a list; index it with an integer (at column 1)"),
        ("params.days[0]", "params.days is an integer; it cannot be indexed (at column 1)"),
        ("params.items[::0]", "slice step cannot be zero (at column 14)"),
        ("1 / 0", "division by zero (at column 1)"),
        ("params.days % 0", "division by zero (at column 1)"),
        ("'a' < 1", "cannot compare a string and an integer with '<' (at column 1)"),
        ("1 + 'a'", "cannot apply + to an integer and a string (at column 1)"),
        ("-params.region", "unary - needs a number, got a string (at column 1)"),
        (
            "'%s' % params.days",
            "'%' formatting of strings is not allowed; use + and str() (at column 1)",
        ),
        ("params.days.lower()", ".lower() needs a string; params.days is an integer (at column 1)"),
        ("params.items.get(0)", ".get() needs a mapping; params.items is a list (at column 1)"),
        ("len(params.days)", "len() needs a string, list or mapping, got an integer (at column 1)"),
        ("sum(['a'])", "sum() needs a list of numbers (at column 1)"),
        ("int('abc')", "int() failed: invalid literal for int() with base 10: 'abc' (at column 1)"),
        ("round(1.5, -1000)", "round() takes at most 100 digits (at column 1)"),
        ("{[1]: 2}", "a list cannot be a key (at column 2)"),
        (
            "'a' * 1000000000",
            "result would be larger than 100000 characters or items (at column 1)",
        ),
        ("[0] * 100001", "result would be larger than 100000 characters or items (at column 1)"),
        (
            "[[0] * 50000] * 3",
            "result would be larger than 100000 characters or items (at column 1)",
        ),
        (
            "('a' * 60000) + ('b' * 60000)",
            "result is larger than 100000 characters or items (at column 1)",
        ),
        ("str([1] * 60000)", "result is larger than 100000 characters or items (at column 1)"),
        (
            "999999999999999999999999999999999999 * 999999999999999999999999999999999999 "
            "* 999999999999999999999999999999999999",
            "integer result is larger than 256 bits (at column 1)",
        ),
        (
            " + ".join(["len('a' * 99999)"] * 11),
            "expression does more than 1000000 units of work (at column 176)",
        ),
    ],
)
def test_fails_when_evaluated(text: str, message: str) -> None:
    expression = parse(text)
    with pytest.raises(ExpressionError) as caught:
        expression.evaluate(context())
    assert str(caught.value) == message


def test_constant_time_calls_on_large_values_stay_within_the_work_budget() -> None:
    big = {"params": {"rows": list(range(200_000))}}
    text = " and ".join(["len(params.rows) > 0"] * 50)
    assert parse(text).evaluate(big) is True


def test_a_root_missing_from_the_context() -> None:
    with pytest.raises(ExpressionError) as caught:
        parse("run.trigger").evaluate({"params": {}})
    assert str(caught.value) == "'run' has no value here (at column 1)"


def test_python_objects_in_the_context_stay_opaque() -> None:
    class Secret:
        token = "s3cret"

    with pytest.raises(ExpressionError) as caught:
        parse("params.token").evaluate({"params": Secret()})
    assert str(caught.value) == (
        "params is a Secret, not a mapping; it has no attribute 'token' (at column 1)"
    )


def test_errors_are_value_errors() -> None:
    with pytest.raises(ValueError, match="division by zero"):
        parse("1 // 0").evaluate(context())
