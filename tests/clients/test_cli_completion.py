"""``legato completion bash|zsh|fish``: scripts the shells load and that complete the
commands, their options and the values of options with choices. Bash is driven the way
it completes (COMP_WORDS, COMP_CWORD, the registered function); zsh and fish, when they
are installed, check the scripts' syntax and what they offer."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from legato.cli.main import main

LEGATO = str(Path(sys.executable).with_name("legato"))


def _script(shell: str, capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["completion", shell]) == 0
    return capsys.readouterr().out


def _bash_complete(script: Path, *words: str) -> list[str]:
    """What bash offers for the last of ``words`` (the word under the cursor)."""
    quoted = " ".join(f"'{w}'" for w in ("legato", *words))
    program = (
        f"source {script}\n"
        f"COMP_WORDS=({quoted}); COMP_CWORD={len(words)}\n"
        '_legato; printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    done = subprocess.run(
        ["bash", "--norc", "-c", program], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    return [line for line in done.stdout.splitlines() if line]


def test_bash_loads_the_script_from_the_command(tmp_path: Path) -> None:
    loaded = subprocess.run(
        ["bash", "--norc", "-c", f"source <({LEGATO} completion bash) && complete -p legato"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.strip() == "complete -o filenames -F _legato legato"


def test_bash_completes_commands_options_and_choices(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = tmp_path / "legato.bash"
    script.write_text(_script("bash", capsys))

    assert _bash_complete(script, "sch") == ["schedule"]
    assert set(_bash_complete(script, "schedule", "p")) == {"preview", "pause"}
    assert set(_bash_complete(script, "schedule", "preview", "etl", "--c")) == {
        "--count",
        "--ca",
        "--cert",
        "--context",
    }
    assert _bash_complete(script, "run", "etl", "--fo") == ["--follow"]
    assert _bash_complete(script, "runs", "--status", "f") == ["failed"]
    assert _bash_complete(script, "-o", "j") == ["json"]
    assert set(_bash_complete(script, "completion", "")) == {"bash", "zsh", "fish"}
    # An option's value is not taken for a command: `--server run` is an address.
    assert _bash_complete(script, "--server", "run", "st") == ["status", "stats"]
    assert _bash_complete(script, "agents", "token", "cr") == ["create"]
    assert "--labels" in _bash_complete(script, "agents", "token", "create", "--l")


def test_bash_offers_files_where_no_command_fits(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = tmp_path / "legato.bash"
    script.write_text(_script("bash", capsys))
    (tmp_path / "etl.yaml").write_text("name: etl\n")

    offered = _bash_complete(script, "apply", "-f", str(tmp_path / "et"))

    assert offered == [str(tmp_path / "etl.yaml")]


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh is not installed on this machine")
def test_zsh_script_registers_and_completes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = tmp_path / "_legato"
    script.write_text(_script("zsh", capsys))
    checked = subprocess.run(["zsh", "-n", str(script)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr

    def complete(*words: str) -> list[str]:
        # compadd and _describe only work inside a completion widget: stand-ins print
        # what the function offers them (zsh itself then filters by the typed prefix).
        array = " ".join(f"'{w}'" for w in ("legato", *words))
        program = (
            "autoload -U compinit && compinit -u -D\n"
            f"source {script}\n"
            "[[ ${_comps[legato]} == _legato ]] || { print not registered; exit 1 }\n"
            'compadd() { shift $(( ${@[(i)--]} )); print -rl -- "$@" }\n'
            '_describe() { local -a found; found=("${(@P)${@[-1]}}")\n'
            '    print -rl -- "${found[@]%%:*}" }\n'
            "_files() { print -- '<files>' }\n"
            f"words=({array}); CURRENT={len(words) + 1}; _legato\n"
        )
        done = subprocess.run(
            ["zsh", "-f", "-c", program], capture_output=True, text=True, timeout=30
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout.splitlines()

    assert "schedule" in complete("sch") and "run" in complete("sch")
    assert complete("schedule", "p") == ["preview", "pause", "resume"]
    assert complete("runs", "--status", "f")[:2] == ["queued", "running"]
    assert "--follow" in complete("run", "etl", "--fo")
    assert complete("completion", "") == ["bash", "zsh", "fish"]
    assert complete("apply", "-f", "") == ["<files>"]


@pytest.mark.skipif(shutil.which("fish") is None, reason="fish is not installed on this machine")
def test_fish_completes_commands_and_options(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = tmp_path / "legato.fish"
    script.write_text(_script("fish", capsys))
    checked = subprocess.run(["fish", "--no-execute", str(script)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr

    def complete(line: str) -> list[str]:
        done = subprocess.run(
            ["fish", "--no-config", "-c", f"source {script}; complete -C '{line}'"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 0, done.stderr
        return [entry.split("\t")[0] for entry in done.stdout.splitlines()]

    assert complete("legato sch") == ["schedule"]
    assert set(complete("legato schedule p")) == {"preview", "pause"}
    assert "--follow" in complete("legato run etl --fo")
    assert complete("legato runs --status fa") == ["failed"]
