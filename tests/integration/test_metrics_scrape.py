"""Metrics for the people who run Legato, scraped as Prometheus would: a real `legato
server` process and a real `legato agent` process (with ``--metrics-listen``) on each
store, runs that succeed, fail after a retry and wait for an agent that is not there, then
``GET /metrics`` on the server's HTTP listener (refused without an API token) and the
agent's own page. A restarted server shows as one reconnect of the agent; ``--auth none``
serves the page to anyone."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from test_cli import admin_token

from legato import Client
from legato.spec import load_spec_text
from legato.testing import LocalControlPlane
from legato.v1 import access_pb2, run_pb2

pytestmark = pytest.mark.timeout(120)

LEGATO = str(Path(sys.executable).with_name("legato"))
ENDED = {
    run_pb2.RUN_STATUS_SUCCEEDED,
    run_pb2.RUN_STATUS_FAILED,
    run_pb2.RUN_STATUS_CANCELLED,
    run_pb2.RUN_STATUS_TIMED_OUT,
}
PIPELINES = """
name: metered
steps:
  - name: first
    transform: {code: "result = {'n': 1}"}
  - name: second
    needs: [first]
    transform: {code: "result = {'n': 2}"}
---
name: broken
steps:
  - name: boom
    transform: {code: "raise ValueError('no')"}
    retry: {max_retries: 1, delay: 100ms}
---
name: stranded
steps:
  - name: nowhere
    agent_selector: {region: mars}
    transform: {code: "result = 1"}
"""


@dataclass
class Process:
    process: subprocess.Popen[bytes]
    log: Path

    def line(self, event: str, timeout: float = 30) -> dict[str, object]:
        """The first log line of ``event`` (JSON logs), waiting for it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for text in self.log.read_text().splitlines() if self.log.exists() else []:
                try:
                    record = json.loads(text)
                except ValueError:
                    continue
                if record.get("event") == event:
                    return dict(record)
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"no {event!r} in {self.log}: {self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)


@dataclass
class Server(Process):
    address: str
    http: str


def start_server(db_url: str, log: Path, listen: str = "127.0.0.1:0") -> Server:
    with log.open("ab") as out:
        process = subprocess.Popen(
            [
                LEGATO,
                "server",
                "--listen",
                listen,
                "--http-listen",
                "127.0.0.1:0",
                "--db",
                db_url,
                "--lease-timeout",
                "4s",
                "--log-format",
                "json",
            ],
            stdout=out,
            stderr=out,
            start_new_session=True,
        )
    server = Server(process, log, "", "")
    try:
        started = server.line("server_started")
        listening = server.line("http_listening")
    except BaseException:
        server.stop()
        raise
    server.address = f"127.0.0.1:{started['port']}"
    server.http = f"127.0.0.1:{listening['port']}"
    return server


def start_agent(server: str, token: str, workdir: Path) -> tuple[Process, int]:
    """`legato agent` with its metrics on a free loopback port; returns it and the port."""
    log = workdir / "agent.log"
    with log.open("ab") as out:
        process = subprocess.Popen(
            [
                LEGATO,
                "agent",
                "--server",
                server,
                "--slots",
                "2",
                "--workdir",
                str(workdir / "work"),
                "--metrics-listen",
                "0",  # a free port on 127.0.0.1
                "--log-format",
                "json",
            ],
            stdout=out,
            stderr=out,
            env={**os.environ, "LEGATO_AGENT_TOKEN": token},
            start_new_session=True,
        )
    agent = Process(process, log)
    try:
        port = int(str(agent.line("metrics_listening")["port"]))
        agent.line("connected")
    except BaseException:
        agent.stop()
        raise
    return agent, port


def scrape(address: str, token: str | None = None) -> dict[str, float]:
    """The samples of the page at ``address`` as ``name{label="value",...}`` → value."""
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    request = urllib.request.Request(f"http://{address}/metrics", headers=headers)
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=")
        text = response.read().decode()
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            found[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return found


def refused(address: str, authorization: str | None) -> tuple[int, str]:
    headers = {"Authorization": authorization} if authorization is not None else {}
    request = urllib.request.Request(f"http://{address}/metrics", headers=headers)
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(request, timeout=10)
    return raised.value.code, raised.value.read().decode()


def eventually(
    read: Callable[[], dict[str, float]],
    wanted: dict[str, float],
    timeout: float = 20,
) -> dict[str, float]:
    """The samples once ``read`` returns every value in ``wanted`` (metrics are counted
    just after a change commits, a moment after a client can see the change)."""
    deadline = time.monotonic() + timeout
    while True:
        samples = read()
        missed = {k: (samples.get(k), v) for k, v in wanted.items() if samples.get(k) != v}
        if not missed:
            return samples
        if time.monotonic() > deadline:
            raise AssertionError(f"(got, wanted): {missed}")
        time.sleep(0.1)


def wait_run(client: Client, run_id: str, timeout: float = 30) -> run_pb2.Run:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = client.get_run(run_id)
        if run.status in ENDED:
            return run
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} did not end in {timeout}s: {client.get_run(run_id)}")


@pytest.fixture
def admin(db_url: str) -> str:
    """The first admin token, made on the database before the server starts."""
    return admin_token(db_url)


@pytest.fixture
def server(db_url: str, admin: str, tmp_path: Path) -> Iterator[Server]:
    running = start_server(db_url, tmp_path / "server.log")
    try:
        yield running
    finally:
        running.stop()


def test_the_server_and_the_agent_show_what_ran_to_prometheus(
    server: Server, admin: str, tmp_path: Path
) -> None:
    with Client(server.address, token=admin) as client:
        viewer = client.create_token("prometheus", access_pb2.ROLE_VIEWER).secret
        enrolment = client.create_agent_token("a1", connections=["*"]).secret
        agent, agent_port = start_agent(server.address, enrolment, tmp_path)
        try:
            # Secure by default: a token, and an API one.
            status, text = refused(server.http, None)
            assert status == 401
            assert "GET /metrics needs an API token" in text and "legato_" not in text
            assert refused(server.http, "Bearer lgt_made_up_0000")[0] == 401
            assert refused(server.http, f"Bearer {enrolment}")[0] == 403

            page = eventually(
                lambda: scrape(server.http, viewer),
                {
                    "legato_database_up": 1,
                    "legato_agents_connected": 1,
                    'legato_connected_agent_slots{agent="a1"}': 2,
                    'legato_connected_agent_free_slots{agent="a1"}': 2,
                    'legato_runs_finished_total{status="succeeded"}': 0,
                },
            )
            assert page['legato_runs{status="running"}'] == 0

            for document in PIPELINES.split("---"):
                client.apply_pipeline(load_spec_text(textwrap.dedent(document)).spec)
            good = wait_run(client, client.trigger_run("metered").run.id)
            bad = wait_run(client, client.trigger_run("broken").run.id)
            assert (good.status, bad.status) == (
                run_pb2.RUN_STATUS_SUCCEEDED,
                run_pb2.RUN_STATUS_FAILED,
            )
            stranded = client.trigger_run("stranded").run.id

            page = eventually(
                lambda: scrape(server.http, viewer),
                {
                    'legato_runs_finished_total{status="succeeded"}': 1,
                    'legato_runs_finished_total{status="failed"}': 1,
                    # The failed attempt that was retried is not an end of its step.
                    'legato_steps_finished_total{status="succeeded"}': 2,
                    'legato_steps_finished_total{status="failed"}': 1,
                    'legato_step_duration_seconds_count{kind="transform",outcome="succeeded"}': 2,
                    'legato_step_duration_seconds_count{kind="transform",outcome="error"}': 2,
                    # Every lease: two steps and two attempts of the broken one.
                    "legato_step_queue_wait_seconds_count": 4,
                    # The stranded run waits for an agent in region mars.
                    'legato_runs{status="running"}': 1,
                    'legato_steps{status="ready"}': 1,
                    "legato_steps_waiting_for_agent": 1,
                    "legato_lease_expirations_total": 0,
                    "legato_agents_connected": 1,
                    'legato_connected_agent_free_slots{agent="a1"}': 2,
                },
            )
            durations = 'legato_step_duration_seconds_sum{kind="transform",outcome="succeeded"}'
            assert page[durations] > 0
            assert page["legato_build_info" + '{version="' + _version() + '"}'] == 1

            agent_page = eventually(
                lambda: scrape(f"127.0.0.1:{agent_port}"),
                {
                    "legato_agent_slots": 2,
                    "legato_agent_running_steps": 0,
                    "legato_agent_report_buffer": 0,
                    "legato_agent_connected": 1,
                    "legato_agent_reconnects_total": 0,
                    'legato_agent_steps_total{outcome="succeeded"}': 2,
                    'legato_agent_steps_total{outcome="error"}': 2,
                },
            )
            assert agent_page["process_resident_memory_bytes"] > 0

            client.cancel_run(stranded, reason="no agent in mars")
            eventually(
                lambda: scrape(server.http, viewer),
                {
                    'legato_runs_finished_total{status="cancelled"}': 1,
                    'legato_runs{status="running"}': 0,
                    "legato_steps_waiting_for_agent": 0,
                },
            )
        finally:
            agent.stop()


def test_an_agent_counts_a_reconnect_when_its_control_plane_comes_back(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path}/legato.db"  # the reconnect does not depend on the store
    admin = admin_token(db_url)
    first = start_server(db_url, tmp_path / "first.log")
    try:
        with Client(first.address, token=admin) as client:
            enrolment = client.create_agent_token("a1", connections=["*"]).secret
        agent, port = start_agent(first.address, enrolment, tmp_path)
    except BaseException:
        first.stop()
        raise
    try:
        eventually(lambda: scrape(f"127.0.0.1:{port}"), {"legato_agent_connected": 1})
        first.stop()
        eventually(
            lambda: scrape(f"127.0.0.1:{port}"),
            {"legato_agent_connected": 0, "legato_agent_reconnects_total": 0},
        )
        second = start_server(db_url, tmp_path / "second.log", listen=first.address)
        try:
            eventually(
                lambda: scrape(f"127.0.0.1:{port}"),
                {"legato_agent_connected": 1, "legato_agent_reconnects_total": 1},
            )
            eventually(lambda: scrape(second.http, admin), {"legato_agents_connected": 1})
        finally:
            second.stop()
    finally:
        agent.stop()


def test_with_authentication_off_anyone_may_scrape(db_url: str) -> None:
    with LocalControlPlane(db=db_url, auth="none") as plane:
        page = scrape(plane.http_address)
    assert page["legato_database_up"] == 1
    assert page['legato_runs_finished_total{status="succeeded"}'] == 0


def _version() -> str:
    from legato import __version__

    return __version__
