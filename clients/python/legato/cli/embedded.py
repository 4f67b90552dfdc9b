"""``legato up``: a control plane on SQLite under ./.legato/ and one local agent, in one
process, with the example pipelines applied; ``--demo`` also runs a demo pipeline and
shows its log. Imports server and agent code, so it is loaded only by that command.

Authentication is on, as everywhere: ``legato up`` keeps an admin token for this machine
in ``./.legato/credentials.yaml`` (mode 0600), which the CLI run in this directory (or
below it) finds by itself, and enrols its local agent with a token that lives only in
this process and is revoked when it stops."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path

import yaml

from control_plane.access import token_secrets
from control_plane.access.actors import Actor
from control_plane.access.tokens import Tokens
from control_plane.app import ControlPlane
from control_plane.config import ConfigError, ServerConfig
from control_plane.errors import LegatoError, NotFound
from control_plane.store.urls import display_url
from executor.agent import Agent
from executor.config import AgentConfig
from legato.cli.runs import format_log_line
from legato.cli.specfiles import CommandError, load_all
from legato.client import Client
from legato.connection import write_local_credentials
from legato.errors import RpcError
from legato.spec import load_spec_file
from legato.v1 import run_pb2
from observability.logsetup import configure_logging

__all__ = ["run_up"]

_DEFAULT_ADDRESS = "127.0.0.1:7470"
DEMO_SPEC = Path(__file__).with_name("demo.yaml")


def run_up(
    *, db: str, listen: str, http_listen: str, examples: Path | None, demo: bool, state: Path
) -> int:
    try:
        config = ServerConfig.load(
            argparse.Namespace(db=db, listen=listen, http_listen=http_listen, log_level="warning")
        )
    except ConfigError as exc:
        print(f"legato up: {exc}", file=sys.stderr)
        return 2
    configure_logging(config.log_format, config.log_level)
    try:
        return asyncio.run(_up(config, examples, demo, state))
    except LegatoError as exc:
        print(f"legato up: {exc.message}", file=sys.stderr)
        return 1


async def _up(config: ServerConfig, examples: Path | None, demo: bool, state: Path) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    plane = ControlPlane(config, warn_without_admin=False)
    port = await plane.start()
    address = f"{config.listen.rpartition(':')[0]}:{port}"
    assert plane.tokens is not None
    admin = await _local_admin(plane.tokens, state, address)
    enrolment = await plane.tokens.create_agent("local", LOCAL_ACTOR, connections=["*"])
    agent = Agent(
        AgentConfig(
            server=address,
            name="local",
            slots=max(2, min(8, os.cpu_count() or 2)),
            workdir=state / "work",
            log_level="warning",
            token=enrolment.secret,
        )
    )
    agent_task = asyncio.create_task(agent.run(), name="legato-local-agent")
    code = 0
    try:
        async with asyncio.timeout(30):
            await agent.connected.wait()
        print(
            f"Legato is up: control plane on {address}, state in {display_url(config.db)}, "
            f"agent 'local' with {agent.config.slots} slots"
        )
        print(
            f"An admin token for this machine is in {state / 'credentials.yaml'} "
            "(the CLI here finds it)"
        )
        if examples is not None:
            await asyncio.to_thread(_apply_examples, address, admin, examples)
        if demo:
            code = await asyncio.to_thread(_run_demo, address, admin)
        flag = "" if address == _DEFAULT_ADDRESS else f"--server {address} "
        if plane.http_port:
            link = await plane.sign_in_link(admin)
            print(
                f"Web UI: {link.url}\n  (a one-time sign-in link for 5 minutes; "
                f"`legato {flag}ui` prints a new one)"
            )
        print(
            f"Try: legato {flag}runs · legato {flag}run hello-legato --follow · Ctrl-C stops Legato"
        )
        sys.stdout.flush()
        await stop.wait()
    finally:
        agent.stop()
        await asyncio.gather(agent_task, return_exceptions=True)
        with contextlib.suppress(LegatoError):
            await plane.tokens.revoke_agent(enrolment.row.id, LOCAL_ACTOR)
        await plane.stop(grace=2)
    return code


LOCAL_ACTOR = Actor(name="legato up", kind="local")
LOCAL_ADMIN = "local-admin"


async def _local_admin(tokens: Tokens, state: Path, address: str) -> str:
    """The admin token in ``state/credentials.yaml`` if it is still good here, else a new
    one (replacing the last ``local-admin``); the file is rewritten with this address."""
    secret = ""
    path = state / "credentials.yaml"
    try:
        stored = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError):
        stored = {}
    candidate = str(stored.get("token") or "") if isinstance(stored, dict) else ""
    parsed = token_secrets.parse(candidate)
    if parsed is not None and parsed.kind == "api":
        row = await tokens.api_token(parsed.id)
        if (
            row is not None
            and row.revoke_time is None
            and row.role == "admin"
            and (row.expire_time is None or row.expire_time > datetime.now(UTC))
            and token_secrets.matches(parsed, row.secret_hash)
        ):
            secret = candidate
    if not secret:
        with contextlib.suppress(NotFound):
            await tokens.revoke(LOCAL_ADMIN, LOCAL_ACTOR)
        created = await tokens.create(
            LOCAL_ADMIN,
            "admin",
            LOCAL_ACTOR,
            description="made by legato up for the CLI on this machine",
        )
        secret = created.secret
    write_local_credentials(state, {"server": address, "token": secret})
    return secret


EXAMPLE_PAUSE = "applied by legato up: the examples' schedules start paused"


def _apply_examples(address: str, token: str, examples: Path) -> None:
    try:
        loaded = load_all([str(examples)])
    except CommandError:
        return
    with Client(address, token=token) as client:
        for item in loaded:
            try:
                response = client.apply_pipeline(item.spec, message="applied by legato up")
            except RpcError as error:
                print(f"  {item.filename}: {error.message}", file=sys.stderr)
                continue
            state = "created" if response.created else "unchanged"
            version = f"version {response.version.number} ({state})"
            name = response.pipeline.name
            print(f"  pipeline {name}: {version} from {item.filename}")
            if response.created and response.version.number == 1 and item.spec.schedule.cron:
                # The examples need connections this local agent may not hold: their
                # schedules start paused rather than queueing runs that wait forever.
                client.pause_schedule(name, reason=EXAMPLE_PAUSE)
                print(f"    its schedule is paused; `legato schedule resume {name}` starts it")


def _run_demo(address: str, token: str) -> int:
    """Apply the demo pipeline, run it and print its log as it happens."""
    with Client(address, token=token) as client:
        spec = load_spec_file(DEMO_SPEC).spec
        client.apply_pipeline(spec, message="applied by legato up --demo")
        started = client.trigger_run(spec.name, kind=run_pb2.TRIGGER_KIND_MANUAL)
        print(f"\nrun {started.run.id} started: {spec.name} v{started.run.version}")
        ended = started.run
        for event in client.watch_run(started.run.id):
            kind = event.WhichOneof("event")
            if kind == "log":
                print(format_log_line(event.log), flush=True)
            elif kind == "run":
                ended = event.run
        status = run_pb2.RunStatus.Name(ended.status).removeprefix("RUN_STATUS_").lower()
        print(f"run {ended.id} {status}\n")
        return 0 if ended.status == run_pb2.RUN_STATUS_SUCCEEDED else 1
