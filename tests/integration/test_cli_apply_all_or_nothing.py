"""``legato apply -f DIR`` validates every file on the server before it applies any: one
file the server refuses, one whose pipeline is archived, or two files of one pipeline,
and nothing is applied, with every problem printed against its file."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from test_cli import Server, legato


def _spec(name: str, needs: str = "a") -> str:
    return textwrap.dedent(
        f"""\
        name: {name}
        steps:
          - name: a
            transform: {{code: "result = None"}}
          - name: b
            needs: [{needs}]
            transform: {{code: "result = None"}}
        """
    )


def _names(server: Server) -> list[str]:
    listed = legato(server, "pipelines", "--archived", "-o", "json")
    assert listed.returncode == 0, listed.stderr
    return sorted(p["name"] for p in json.loads(listed.stdout).get("pipelines", []))


def test_one_invalid_file_keeps_the_valid_ones_from_being_applied(
    server: Server, tmp_path: Path
) -> None:
    folder = tmp_path / "specs"
    folder.mkdir()
    (folder / "1-first.yaml").write_text(_spec("first"))
    (folder / "2-broken.yaml").write_text(_spec("broken", needs="nope"))
    (folder / "3-third.yaml").write_text(_spec("third"))

    out = legato(server, "apply", "-f", str(folder))

    assert (out.returncode, out.stdout) == (1, "")
    lines = out.stderr.splitlines()
    assert lines[0].startswith(f"{folder}/2-broken.yaml:6: steps[1].needs[0]: ")
    assert lines[-1] == (
        f"legato apply: nothing applied: 1 of 3 files has problems ({folder}/2-broken.yaml); "
        "fix them and apply again"
    )
    assert _names(server) == []

    (folder / "2-broken.yaml").write_text(_spec("broken"))
    fixed = legato(server, "apply", "-f", str(folder))
    assert fixed.returncode == 0, fixed.stderr
    assert fixed.stdout.splitlines() == [
        "pipeline first: version 1 (created)",
        "pipeline broken: version 1 (created)",
        "pipeline third: version 1 (created)",
    ]


def test_an_archived_pipeline_keeps_the_others_from_being_applied(
    server: Server, tmp_path: Path
) -> None:
    old = tmp_path / "old.yaml"
    old.write_text(_spec("old"))
    assert legato(server, "apply", "-f", str(old)).returncode == 0
    assert legato(server, "archive", "old").returncode == 0
    new = tmp_path / "new.yaml"
    new.write_text(_spec("new"))

    out = legato(server, "apply", "-f", str(new), "-f", str(old))

    assert out.returncode == 1
    assert f"{old}: pipeline 'old' is archived; restore it first (legato restore old)" in (
        out.stderr
    )
    assert "nothing applied: 1 of 2 files has problems" in out.stderr
    assert _names(server) == ["old"]


def test_two_files_of_one_pipeline_are_refused(server: Server, tmp_path: Path) -> None:
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text(_spec("same"))
    second.write_text(_spec("same"))

    out = legato(server, "apply", "-f", str(first), "-f", str(second))

    assert out.returncode == 1
    assert out.stderr.splitlines()[0] == f"{second}: pipeline 'same' is also in {first}"
    assert _names(server) == []
