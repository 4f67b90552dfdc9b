"""``legato logs RUN --step S`` of a step the run does not have fails (exit 1) and names
the run's steps, instead of printing nothing and exiting 0. A real server."""

from __future__ import annotations

import textwrap
from pathlib import Path

from test_cli import Server, legato

SPEC = textwrap.dedent(
    """\
    name: etl
    steps:
      - name: extract
        transform: {code: "result = None"}
      - name: load
        needs: [extract]
        transform: {code: "result = None"}
    """
)


def _run(server: Server, tmp_path: Path) -> str:
    spec = tmp_path / "etl.yaml"
    spec.write_text(SPEC)
    assert legato(server, "apply", "-f", str(spec)).returncode == 0
    started = legato(server, "run", "etl")
    assert started.returncode == 0, started.stderr
    return started.stdout.split()[1]


def test_logs_of_a_step_the_run_does_not_have_fails(server: Server, tmp_path: Path) -> None:
    run_id = _run(server, tmp_path)

    typo = legato(server, "logs", run_id, "--step", "laod")
    unknown = legato(server, "logs", run_id, "--step", "nope", "-o", "json")

    assert (typo.returncode, typo.stdout) == (1, "")
    assert typo.stderr == (
        f"legato logs: run {run_id} has no step 'laod' (its steps: extract, load); "
        "did you mean 'load'?\n"
    )
    assert unknown.returncode == 1
    assert unknown.stderr == (
        f"legato logs: run {run_id} has no step 'nope' (its steps: extract, load)\n"
    )


def test_logs_of_a_step_without_lines_yet_says_so(server: Server, tmp_path: Path) -> None:
    run_id = _run(server, tmp_path)

    out = legato(server, "logs", run_id, "--step", "load")

    assert (out.returncode, out.stdout) == (0, f"run {run_id} has no log lines of step load\n")
