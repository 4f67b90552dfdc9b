"""Every command and every option of ``legato`` says what it is for: the test walks the
whole parser (subcommands of subcommands included) and fails on anything without help."""

from __future__ import annotations

import argparse

import pytest

from legato.cli.completion import command_tree
from legato.cli.main import build_parser, main

# Delegated to the server's and the agent's own parsers (`legato server --help`).
DELEGATED = {("server",), ("agent",)}


def _missing() -> list[str]:
    missing: list[str] = []
    commands = command_tree(build_parser())
    assert len(commands) > 40  # the walk reached the nested commands
    for command in commands:
        name = " ".join(("legato", *command.path))
        if command.path and not command.help:
            missing.append(f"{name}: no help in the list of commands")
        if command.path and command.path not in DELEGATED and not command.parser.description:
            missing.append(f"{name}: no description for {name} --help")
        for option in command.options:
            if not option.help:
                missing.append(f"{name} {'/'.join(option.flags)}: no help")
        for positional in command.positionals:
            if positional.help in (None, argparse.SUPPRESS, ""):
                missing.append(f"{name} {positional.metavar or positional.dest}: no help")
    return missing


def test_every_command_and_option_has_help() -> None:
    assert _missing() == []


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["run", "--help"],
        ["schedule", "preview", "--help"],
        ["agents", "token", "create", "--help"],
        ["config", "set-context", "--help"],
        ["completion", "--help"],
    ],
)
def test_help_opens_with_what_the_command_does(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)

    assert info.value.code == 0
    out = capsys.readouterr().out
    usage, description = out.split("\n\n")[:2]
    assert usage.startswith("usage: legato")
    assert description.strip() and not description.startswith(("options:", "positional"))
