"""The RUN argument of run commands: a run id, a unique prefix of a recent one, or
``latest``.

- A whole id (26 characters) is used as it is.
- ``latest`` is the newest run (of ``--pipeline`` when given).
- Anything shorter is a prefix of the id of one of the newest :data:`RECENT` runs (of
  ``--pipeline`` when given); more than one match is refused with the candidates listed,
  none with a pointer to ``legato runs``."""

from __future__ import annotations

import argparse
import itertools
import sys
from typing import NoReturn

from legato.cli.specfiles import CommandError
from legato.client import Client
from legato.v1 import run_pb2

__all__ = ["ID_LENGTH", "LATEST", "RECENT", "RUN_HELP", "add_run_argument", "resolve_run"]

ID_LENGTH = 26
"""Run ids are ULIDs: 26 characters of Crockford base32, in lower case."""
LATEST = "latest"
RECENT = 1000
"""How many of the newest runs a prefix is looked for in."""
SHOWN = 5
RUN_HELP = (
    "a run id, a unique prefix of a recent one (01m9f), or latest (the newest run, "
    "of --pipeline when given)"
)


def add_run_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", metavar="RUN", help=RUN_HELP)
    parser.add_argument(
        "--pipeline",
        dest="run_pipeline",
        default="",
        metavar="NAME",
        help="with RUN latest or a prefix: only runs of this pipeline",
    )


def resolve_run(client: Client, args: argparse.Namespace) -> str:
    """The id of the run ``args.run`` names; explains on stderr and raises CommandError
    when it names none or several."""
    text: str = args.run.strip()
    pipeline: str = getattr(args, "run_pipeline", "")
    of = f" of pipeline '{pipeline}'" if pipeline else ""
    if text.lower() == LATEST:
        for newest in client.list_runs(pipeline=pipeline, page_size=1):
            return newest.id
        _fail(args, f"there are no runs{of} yet, so none is the latest")
    if len(text) >= ID_LENGTH or not text:
        return text
    prefix = text.lower()
    runs = client.list_runs(pipeline=pipeline, page_size=RECENT)
    recent = itertools.islice(runs, RECENT)
    matches: list[run_pb2.Run] = [r for r in recent if r.id.startswith(prefix)]
    exact = [r for r in matches if r.id == prefix]
    if exact:
        return exact[0].id
    if len(matches) == 1:
        return matches[0].id
    if not matches:
        _fail(
            args,
            f"no run id starts with {text!r} among the newest {RECENT} runs{of}; "
            "`legato runs` lists them (give the whole id of an older run)",
        )
    shown = [f"{r.id} ({r.pipeline} v{r.version})" for r in matches[:SHOWN]]
    more = f" and {len(matches) - SHOWN} more" if len(matches) > SHOWN else ""
    _fail(
        args,
        f"{text!r} is the start of {len(matches)} run ids: {', '.join(shown)}{more}; "
        "type more of the id",
    )


def _fail(args: argparse.Namespace, message: str) -> NoReturn:
    print(f"legato {args.command}: {message}", file=sys.stderr)
    raise CommandError
