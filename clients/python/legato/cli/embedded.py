"""``legato up``: the control plane on SQLite under ./.legato/, with the example pipelines
applied, in one process. Imports server code, so it is loaded only by that command."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

from control_plane.app import ControlPlane
from control_plane.config import ConfigError, ServerConfig
from control_plane.errors import LegatoError
from control_plane.logs import configure_logging
from control_plane.store.urls import display_url
from legato.cli.specfiles import CommandError, load_all
from legato.client import Client
from legato.errors import RpcError

__all__ = ["run_up"]

_DEFAULT_ADDRESS = "127.0.0.1:7470"


def run_up(*, db: str, listen: str, examples: Path | None) -> int:
    try:
        config = ServerConfig.load(argparse.Namespace(db=db, listen=listen, log_level="warning"))
    except ConfigError as exc:
        print(f"legato up: {exc}", file=sys.stderr)
        return 2
    configure_logging(config.log_format, config.log_level)
    try:
        return asyncio.run(_up(config, examples))
    except LegatoError as exc:
        print(f"legato up: {exc.message}", file=sys.stderr)
        return 1


async def _up(config: ServerConfig, examples: Path | None) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    plane = ControlPlane(config)
    port = await plane.start()
    try:
        address = f"{config.listen.rpartition(':')[0]}:{port}"
        print(f"Legato is up: control plane on {address}, state in {display_url(config.db)}")
        if examples is not None:
            await asyncio.to_thread(_apply_examples, address, examples)
        flag = "" if address == _DEFAULT_ADDRESS else f"--server {address} "
        print(f"Try: legato {flag}pipelines · legato {flag}show etl · Ctrl-C stops Legato")
        sys.stdout.flush()
        await stop.wait()
    finally:
        await plane.stop(grace=2)
    return 0


def _apply_examples(address: str, examples: Path) -> None:
    try:
        loaded = load_all([str(examples)])
    except CommandError:
        return
    with Client(address) as client:
        for item in loaded:
            try:
                response = client.apply_pipeline(item.spec, message="applied by legato up")
            except RpcError as error:
                print(f"  {item.filename}: {error.message}", file=sys.stderr)
                continue
            state = "created" if response.created else "unchanged"
            version = f"version {response.version.number} ({state})"
            print(f"  pipeline {response.pipeline.name}: {version} from {item.filename}")
