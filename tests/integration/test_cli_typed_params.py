"""``legato run -p`` reads each value by the type the pipeline declares for it, fetched
from the real server: the run gets what the user wrote, and a value that does not fit is
refused before the run is made, naming the parameter and the form expected."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from test_cli import Server, legato

SPEC = textwrap.dedent(
    """\
    name: sales
    params:
      country: {type: string, default: de}
      day: {type: date, default: "2026-06-12"}
      rows: {type: integer, default: 5}
      anything: {}
    steps:
      - name: work
        transform: {code: "result = dict(params)"}
    """
)


def _apply(server: Server, tmp_path: Path) -> None:
    spec = tmp_path / "sales.yaml"
    spec.write_text(SPEC)
    applied = legato(server, "apply", "-f", str(spec))
    assert applied.returncode == 0, applied.stderr


def _params_of_latest_run(server: Server) -> dict[str, object]:
    shown = legato(server, "status", "latest", "-o", "json")
    assert shown.returncode == 0, shown.stderr
    params: dict[str, object] = json.loads(shown.stdout)["params"]
    return params


def test_string_params_keep_what_was_written(server: Server, tmp_path: Path) -> None:
    _apply(server, tmp_path)

    for written in ("0123", "no", "null", "2026-06-12"):
        started = legato(server, "run", "sales", "-p", f"country={written}")
        assert started.returncode == 0, started.stderr
        assert _params_of_latest_run(server)["country"] == written


def test_integers_and_untyped_values(server: Server, tmp_path: Path) -> None:
    _apply(server, tmp_path)

    started = legato(server, "run", "sales", "-p", "rows=500", "-p", "anything=0123")
    assert started.returncode == 0, started.stderr
    params = _params_of_latest_run(server)
    assert params["rows"] == 500 and type(params["rows"]) is int
    assert params["anything"] == "0123"


def test_a_value_that_does_not_fit_is_refused_with_the_reason(
    server: Server, tmp_path: Path
) -> None:
    _apply(server, tmp_path)

    bad_day = legato(server, "run", "sales", "-p", "day=2026-13-01")
    bad_rows = legato(server, "run", "sales", "-p", "rows=lots")
    typo = legato(server, "run", "sales", "-p", "contry=fr")

    assert (bad_day.returncode, bad_day.stdout) == (1, "")
    assert bad_day.stderr == (
        "legato run: -p day=2026-13-01: parameter 'day' has type date; '2026-13-01' is not a "
        "date (month must be in 1..12); write YYYY-MM-DD, e.g. 2026-06-12\n"
    )
    assert "parameter 'rows' has type integer; 'lots' is not an integer" in bad_rows.stderr
    assert typo.stderr == (
        "legato run: -p contry=fr: pipeline 'sales' has no parameter 'contry' (its parameters: "
        "anything, country, day, rows); did you mean 'country'?\n"
    )
    assert "usage:" not in bad_day.stderr + bad_rows.stderr + typo.stderr
    # None of them made a run.
    assert legato(server, "runs").stdout == "no runs\n"


def test_the_params_file_is_read_by_type(server: Server, tmp_path: Path) -> None:
    _apply(server, tmp_path)
    params_file = tmp_path / "params.yaml"
    params_file.write_text("country: 0123\nrows: 7\n")

    started = legato(server, "run", "sales", "--params-file", str(params_file), "-p", "rows=8")

    assert started.returncode == 0, started.stderr
    params = _params_of_latest_run(server)
    assert (params["country"], params["rows"]) == ("0123", 8)


def test_a_missing_pipeline_is_named(server: Server) -> None:
    out = legato(server, "run", "nope", "-p", "x=1")
    assert out.returncode == 1
    assert out.stderr.startswith("legato run: pipeline 'nope' does not exist")
