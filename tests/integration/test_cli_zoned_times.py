"""Every time the CLI prints carries its zone, and ``--from``/``--to`` without an offset
are read in the schedule's zone (as its cron is), saying so: here the machine is in New
York and the schedule in Berlin. A real server and the real `legato` command."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

from test_cli import Server, legato

NEW_YORK = {"TZ": "America/New_York"}
SPEC = textwrap.dedent(
    """\
    name: nightly
    schedule:
      cron: "30 2 * * *"
      timezone: Europe/Berlin
    steps:
      - name: work
        transform: {code: "result = None"}
    """
)
ZONED = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [A-Z]{3,4}"


def _apply(server: Server, tmp_path: Path) -> None:
    spec = tmp_path / "nightly.yaml"
    spec.write_text(SPEC)
    assert legato(server, "apply", "-f", str(spec)).returncode == 0


def test_backfill_reads_dates_in_the_schedules_zone(server: Server, tmp_path: Path) -> None:
    _apply(server, tmp_path)

    dry = legato(
        server,
        "backfill",
        "nightly",
        "--from",
        "2026-03-20",
        "--to",
        "2026-03-23",
        "--dry-run",
        env=NEW_YORK,
    )

    assert dry.returncode == 0, dry.stderr
    # Berlin's 2026-03-20 00:00 is New York's 03-19 19:00: the 02:30 Berlin fire time of
    # the 20th is in the range, and that of the 23rd is not.
    assert dry.stdout.splitlines() == [
        "3 fire times in Europe/Berlin (dry run, nothing created; --from and --to read in "
        "Europe/Berlin):",
        "  2026-03-20 02:30:00 CET  (2026-03-20 01:30 UTC)",
        "  2026-03-21 02:30:00 CET  (2026-03-21 01:30 UTC)",
        "  2026-03-22 02:30:00 CET  (2026-03-22 01:30 UTC)",
    ]


def test_an_offset_is_taken_as_given(server: Server, tmp_path: Path) -> None:
    _apply(server, tmp_path)

    dry = legato(
        server,
        "backfill",
        "nightly",
        "--from",
        "2026-03-20T04:00-04:00",
        "--to",
        "2026-03-22T00:00Z",
        "--dry-run",
        env=NEW_YORK,
    )

    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.splitlines() == [
        "1 fire times in Europe/Berlin (dry run, nothing created):",
        "  2026-03-21 02:30:00 CET  (2026-03-21 01:30 UTC)",
    ]


def test_a_backfill_shows_its_range_in_the_schedules_zone(server: Server, tmp_path: Path) -> None:
    _apply(server, tmp_path)

    made = legato(
        server, "backfill", "nightly", "--from", "2026-03-20", "--to", "2026-03-21", env=NEW_YORK
    )

    assert made.returncode == 0, made.stderr
    assert (
        "range:    2026-03-20 00:00:00 CET to 2026-03-21 00:00:00 CET "
        "(--from and --to read in Europe/Berlin)"
    ) in made.stdout.splitlines()


def test_preview_and_lists_label_their_times(server: Server, tmp_path: Path) -> None:
    _apply(server, tmp_path)

    preview = legato(
        server,
        "schedule",
        "preview",
        "nightly",
        "--count",
        "2",
        "--from",
        "2026-03-28",
        env=NEW_YORK,
    )
    listed = legato(server, "pipelines", env=NEW_YORK)
    versions = legato(server, "versions", "nightly", env=NEW_YORK)

    assert preview.returncode == 0, preview.stderr
    lines = preview.stdout.splitlines()
    assert re.fullmatch(rf"state:    active, next at {ZONED}", lines[1]), lines[1]
    assert lines[1].endswith((" CET", " CEST"))  # in the schedule's zone
    assert lines[2] == "from:     2026-03-28 00:00:00 CET (--from read in Europe/Berlin)"
    assert lines[5].startswith("2026-03-28 02:30:00+01:00  2026-03-28 01:30:00 UTC")
    assert lines[6].startswith("2026-03-29 03:00:00+02:00  2026-03-29 01:00:00 UTC")
    row = listed.stdout.splitlines()[1]
    # The next fire time, in Berlin: 02:30 local.
    assert re.search(r"\(Europe/Berlin\)\s+\d{4}-\d\d-\d\d 02:30:00 CES?T\s", row), row
    assert re.search(r"\d\d:\d\d:\d\d E[SD]T", versions.stdout), versions.stdout
