"""Secrets stay where they belong. A real `legato server` (SQLite file, debug JSON log), a
real `legato agent` holding a PostgreSQL connection with a password, a webhook signed with
a server secret, API and enrolment tokens: after a run that used all of them (and a step
that tried to print the password), none of the secrets is in the database file, the
server's log, the agent's log, or anything the API or the CLI shows."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from control_plane.triggers.webhooks import signature_header

pytestmark = pytest.mark.timeout(120)

LEGATO = str(Path(sys.executable).with_name("legato"))
PASSWORD = "Pw-7f3c9a1e-never-leak"
HOOK_SECRET = "hook-5e2b8d-never-leak"


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    address: str
    http: str
    log: Path


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [LEGATO, *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )


def wait_for_line(path: Path, event: str, timeout: float = 30) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in path.read_text().splitlines() if path.exists() else []:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("event") == event:
                return dict(record)
        time.sleep(0.05)
    raise AssertionError(f"no {event!r} in {path}: {path.read_text()[-2000:]}")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    secrets = tmp_path / "secrets.yaml"
    secrets.write_text("orders-hook: ${TEST_HOOK_SECRET}\n")
    log = tmp_path / "server.log"
    db = f"sqlite:///{tmp_path}/legato.db"
    env = {**os.environ, "TEST_HOOK_SECRET": HOOK_SECRET}
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                LEGATO,
                "server",
                "--listen",
                "127.0.0.1:0",
                "--http-listen",
                "127.0.0.1:0",
                "--db",
                db,
                "--secrets",
                str(secrets),
                "--log-format",
                "json",
                "--log-level",
                "debug",
            ],
            stdout=out,
            stderr=out,
            env=env,
        )
    try:
        started = wait_for_line(log, "server_started")
        listening = wait_for_line(log, "http_listening")
        yield Server(
            process,
            f"127.0.0.1:{started['port']}",
            f"127.0.0.1:{listening['port']}",
            log,
        )
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=20)


def test_no_secret_is_written_where_it_should_not_be(
    server: Server, tmp_path: Path, warehouse_postgres_url: str
) -> None:
    db_url = f"sqlite:///{tmp_path}/legato.db"
    config = tmp_path / "config.yaml"
    base = {**os.environ, "LEGATO_CONFIG": str(config)}
    made = run_cli(
        "tokens", "create", "root", "--role", "admin", "--db", db_url, "-o", "json", env=base
    )
    assert made.returncode == 0, made.stderr
    admin = json.loads(made.stdout)["secret"]
    # The CLI keeps the token in a context, the way people will.
    assert (
        run_cli(
            "config",
            "set-context",
            "local",
            "--server",
            server.address,
            "--token",
            admin,
            env=base,
        ).returncode
        == 0
    )
    enrolled = run_cli(
        "agents",
        "token",
        "create",
        "--name",
        "near-data",
        "--connections",
        "*",
        "-o",
        "json",
        env=base,
    )
    assert enrolled.returncode == 0, enrolled.stderr
    agent_secret = json.loads(enrolled.stdout)["secret"]

    warehouse = make_url(warehouse_postgres_url).set(password=PASSWORD)
    password_file = tmp_path / "password.txt"
    password_file.write_text(PASSWORD)
    agent_log = tmp_path / "agent.log"
    agent_env = {
        **base,
        "LEGATO_AGENT_TOKEN": agent_secret,
        "LEGATO_CONNECTION_WAREHOUSE": warehouse.render_as_string(hide_password=False),
    }
    with agent_log.open("wb") as out:
        agent = subprocess.Popen(
            [
                LEGATO,
                "agent",
                "--server",
                server.address,
                "--workdir",
                str(tmp_path / "work"),
                "--log-format",
                "json",
                "--log-level",
                "debug",
            ],
            stdout=out,
            stderr=out,
            env=agent_env,
            start_new_session=True,
        )
    try:
        wait_for_line(agent_log, "connected")
        spec = tmp_path / "leaky.yaml"
        spec.write_text(
            textwrap.dedent(
                f"""\
                name: leaky
                triggers:
                  - webhook: {{secret: orders-hook}}
                steps:
                  - name: rows
                    query: {{connection: warehouse, sql: "SELECT 1 AS x"}}
                  - name: blabber
                    needs: [rows]
                    transform:
                      code: |
                        secret = open({str(password_file)!r}).read()
                        print("the password is", secret)
                        raise RuntimeError("failed with " + secret)
                """
            )
        )
        assert run_cli("apply", "-f", str(spec), env=base).returncode == 0
        body = b'{"region": "eu"}'
        request = urllib.request.Request(
            f"http://{server.http}/hooks/leaky",
            data=body,
            headers={
                "Legato-Signature": signature_header(HOOK_SECRET, int(time.time()), body),
                "Content-Type": "application/json",
            },
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            run_id = json.loads(response.read())["run_id"]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            shown = run_cli("status", run_id, "-o", "json", env=base)
            if '"RUN_STATUS_FAILED"' in shown.stdout or '"RUN_STATUS_SUCCEEDED"' in shown.stdout:
                break
            time.sleep(0.2)
        status = json.loads(shown.stdout)
        assert status["status"] == "RUN_STATUS_FAILED", shown.stdout
        logs = run_cli("logs", run_id, env=base)
        assert "the password is ***" in logs.stdout, logs.stdout
        assert "failed with ***" in shown.stdout
        # A made-up token is refused and the refusal logged, without the token.
        forged = "lgt_aaaaaaaaaaaaaaaa_" + "B" * 43
        refused = run_cli("whoami", "--token", forged, env=base)
        assert refused.returncode == 1 and "the token is not valid" in refused.stderr
        outputs = [
            shown.stdout,
            logs.stdout,
            run_cli("agents", "-o", "json", env=base).stdout,
            run_cli("tokens", "list", "-o", "json", env=base).stdout,
            run_cli("agents", "token", "list", "-o", "json", env=base).stdout,
            run_cli("activity", "-o", "json", env=base).stdout,
            run_cli("config", "view", env=base).stdout,
        ]
    finally:
        os.killpg(agent.pid, signal.SIGTERM)
        agent.wait(timeout=30)
    server.process.send_signal(signal.SIGTERM)
    server.process.wait(timeout=20)

    secrets = {
        "connection password": PASSWORD,
        "webhook secret": HOOK_SECRET,
        "admin token": admin,
        "admin token's secret part": admin.split("_", 2)[2],
        "agent token": agent_secret,
        "agent token's secret part": agent_secret.split("_", 2)[2],
        "forged token": forged,
    }
    places = {
        "the database": b"".join(
            path.read_bytes() for path in tmp_path.glob("legato.db*") if path.is_file()
        ),
        "the server's log": server.log.read_bytes(),
        "the agent's log": agent_log.read_bytes(),
        "what the CLI showed": "\n".join(outputs).encode(),
    }
    assert len(places["the database"]) > 10_000 and b"leaky" in places["the database"]
    assert b'"reason": "INVALID_TOKEN"' in places["the server's log"]
    assert b'"event": "call_refused"' in places["the server's log"]
    for where, data in places.items():
        for what, secret in secrets.items():
            assert secret.encode() not in data, f"the {what} is in {where}"
    # Only hashes of the token secrets are kept.
    for token in (admin, agent_secret):
        digest = hashlib.sha256(token.split("_", 2)[2].encode()).hexdigest().encode()
        assert digest in places["the database"]
