"""The agent's metrics page (``executor/metrics.py``): off unless ``--metrics-listen``
asks for it, on loopback for a bare port, served over HTTP from a registry of its own with
the agent's figures as they are at the scrape."""

from __future__ import annotations

import argparse
import urllib.request
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from executor.agent import Agent
from executor.app import run
from executor.config import AgentConfig, ConfigError, parse_agent_args
from executor.metrics import AgentMetrics, AgentState


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            found[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return found


@pytest.mark.parametrize(
    ("given", "listen"),
    [
        (["--metrics-listen", "9464"], "127.0.0.1:9464"),
        (["--metrics-listen", "0.0.0.0:9464"], "0.0.0.0:9464"),
        (["--metrics-listen", "[::1]:0"], "[::1]:0"),
        (["--metrics-listen", "off"], ""),
        ([], ""),
    ],
)
def test_metrics_are_off_unless_asked_for_and_a_bare_port_is_on_loopback(
    given: list[str], listen: str
) -> None:
    assert parse_agent_args(given, "legato agent").metrics_listen == listen


def test_the_variable_sets_the_address_and_a_flag_wins_over_it() -> None:
    env = {"LEGATO_AGENT_METRICS_LISTEN": "9100"}
    assert AgentConfig.load(_namespace(), env).metrics_listen == "127.0.0.1:9100"
    assert AgentConfig.load(_namespace("9200"), env).metrics_listen == "127.0.0.1:9200"


@pytest.mark.parametrize("bad", ["nine", "localhost:", "127.0.0.1:70000", ":9464", "-1"])
def test_an_address_that_is_not_host_port_stops_the_agent_naming_it(bad: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_agent_args(["--metrics-listen", bad], "legato agent")
    assert str(raised.value) == (
        f"--metrics-listen {bad!r} is not [HOST:]PORT or off; e.g. 9464 (on 127.0.0.1) or "
        "0.0.0.0:9464"
    )


def test_the_page_shows_the_agent_as_it_is_at_each_scrape() -> None:
    state = {"running": 1, "buffered": 7, "connected": True}
    metrics = AgentMetrics(
        AgentState(
            slots=lambda: 4,
            running=lambda: int(state["running"]),
            buffered=lambda: int(state["buffered"]),
            connected=lambda: bool(state["connected"]),
        )
    )
    server = metrics.serve("127.0.0.1:0")
    try:
        first = scrape(server.port)
        assert first["legato_agent_slots"] == 4
        assert first["legato_agent_running_steps"] == 1
        assert first["legato_agent_report_buffer"] == 7
        assert first["legato_agent_connected"] == 1
        assert first["legato_agent_reconnects_total"] == 0
        assert first['legato_agent_steps_total{outcome="timeout"}'] == 0
        assert "process_cpu_seconds_total" in first

        state.update(running=0, buffered=0, connected=False)
        metrics.reconnected()
        metrics.step_ended("succeeded")
        metrics.step_ended("succeeded")
        metrics.step_ended("memory")
        second = scrape(server.port)
        assert second["legato_agent_running_steps"] == 0
        assert second["legato_agent_report_buffer"] == 0
        assert second["legato_agent_connected"] == 0
        assert second["legato_agent_reconnects_total"] == 1
        assert second['legato_agent_steps_total{outcome="succeeded"}'] == 2
        assert second['legato_agent_steps_total{outcome="memory"}'] == 1
    finally:
        server.close()
    # Nothing went to prometheus_client's global registry (two agents in one process,
    # or an agent inside a user's own process, do not collide).
    assert REGISTRY.get_sample_value("legato_agent_reconnects_total") is None


def test_an_agent_reads_its_own_slots_tasks_reports_and_stream(tmp_path: Path) -> None:
    agent = Agent(AgentConfig(slots=3, workdir=tmp_path))
    get = agent.metrics.registry.get_sample_value
    assert get("legato_agent_slots") == 3
    assert get("legato_agent_running_steps") == 0
    assert get("legato_agent_connected") == 0
    agent.connected.set()
    assert get("legato_agent_connected") == 1


async def test_an_address_in_use_stops_the_agent_at_start_naming_it(tmp_path: Path) -> None:
    metrics = AgentMetrics(
        AgentState(slots=lambda: 1, running=lambda: 0, buffered=lambda: 0, connected=lambda: True)
    )
    taken = metrics.serve("127.0.0.1:0")
    listen = f"127.0.0.1:{taken.port}"
    try:
        with pytest.raises(ConfigError) as raised:
            await run(AgentConfig(workdir=tmp_path, metrics_listen=listen))
    finally:
        taken.close()
    assert str(raised.value).startswith(f"--metrics-listen {listen}: cannot listen there (")
    assert str(raised.value).endswith("choose another address, or leave metrics off")


def _namespace(metrics_listen: str | None = None) -> argparse.Namespace:
    return argparse.Namespace(metrics_listen=metrics_listen)
