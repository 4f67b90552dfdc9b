"""Output into a pipe whose reader has gone (``legato show etl | head -1``) ends the
command quietly: no traceback, no "Exception ignored", exit code 141 (128 + SIGPIPE, what
a shell reports for any producer cut off this way). Real server, real `legato` processes."""

from __future__ import annotations

import os
import subprocess
import textwrap
from pathlib import Path

from test_cli import LEGATO, Server, legato

EXIT_BROKEN_PIPE = 141

# Code long enough that `show` writes more than a pipe holds (64 KiB): the writes after
# `head` exits meet a closed pipe whatever the timing.
SPEC = textwrap.dedent(
    f"""\
    name: etl
    steps:
      - name: work
        transform: {{code: "result = None  # {"x" * 200_000}"}}
    """
)


def _env(server: Server) -> dict[str, str]:
    return {**os.environ, "LEGATO_SERVER": server.address, "LEGATO_TOKEN": server.token}


def _into_closed_pipe(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``legato ARGS`` with stdout a pipe that nobody reads: closed before it starts."""
    read, write = os.pipe()
    os.close(read)
    try:
        return subprocess.run(
            [LEGATO, *args],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(server),
            timeout=60,
        )
    finally:
        os.close(write)


def test_show_into_head_ends_quietly(server: Server, tmp_path: Path) -> None:
    spec = tmp_path / "etl.yaml"
    spec.write_text(SPEC)
    assert legato(server, "apply", "-f", str(spec)).returncode == 0

    piped = subprocess.run(
        ["bash", "-c", f'{LEGATO} show etl | head -1; echo "legato=${{PIPESTATUS[0]}}" >&2'],
        capture_output=True,
        text=True,
        env=_env(server),
        timeout=60,
    )

    assert piped.stdout.startswith("# etl version 1 · sha256:")
    assert piped.stdout.count("\n") == 1
    assert piped.stderr == f"legato={EXIT_BROKEN_PIPE}\n"


def test_versions_into_a_closed_pipe_ends_quietly(server: Server, tmp_path: Path) -> None:
    spec = tmp_path / "etl.yaml"
    for number in range(3):
        spec.write_text(SPEC.replace("result = None", f"result = {{'n': {number}}}"))
        assert legato(server, "apply", "-f", str(spec)).returncode == 0

    # Small output, all of it flushed at exit: the closed pipe shows there.
    for args in (("versions", "etl"), ("versions", "etl", "-o", "json"), ("pipelines",)):
        done = _into_closed_pipe(server, *args)
        assert (done.returncode, done.stderr) == (EXIT_BROKEN_PIPE, ""), args


def test_a_line_flushed_mid_command_into_a_closed_pipe_ends_quietly(
    server: Server, tmp_path: Path
) -> None:
    """`run --follow` flushes each line as it comes: the first one meets the closed pipe
    while the command is still going."""
    spec = tmp_path / "etl.yaml"
    spec.write_text(SPEC)
    assert legato(server, "apply", "-f", str(spec)).returncode == 0

    done = _into_closed_pipe(server, "run", "etl", "--follow")

    assert (done.returncode, done.stderr) == (EXIT_BROKEN_PIPE, "")


def test_a_command_that_fails_still_says_why(server: Server) -> None:
    """Only stdout is cut off: errors still reach stderr, with their own exit code."""
    done = _into_closed_pipe(server, "show", "nope")
    assert done.returncode == 1
    assert done.stderr.startswith("legato show: pipeline 'nope' does not exist")
