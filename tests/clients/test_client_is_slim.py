"""`pip install legato` is a slim client: no module of the client package imports the
server's dependencies (SQLAlchemy, the database drivers, structlog, opentelemetry-sdk) or
the server's packages, except ``legato.cli.embedded`` (`legato up` runs the server
in-process and needs the server extra; the CLI imports it only for that command)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SERVER_ONLY = (
    "aiosqlite",
    "asyncpg",
    "control_plane",
    "croniter",
    "executor",
    "observability",
    "opentelemetry",
    "sqlalchemy",
    "structlog",
)
NEEDS_THE_SERVER = {"legato.cli.embedded"}

PROBE = textwrap.dedent(
    """
    import importlib, pkgutil, sys

    class Refuse:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {blocked!r}:
                raise ImportError(f"server-only module {{name}}")
            return None

    sys.meta_path.insert(0, Refuse())
    import legato
    for module in pkgutil.walk_packages(legato.__path__, "legato."):
        try:
            importlib.import_module(module.name)
        except ImportError as exc:
            print(module.name, exc, sep="\\t")
    """
)


def test_the_client_package_imports_nothing_server_only() -> None:
    probe = PROBE.format(blocked=set(SERVER_ONLY))
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    failed = dict(line.split("\t", 1) for line in done.stdout.splitlines())
    assert set(failed) == NEEDS_THE_SERVER, failed
