"""The files a step leaves in ``$LEGATO_ARTIFACTS_DIR`` (a chart, a report, a CSV): each
becomes an artifact of the step, stored through the control plane like its output table,
named by its path under that directory."""

from __future__ import annotations

import mimetypes
from pathlib import Path

__all__ = ["MAX_FILES", "OUTPUT_NAME", "TooManyFilesError", "media_type", "step_files"]

OUTPUT_NAME = "output.arrow"
MAX_FILES = 100
_TYPES = {
    ".arrow": "application/vnd.apache.arrow.file",
    ".parquet": "application/vnd.apache.parquet",
}


class TooManyFilesError(ValueError):
    pass


def step_files(directory: Path) -> list[tuple[Path, str]]:
    """(path, name) of each regular file under ``directory``, in name order; none when the
    directory does not exist. More than :data:`MAX_FILES` is refused: artifacts are for
    results people look at, a table is for many records."""
    if not directory.is_dir():
        return []
    found = sorted(
        (path, path.relative_to(directory).as_posix())
        for path in directory.rglob("*")
        if path.is_file() and not path.is_symlink()
    )
    if len(found) > MAX_FILES:
        raise TooManyFilesError(
            f"the step left {len(found)} files in $LEGATO_ARTIFACTS_DIR; at most {MAX_FILES} "
            "are stored as artifacts (write many records as the step's table instead)"
        )
    return found


def media_type(name: str) -> str:
    suffix = Path(name).suffix.lower()
    if suffix in _TYPES:
        return _TYPES[suffix]
    guessed, _ = mimetypes.guess_type(name)
    return guessed or "application/octet-stream"
