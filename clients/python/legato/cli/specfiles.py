"""Spec files on the command line: expand directories, load, and print problems as
``FILE:LINE: path: message`` whether the loader or the server found them.

A spec over the server's limit (:data:`MAX_SPEC_BYTES` encoded, docs/api.md#limits) is
refused here, with the file named, before anything is sent."""

from __future__ import annotations

import sys
from pathlib import Path

from legato.errors import RpcError
from legato.spec import LoadedSpec, SpecFormatError, load_spec_file

__all__ = ["MAX_SPEC_BYTES", "CommandError", "expand_paths", "load_all", "print_violations"]

SPEC_SUFFIXES = (".yaml", ".yml", ".json")
MAX_SPEC_BYTES = 1024 * 1024
"""The most a server takes for the ``spec`` of ApplyPipeline / ValidatePipeline /
TestNotifications, encoded (docs/api.md#limits)."""


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
            items = _load(path)
        except SpecFormatError as error:
            print(str(error), file=sys.stderr)
            failed = True
            continue
        for item in items:
            if _too_large(item):
                failed = True
                continue
            loaded.append(item)
    if failed:
        raise CommandError
    return loaded


def _load(path: str) -> list[LoadedSpec]:
    """A spec file's pipeline, or the pipelines a Python module defines (pipelines as
    code: ``legato.Pipeline`` objects bound to its globals)."""
    if path.endswith(".py"):
        from legato.codefiles import load_pipeline_file

        return load_pipeline_file(path)
    return [load_spec_file(path)]


def _too_large(item: LoadedSpec) -> bool:
    size = item.spec.ByteSize()
    if size <= MAX_SPEC_BYTES:
        return False
    print(
        f"{item.filename}: the spec is {size:,} bytes encoded, over the limit of "
        f"{MAX_SPEC_BYTES:,} bytes (1 MiB) a Legato server takes (docs/api.md#limits); "
        "move large code or SQL into a module the agent imports (a function step) "
        "or split the pipeline",
        file=sys.stderr,
    )
    return True


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
