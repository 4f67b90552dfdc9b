"""``legato pipelines`` shows whether each schedule fires and when: a paused schedule says
so with its reason, an active one its next fire time in its zone. A real server."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

from test_cli import Server, legato

SPEC = textwrap.dedent(
    """\
    name: {name}
    schedule:
      cron: "0 6 * * *"
      timezone: Asia/Tokyo
    steps:
      - name: work
        transform: {{code: "result = None"}}
    """
)


def test_paused_schedules_are_shown(server: Server, tmp_path: Path) -> None:
    for name in ("active", "resting"):
        spec = tmp_path / f"{name}.yaml"
        spec.write_text(SPEC.format(name=name))
        assert legato(server, "apply", "-f", str(spec)).returncode == 0
    plain = tmp_path / "manual.yaml"
    plain.write_text("name: manual\nsteps:\n  - {name: a, transform: {code: 'result = None'}}\n")
    assert legato(server, "apply", "-f", str(plain)).returncode == 0
    paused = legato(server, "schedule", "pause", "resting", "--reason", "warehouse migration")
    assert paused.returncode == 0, paused.stderr

    listed = legato(server, "pipelines")

    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split() == [
        "NAME",
        "VERSION",
        "SCHEDULE",
        "NEXT",
        "FIRE",
        "STEPS",
        "ARCHIVED",
        "UPDATED",
    ]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert re.search(r"\(Asia/Tokyo\)\s+\d{4}-\d\d-\d\d 06:00:00 JST\s+1\s+no", rows["active"])
    assert re.search(r"\(Asia/Tokyo\)\s+paused: warehouse migration\s+1\s+no", rows["resting"]), (
        rows["resting"]
    )
    assert re.search(r"^manual\s+1\s+-\s+-\s+1\s+no", rows["manual"]), rows["manual"]
