"""Commands that run server code: ``server``, ``db upgrade`` and ``up``. Their packages
are imported only when one of them runs."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import socket
import sys
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

__all__ = ["offline_tokens", "register", "run_agent", "run_server"]

EXTRAS_HINT = "this command needs the server extras: pip install 'legato[server]'"
UP_DB = "sqlite:///./.legato/legato.db"
UP_LISTEN = "127.0.0.1:7470"
UP_HTTP_LISTEN = "127.0.0.1:7471"


def _import(name: str) -> ModuleType:
    import importlib

    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        print(f"legato: {EXTRAS_HINT} (missing module {exc.name!r})", file=sys.stderr)
        raise SystemExit(1) from None


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    sub.add_parser(
        "server", help="run the control plane (legato server --help for its flags)", add_help=False
    )
    sub.add_parser(
        "agent", help="run an executor agent (legato agent --help for its flags)", add_help=False
    )

    db = sub.add_parser("db", help="database maintenance")
    db_sub = db.add_subparsers(dest="db_command", metavar="COMMAND")
    db_sub.required = True
    upgrade = db_sub.add_parser("upgrade", help="upgrade the schema to this version of Legato")
    upgrade.add_argument(
        "--db",
        default=None,
        help="database URL (LEGATO_SERVER_DB, default sqlite:///./.legato/legato.db)",
    )
    upgrade.set_defaults(handler=db_upgrade)

    up = sub.add_parser("up", help="run Legato on its embedded default: SQLite under ./.legato/")
    up.add_argument("--db", default=UP_DB, help=f"database URL (default {UP_DB})")
    up.add_argument("--listen", default=UP_LISTEN, help=f"gRPC address (default {UP_LISTEN})")
    up.add_argument(
        "--http-listen",
        default=UP_HTTP_LISTEN,
        help=f"webhook listener address, or off (default {UP_HTTP_LISTEN})",
    )
    up.add_argument(
        "--examples",
        default="examples",
        metavar="DIR",
        help="apply the pipeline specs in DIR at start (default ./examples, when present)",
    )
    up.add_argument(
        "--demo", action="store_true", help="also apply and run a demo pipeline and show its log"
    )
    up.set_defaults(handler=up_command)


def run_server(argv: Sequence[str]) -> int:
    main: ModuleType = _import("control_plane.__main__")
    code: int = main.main(argv, prog="legato server")
    return code


def run_agent(argv: Sequence[str]) -> int:
    main: ModuleType = _import("executor.__main__")
    code: int = main.main(argv, prog="legato agent")
    return code


def db_upgrade(args: argparse.Namespace) -> int:
    config_mod = _import("control_plane.config")
    db_mod = _import("control_plane.store.db")
    migrate = _import("control_plane.store.migrate")
    errors = _import("control_plane.errors")
    try:
        config = config_mod.ServerConfig.load(argparse.Namespace(db=args.db))
    except config_mod.ConfigError as exc:
        print(f"legato db upgrade: {exc}", file=sys.stderr)
        return 2

    async def upgrade() -> tuple[str | None, str]:
        db = db_mod.Database(config.db)
        try:
            await db.check_connection()
            result: tuple[str | None, str] = await migrate.upgrade(db)
            return result
        finally:
            await db.dispose()

    try:
        before, after = asyncio.run(upgrade())
    except errors.LegatoError as exc:
        print(f"legato db upgrade: {exc.message}", file=sys.stderr)
        return 1
    url = _import("control_plane.store.urls").display_url(config.db)
    if before == after:
        print(f"{url}: schema already at revision {after}")
    else:
        print(f"{url}: schema upgraded from {before or 'empty'} to {after}")
    return 0


@contextlib.asynccontextmanager
async def offline_tokens(db_url: str) -> AsyncIterator[tuple[Any, Any]]:
    """The token store of the database at ``db_url`` (its schema upgraded first), and the
    actor of someone working on it directly, for ``tokens create --db``."""
    config_mod = _import("control_plane.config")
    db_mod = _import("control_plane.store.db")
    migrate = _import("control_plane.store.migrate")
    tokens_mod = _import("control_plane.access.tokens")
    actors = _import("control_plane.access.actors")
    config = config_mod.ServerConfig.load(argparse.Namespace(db=db_url))
    db = db_mod.Database(config.db)
    try:
        await db.check_connection()
        await migrate.upgrade(db)
        actor = actors.Actor(name=f"{_os_user()}@{socket.gethostname()}", kind="local")
        yield tokens_mod.Tokens(db, clock=lambda: datetime.now(UTC)), actor
    finally:
        await db.dispose()


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def up_command(args: argparse.Namespace) -> int:
    embedded = _import("legato.cli.embedded")
    examples = Path(args.examples)
    code: int = embedded.run_up(
        db=args.db,
        listen=args.listen,
        http_listen=args.http_listen,
        examples=examples if examples.is_dir() else None,
        demo=args.demo,
        state=Path(".legato"),
    )
    return code
