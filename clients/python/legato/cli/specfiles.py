"""Spec files on the command line: expand directories, load, and print problems as
``FILE:LINE: path: message`` whether the loader or the server found them."""

from __future__ import annotations

import sys
from pathlib import Path

from legato.errors import RpcError
from legato.spec import LoadedSpec, SpecFormatError, load_spec_file

__all__ = ["CommandError", "expand_paths", "load_all", "print_violations"]

SPEC_SUFFIXES = (".yaml", ".yml", ".json")


class CommandError(Exception):
    """A failure already explained on stderr; the command exits non-zero."""


def expand_paths(paths: list[str]) -> list[str]:
    """Files as given; directories become their *.yaml, *.yml and *.json files, sorted."""
    expanded: list[str] = []
    for raw in paths:
        path = Path(raw)
        if raw != "-" and path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix in SPEC_SUFFIXES and p.is_file())
            if not found:
                print(f"{raw}: no .yaml, .yml or .json files in this directory", file=sys.stderr)
                raise CommandError
            expanded.extend(str(p) for p in found)
        else:
            expanded.append(raw)
    return expanded


def load_all(paths: list[str]) -> list[LoadedSpec]:
    """Load every file; report the problems of all of them before failing."""
    loaded: list[LoadedSpec] = []
    failed = False
    for path in expand_paths(paths):
        try:
            loaded.append(load_spec_file(path))
        except SpecFormatError as error:
            print(str(error), file=sys.stderr)
            failed = True
    if failed:
        raise CommandError
    return loaded


def print_violations(loaded: LoadedSpec, error: RpcError) -> None:
    """The server's field violations against the file's lines; other errors as they are."""
    if not error.field_violations:
        print(f"{loaded.filename}: {error.message}", file=sys.stderr)
        return
    for violation in error.field_violations:
        line = loaded.source_map.line_for(violation.field)
        where = f"{loaded.filename}:{line}" if line else loaded.filename
        field = f" {violation.field}:" if violation.field else ""
        print(f"{where}:{field} {violation.description}", file=sys.stderr)
