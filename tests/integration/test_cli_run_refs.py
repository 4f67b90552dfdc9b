"""RUN may be a whole run id, a unique prefix of a recent one, or ``latest`` (the newest
run, or the newest of ``--pipeline``); an ambiguous prefix is refused with the candidates.
A real server and the real `legato` command."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from test_cli import Server, legato


def _spec(name: str) -> str:
    return textwrap.dedent(
        f"""\
        name: {name}
        steps:
          - name: work
            transform: {{code: "result = None"}}
        """
    )


def _runs(server: Server, tmp_path: Path) -> dict[str, list[str]]:
    """Two runs of ``first`` then one of ``second``: pipeline → ids, oldest first."""
    made: dict[str, list[str]] = {}
    for name, count in (("first", 2), ("second", 1)):
        spec = tmp_path / f"{name}.yaml"
        spec.write_text(_spec(name))
        assert legato(server, "apply", "-f", str(spec)).returncode == 0
        for _ in range(count):
            started = legato(server, "run", name)
            assert started.returncode == 0, started.stderr
            made.setdefault(name, []).append(started.stdout.split()[1])
    return made


def _status_id(server: Server, *args: str) -> str:
    shown = legato(server, "status", *args, "-o", "json")
    assert shown.returncode == 0, shown.stderr
    run_id: str = json.loads(shown.stdout)["id"]
    return run_id


def test_latest_is_the_newest_run_of_all_or_of_a_pipeline(server: Server, tmp_path: Path) -> None:
    made = _runs(server, tmp_path)

    assert _status_id(server, "latest") == made["second"][0]
    assert _status_id(server, "latest", "--pipeline", "first") == made["first"][1]
    cancelled = legato(server, "cancel", "latest", "--pipeline", "first")
    assert cancelled.stdout == f"run {made['first'][1]} cancelled\n", cancelled.stderr


def test_a_unique_prefix_names_its_run(server: Server, tmp_path: Path) -> None:
    made = _runs(server, tmp_path)
    ids = [*made["first"], *made["second"]]
    target = made["first"][0]
    # The shortest prefix of the target that no other id starts with.
    length = next(
        n for n in range(1, 27) if [i for i in ids if i.startswith(target[:n])] == [target]
    )

    assert _status_id(server, target[:length]) == target
    assert _status_id(server, target[:length].upper()) == target
    logs = legato(server, "logs", target[:length])
    assert logs.returncode == 0, logs.stderr


def test_an_ambiguous_prefix_lists_the_candidates(server: Server, tmp_path: Path) -> None:
    made = _runs(server, tmp_path)
    ids = [*made["first"], *made["second"]]
    common = ids[0]
    while not all(i.startswith(common) for i in ids):
        common = common[:-1]
    assert common, ids  # ULIDs made within moments share their leading time digits

    out = legato(server, "status", common)

    assert (out.returncode, out.stdout) == (1, "")
    assert out.stderr.startswith(f"legato status: '{common}' is the start of 3 run ids: ")
    for name, run_ids in made.items():
        for run_id in run_ids:
            assert f"{run_id} ({name} v1)" in out.stderr
    assert out.stderr.endswith("; type more of the id\n")
    # Among the runs of one pipeline it may be unique.
    only = legato(server, "status", common, "--pipeline", "second", "-o", "json")
    assert json.loads(only.stdout)["id"] == made["second"][0]


def test_no_match_and_no_runs_say_what_to_do(server: Server, tmp_path: Path) -> None:
    none_yet = legato(server, "status", "latest")
    assert none_yet.returncode == 1
    assert none_yet.stderr == "legato status: there are no runs yet, so none is the latest\n"

    _runs(server, tmp_path)
    missing = legato(server, "status", "zz")
    assert missing.returncode == 1
    assert missing.stderr == (
        "legato status: no run id starts with 'zz' among the newest 1000 runs; `legato runs` "
        "lists them (give the whole id of an older run)\n"
    )
