"""A YAML syntax error is reported at the line to fix: a quoted string left open points
where it opens, not past the end of the file (PyYAML's "found unexpected end of stream")
nor at the line where a later quote happened to close it."""

from __future__ import annotations

import pytest

from legato.spec import SpecFormatError, load_spec_text

STEPS = "steps:\n  - name: a\n    transform: {code: x}\n"


def _problem(text: str) -> str:
    with pytest.raises(SpecFormatError) as info:
        load_spec_text(text, "etl.yaml")
    return str(info.value)


def test_a_quote_never_closed_points_where_it_opens() -> None:
    text = 'name: etl\ndescription: "orders from\n' + STEPS
    assert _problem(text) == (
        "etl.yaml:2: invalid YAML: the double-quoted string that opens at column 14 is never "
        'closed; end it with "'
    )


def test_a_single_quote_never_closed_points_where_it_opens() -> None:
    text = "name: etl\nsteps:\n  - name: a\n    transform: {code: 'result = 1}\n"
    assert _problem(text) == (
        "etl.yaml:4: invalid YAML: the single-quoted string that opens at column 23 is never "
        "closed; end it with '"
    )


def test_a_quote_closed_by_a_later_one_points_where_it_opens() -> None:
    text = (
        'name: etl\ndescription: "orders\nsteps:\n  - name: a\n'
        '    transform: {code: "result = 1"}\n'
    )
    assert _problem(text) == (
        "etl.yaml:2: invalid YAML: the double-quoted string that opens at column 14 runs on "
        "to line 5, where the document stops making sense (while parsing a block mapping, "
        "expected <block end>, but found '<scalar>'); is its closing \" missing?"
    )


def test_other_syntax_errors_keep_their_line() -> None:
    text = "name: etl\nsteps:\n  - name: a\n   transform: {code: x}\n"
    assert _problem(text).startswith("etl.yaml:4: invalid YAML: ")


def test_a_string_that_spans_lines_on_purpose_is_fine() -> None:
    text = 'name: etl\ndescription: "orders from\n  the partner API"\n' + STEPS
    assert load_spec_text(text).spec.description == "orders from the partner API"
