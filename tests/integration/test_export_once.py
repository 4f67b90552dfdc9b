"""Effectively-once table exports end to end: an agent killed after its export committed
and before it could report it, then the retry on another agent, on a SQLite and a
PostgreSQL warehouse. The window is held open with the fail point
``export.after_commit`` (see ``legato.failpoints``)."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from cluster import Cluster, running_cluster, status_name, steps_by_name

from legato.v1 import run_pb2

pytestmark = pytest.mark.timeout(120)

PIPELINE = """
name: ledgered
steps:
  - name: make
    transform:
      code: "result = pd.DataFrame({'n': range(98), 'label': ['x'] * 98})"
  - name: load
    needs: [make]
    retry: {max_retries: 1}
    export:
      table: {connection: warehouse, table: events, mode: MODE}
"""


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    # The control plane's store does not matter here; the warehouse does (warehouse_url).
    with running_cluster(f"sqlite:///{tmp_path}/legato.db", tmp_path) as running:
        yield running


def _query(url: str, sql: str) -> list[tuple[Any, ...]]:
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(sa.text(sql))]
    finally:
        engine.dispose()


def _committed(url: str) -> bool:
    """Whether the export's ledger row is committed in the warehouse."""
    try:
        return bool(_query(url, "SELECT count(*) FROM legato_exports")[0][0])
    except sa.exc.DBAPIError:
        return False  # the ledger is not there yet


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(entry.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _crash(cluster: Cluster, name: str) -> None:
    """SIGKILL the agent and every process under it, as if its machine died: the step's
    process (in a session of its own) too, so it never reports anything."""
    below = _descendants(cluster.agents[name].pid)
    cluster.kill_agent(name)
    for pid in below:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("mode", ["append", "replace"])
def test_an_agent_killed_between_the_commit_and_the_report_does_not_export_twice(
    cluster: Cluster, warehouse_url: str, mode: str
) -> None:
    connection = {"LEGATO_CONNECTION_WAREHOUSE": warehouse_url}
    cluster.start_agent(
        "doomed", env={**connection, "LEGATO_FAILPOINTS": "export.after_commit=sleep(60000)"}
    )
    cluster.apply(PIPELINE.replace("MODE", mode))
    run_id = cluster.client.trigger_run("ledgered").run.id
    cluster.wait_for(lambda: _committed(warehouse_url), "the export to commit")
    assert _query(warehouse_url, "SELECT count(*) FROM events") == [(98,)]
    _crash(cluster, "doomed")
    cluster.start_agent("rescuer", env=connection)

    run = cluster.wait_run(run_id, timeout=60)
    assert run.status == run_pb2.RUN_STATUS_SUCCEEDED, run
    load = steps_by_name(run)["load"]
    assert [(a.agent, status_name(a.status)) for a in load.attempts] == [
        ("doomed", "failed"),
        ("rescuer", "succeeded"),
    ]
    assert "stopped renewing the lease" in load.attempts[0].error  # lost, then retried
    assert (load.records_in, load.records_out) == (98, 98)
    assert _query(warehouse_url, "SELECT count(*), count(DISTINCT n) FROM events") == [(98, 98)]
    assert _query(warehouse_url, "SELECT export_key, attempt, row_count FROM legato_exports") == [
        (f"{run_id}:load", 1, 98)
    ]
    logs = cluster.logs(run_id)
    skipped = [line for line in logs if line.startswith("export already committed")]
    assert len(skipped) == 1, logs
    assert skipped[0].startswith(
        "export already committed by attempt 1 of this run (98 rows into events on 'warehouse' at "
    )
