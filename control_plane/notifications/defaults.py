"""The server's default notifications (``legato server --notifications FILE``): a YAML
file holding a ``notifications:`` list written as in a pipeline spec, sent for every
pipeline that does not set ``default_notifications: false``. A bad file stops the server
at start with every problem, each at its line."""

from __future__ import annotations

from pathlib import Path

from control_plane.errors import FailedPrecondition
from control_plane.validation.notifications import check_notification
from control_plane.validation.violations import index
from legato.spec import SpecFormatError, load_spec_text
from legato.v1 import spec_pb2

__all__ = ["load_defaults"]


def load_defaults(path: str) -> tuple[spec_pb2.Notification, ...]:
    """The notifications in ``path`` ("" for none); FailedPrecondition naming the file,
    the line and the field of each problem."""
    if not path:
        return ()
    flag = f"--notifications {path}"
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise _bad(f"{flag}: cannot read it: {exc.strerror or exc}") from None
    try:
        loaded = load_spec_text(text, path)
    except SpecFormatError as exc:
        raise _bad(f"{flag}: {exc}") from None
    spec = loaded.spec
    extra = [field.name for field, _ in spec.ListFields() if field.name != "notifications"]
    if extra:
        raise _bad(
            f"{flag}: only a notifications: list is read from this file, not " + ", ".join(extra)
        )
    problems = []
    for position, notification in enumerate(spec.notifications):
        for violation in check_notification(index("notifications", position), notification):
            line = loaded.source_map.line_for(violation.field)
            where = f"{path}:{line}" if line else path
            problems.append(f"{where}: {violation.field}: {violation.description}")
    if problems:
        raise _bad(f"{flag} has {len(problems)} problem(s):\n  " + "\n  ".join(problems))
    return tuple(spec.notifications)


def _bad(message: str) -> FailedPrecondition:
    return FailedPrecondition(message, reason="INVALID_NOTIFICATIONS")
