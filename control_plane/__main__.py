"""``python -m control_plane`` / ``legato server``: parse settings, then run the app."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

from control_plane.config import ConfigError, parse_server_args
from control_plane.errors import LegatoError
from observability.logsetup import configure_logging

__all__ = ["main"]


def main(argv: Sequence[str] | None = None, prog: str = "legato server") -> int:
    try:
        config = parse_server_args(sys.argv[1:] if argv is None else argv, prog)
    except ConfigError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    # Imported once the settings are known to be good: a refused one is told at once.
    from control_plane.app import run

    configure_logging(config.log_format, config.log_level)
    try:
        asyncio.run(run(config))
    except LegatoError as exc:
        print(f"{prog}: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
