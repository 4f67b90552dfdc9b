"""``legato run --follow`` says, live, what a run waits for and updates it when that
changes; ``legato status`` says when no agent is connected at all. A real control plane,
real agents as processes, and the real `legato` command read line by line as it prints."""

from __future__ import annotations

import os
import queue
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from cluster import LEGATO, Cluster

ZONED = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [A-Z][A-Za-z0-9:+-]* - ")
NO_AGENT = (
    "step work waits: no agent is connected to the control plane; start one with "
    "`legato agent --server {address}`, enrolled with `legato agents token create` "
    "(see docs/agent.md)"
)


@dataclass
class Following:
    process: subprocess.Popen[str]
    lines: queue.Queue[str] = field(default_factory=queue.Queue)
    seen: list[str] = field(default_factory=list)

    def wait_for(self, text: str, timeout: float = 30) -> str:
        """The first line (from now on) that contains ``text``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                continue
            self.seen.append(line)
            if text in line:
                return line
        raise AssertionError(f"no line with {text!r} in {timeout}s; lines: {self.seen}")

    def run_id(self) -> str:
        return self.wait_for(" started: ").split()[1]


def _env(cluster: Cluster) -> dict[str, str]:
    return {
        **os.environ,
        "LEGATO_SERVER": cluster.plane.address,
        "LEGATO_TOKEN": cluster.plane.token("admin"),
    }


@contextmanager
def following(cluster: Cluster, *args: str) -> Iterator[Following]:
    process = subprocess.Popen(
        [LEGATO, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(cluster),
    )
    followed = Following(process)

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            followed.lines.put(line.rstrip("\n"))

    threading.Thread(target=read, daemon=True).start()
    try:
        yield followed
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)


def _legato(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [LEGATO, *args], capture_output=True, text=True, env=_env(cluster), timeout=60
    )


def test_follow_says_no_agent_is_connected_then_that_one_took_the_step(
    cluster: Cluster,
) -> None:
    cluster.apply(
        """
        name: waits
        steps:
          - name: work
            transform: {code: "result = {'ok': 1}"}
        """
    )
    with following(cluster, "run", "waits", "--follow") as follow:
        run_id = follow.run_id()
        line = follow.wait_for("step work waits")
        assert line.endswith(" - " + NO_AGENT.format(address=cluster.plane.address)), line
        assert ZONED.match(line), line  # a time with its zone

        status = _legato(cluster, "status", run_id)
        assert status.returncode == 0, status.stderr
        assert "no agent is connected to the control plane" in status.stdout
        assert "waiting for a free agent slot" not in status.stdout

        cluster.start_agent("a1")
        follow.wait_for("step work went to agent a1")
        follow.wait_for(f"run {run_id} succeeded")
        assert follow.process.wait(timeout=30) == 0


def test_follow_updates_what_the_step_waits_for(cluster: Cluster) -> None:
    cluster.start_agent("a1")  # holds no connections
    cluster.apply(
        """
        name: needs-warehouse
        steps:
          - name: extract
            query: {connection: warehouse, sql: "SELECT 1 AS x"}
        """
    )
    with following(cluster, "run", "needs-warehouse", "--follow") as follow:
        run_id = follow.run_id()
        follow.wait_for("step extract waits: no connected agent has connection 'warehouse'")
        # The step still waits: nothing more is said until that changes.
        time.sleep(6)
        repeated = [line for line in _drain(follow) if "waits" in line]
        assert repeated == []

        cancelled = _legato(cluster, "cancel", run_id)
        assert cancelled.returncode == 0, cancelled.stderr
        follow.wait_for(f"run {run_id} cancelled")
        assert follow.process.wait(timeout=30) == 1


def test_status_without_any_agent_says_so(cluster: Cluster) -> None:
    cluster.apply(
        """
        name: lonely
        steps:
          - name: work
            transform: {code: "result = None"}
        """
    )
    started = _legato(cluster, "run", "lonely")
    assert started.returncode == 0, started.stderr

    status = _legato(cluster, "status", "latest")

    assert status.returncode == 0, status.stderr
    header = status.stdout.split("\n\n")[0].splitlines()
    assert (
        "waiting:  no agent is connected to the control plane; start one with "
        f"`legato agent --server {cluster.plane.address}`, enrolled with "
        "`legato agents token create` (see docs/agent.md)"
    ) in header
    step_row = next(line for line in status.stdout.splitlines() if line.startswith("work "))
    assert "no agent is connected" in step_row


def _drain(follow: Following) -> list[str]:
    found: list[str] = []
    while True:
        try:
            found.append(follow.lines.get_nowait())
        except queue.Empty:
            return found
