"""``-p KEY=VALUE`` read by the parameter's declared type: a string stays as written, a
date must be one, and a value that does not fit names the parameter, what was written
and what to write."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf import struct_pb2

from legato.cli.params import ParamError, plain_scalars, typed_params
from legato.v1 import spec_pb2

T = spec_pb2.ParamType


def _spec() -> spec_pb2.PipelineSpec:
    spec = spec_pb2.PipelineSpec(name="etl")
    for name, kind in [
        ("country", T.PARAM_TYPE_STRING),
        ("rows", T.PARAM_TYPE_INTEGER),
        ("ratio", T.PARAM_TYPE_NUMBER),
        ("dry_run", T.PARAM_TYPE_BOOLEAN),
        ("day", T.PARAM_TYPE_DATE),
        ("at", T.PARAM_TYPE_DATETIME),
        ("filter", T.PARAM_TYPE_JSON),
        ("anything", T.PARAM_TYPE_UNSPECIFIED),
    ]:
        spec.params[name].type = kind
    spec.params["anything"].default.CopyFrom(struct_pb2.Value(string_value="x"))
    return spec


@pytest.mark.parametrize(
    ("name", "raw", "value"),
    [
        ("country", "0123", "0123"),
        ("country", "no", "no"),
        ("country", "null", "null"),
        ("country", "'quoted'", "'quoted'"),
        ("country", " de ", " de "),
        ("rows", "500", 500),
        ("rows", "0123", 123),
        ("rows", "-7", -7),
        ("ratio", "2.5", 2.5),
        ("ratio", "3", 3),
        ("ratio", "1e3", 1000),
        ("dry_run", "true", True),
        ("dry_run", "no", False),
        ("dry_run", "ON", True),
        ("day", "2026-06-12", "2026-06-12"),
        ("at", "2026-06-12T09:00:00+02:00", "2026-06-12T09:00:00+02:00"),
        ("at", "2026-06-12T07:00:00Z", "2026-06-12T07:00:00Z"),
        ("filter", '{"region": "eu"}', {"region": "eu"}),
        ("filter", "[1, 2]", [1, 2]),
        # Untyped: JSON scalars, else the text (not YAML's octal 83 or false).
        ("anything", "7", 7),
        ("anything", "true", True),
        ("anything", "0123", "0123"),
        ("anything", "no", "no"),
        ("anything", "'7'", "7"),
    ],
)
def test_values_read_by_their_declared_type(name: str, raw: str, value: Any) -> None:
    found = typed_params([(name, raw)], _spec())[name]
    assert found == value
    assert type(found) is type(value)


@pytest.mark.parametrize(
    ("name", "raw", "message"),
    [
        (
            "day",
            "2026-13-01",
            "-p day=2026-13-01: parameter 'day' has type date; '2026-13-01' is not a date "
            "(month must be in 1..12); write YYYY-MM-DD, e.g. 2026-06-12",
        ),
        (
            "rows",
            "five",
            "-p rows=five: parameter 'rows' has type integer; 'five' is not an integer; "
            "write digits, e.g. 500",
        ),
        (
            "rows",
            "2.5",
            "-p rows=2.5: parameter 'rows' has type integer; '2.5' is not an integer; "
            "write digits, e.g. 500",
        ),
        (
            "dry_run",
            "maybe",
            "-p dry_run=maybe: parameter 'dry_run' has type boolean; 'maybe' is not true or false; "
            "write true or false",
        ),
        (
            "at",
            "2026-06-12T09:00",
            "-p at=2026-06-12T09:00: parameter 'at' has type datetime; '2026-06-12T09:00' has no "
            "UTC offset; write an ISO 8601 time with an offset, e.g. "
            "2026-06-12T09:00:00+02:00 or …Z",
        ),
        (
            "filter",
            "eu",
            "-p filter=eu: parameter 'filter' has type json; 'eu' is not a JSON object or list; "
            'write JSON, e.g. {"region": "eu"} or [1, 2]',
        ),
        (
            "ratio",
            "nan",
            "-p ratio=nan: parameter 'ratio' has type number; 'nan' is not a finite number; "
            "write a decimal number, e.g. 2.5 or 1e3",
        ),
    ],
)
def test_a_value_that_does_not_fit_says_why(name: str, raw: str, message: str) -> None:
    with pytest.raises(ParamError) as info:
        typed_params([(name, raw)], _spec())
    assert str(info.value) == message


def test_an_undeclared_parameter_names_the_declared_ones() -> None:
    with pytest.raises(ParamError) as info:
        typed_params([("contry", "de")], _spec())
    assert str(info.value) == (
        "-p contry=de: pipeline 'etl' has no parameter 'contry' (its parameters: anything, at, "
        "country, day, dry_run, filter, ratio, rows); did you mean 'country'?"
    )


def test_a_pipeline_without_parameters_says_so() -> None:
    with pytest.raises(ParamError, match="pipeline 'bare' declares no parameters"):
        typed_params([("x", "1")], spec_pb2.PipelineSpec(name="bare"))


def test_the_params_file_is_read_by_type_too_and_p_wins() -> None:
    text = "country: 0123\nrows: 0123\ndry_run: no\nday: 2026-06-12\nratio: 2.5\n"
    values = typed_params(
        [("ratio", "4")],
        _spec(),
        file_values={"country": 83, "rows": 83, "dry_run": False, "day": "x", "ratio": 2.5},
        file_texts=plain_scalars(text),
        file_name="params.yaml",
    )
    assert values == {
        "country": "0123",
        "rows": 123,
        "dry_run": False,
        "day": "2026-06-12",
        "ratio": 4,
    }


def test_a_bad_value_of_the_params_file_names_the_file() -> None:
    with pytest.raises(ParamError) as info:
        typed_params(
            [],
            _spec(),
            file_values={"day": "tomorrow"},
            file_texts=plain_scalars("day: tomorrow\n"),
            file_name="params.yaml",
        )
    assert str(info.value).startswith(
        "params.yaml: day: tomorrow: parameter 'day' has type date; 'tomorrow' is not a date"
    )


def test_without_the_spec_values_read_untyped() -> None:
    assert typed_params([("country", "0123"), ("n", "7")], None) == {"country": "0123", "n": 7}
