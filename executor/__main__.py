"""``python -m executor`` / ``legato agent``: parse settings, then run the agent."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

from executor.config import ConfigError, parse_agent_args
from executor.connections import ConnectionsError

__all__ = ["main"]


def main(argv: Sequence[str] | None = None, prog: str = "legato agent") -> int:
    from executor.agent import AgentRefusedError
    from executor.app import run
    from observability.logsetup import configure_logging

    try:
        config = parse_agent_args(sys.argv[1:] if argv is None else argv, prog)
    except ConfigError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    configure_logging(config.log_format, config.log_level)
    try:
        asyncio.run(run(config))
    except (ConnectionsError, ConfigError) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    except AgentRefusedError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
