"""Data steps end to end: query, transform and export on real agent processes against a
real user database (SQLite and PostgreSQL), connections routed by label, credentials
masked, tables handed between agents, webhooks delivered to a receiver on loopback."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from cluster import LEGATO, Cluster, running_cluster, status_name, steps_by_name

from legato.testing import LocalControlPlane
from legato.v1 import run_pb2

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    # The store does not matter here (the execution tests cover both); the user database
    # does, and it is parametrised by warehouse_url.
    with running_cluster(f"sqlite:///{tmp_path}/legato.db", tmp_path) as running:
        yield running


def _engine(url: str) -> sa.Engine:
    return sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))


def _seed_orders(url: str, count: int) -> None:
    engine = _engine(url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "CREATE TABLE orders (id INTEGER PRIMARY KEY, region TEXT, amount NUMERIC(10, 2))"
            )
        )
        conn.execute(
            sa.text("INSERT INTO orders VALUES (:id, :region, :amount)"),
            [
                {"id": i, "region": "eu" if i % 3 else "us", "amount": (i % 7) - 1}
                for i in range(count)
            ],
        )
    engine.dispose()


def _rows(url: str, sql: str) -> list[tuple[Any, ...]]:
    engine = _engine(url)
    with engine.connect() as conn:
        rows = [tuple(row) for row in conn.execute(sa.text(sql))]
    engine.dispose()
    return rows


ETL = """
name: orders-etl
params:
  min_amount: {type: integer, default: 0}
steps:
  - name: extract
    query:
      connection: warehouse
      sql: SELECT id, region, amount FROM orders WHERE amount >= :floor ORDER BY id
      parameters: {floor: params.min_amount}
  - name: transform
    needs: [extract]
    transform:
      code: |
        result = data[data["amount"] > 0].assign(amount=lambda d: d["amount"].astype(float))
  - name: load
    needs: [transform]
    export:
      table: {connection: warehouse, table: positive_orders, mode: upsert, keys: [id]}
"""


def test_query_transform_export_with_record_counts(
    cluster: Cluster, warehouse_url: str, tmp_path: Path
) -> None:
    _seed_orders(warehouse_url, 127)
    cluster.start_agent("a1", env={"LEGATO_CONNECTION_WAREHOUSE": warehouse_url})
    cluster.apply(ETL)
    run = cluster.run("orders-etl")
    assert run.status == run_pb2.RUN_STATUS_SUCCEEDED, run
    extracted = sum(1 for i in range(127) if (i % 7) - 1 >= 0)
    kept = sum(1 for i in range(127) if (i % 7) - 1 > 0)
    logs = cluster.logs(run.id)
    assert f"Step 1: extract ({extracted} records)" in logs
    assert f"Step 2: transform ({extracted} → {kept} after filtering)" in logs
    assert f"Step 3: load ({kept} inserted)" in logs
    steps = steps_by_name(run)
    assert (steps["load"].records_in, steps["load"].records_out) == (kept, kept)
    assert _rows(warehouse_url, "SELECT count(*) FROM positive_orders") == [(kept,)]
    # A second run writes the same rows again: upsert leaves the table as it was.
    again = cluster.run("orders-etl")
    assert again.status == run_pb2.RUN_STATUS_SUCCEEDED, again
    assert _rows(warehouse_url, "SELECT count(*) FROM positive_orders") == [(kept,)]
    # The output of a step can be read back from the control plane.
    output = cluster.client.get_step_output(run.id, "extract", limit=5)
    assert output.summary.rows == extracted
    assert [c.name for c in output.summary.columns] == ["id", "region", "amount"]
    assert len(output.rows) == 5
    assert (output.rows[0]["id"], output.rows[0]["region"]) == (1, "eu")


def test_query_params_are_bound_not_formatted(cluster: Cluster, warehouse_url: str) -> None:
    _seed_orders(warehouse_url, 20)
    cluster.start_agent("a1", env={"LEGATO_CONNECTION_WAREHOUSE": warehouse_url})
    cluster.apply(
        """
        name: lookup
        params:
          region: {type: string, default: eu}
        steps:
          - name: find
            query:
              connection: warehouse
              sql: SELECT count(*) AS n FROM orders WHERE region = :region
        """
    )
    run = cluster.run("lookup", region="eu' OR '1'='1")
    assert run.status == run_pb2.RUN_STATUS_SUCCEEDED, run
    output = cluster.client.get_step_output(run.id, "find")
    assert output.rows[0]["n"] == 0  # the quote is data, not SQL


def test_steps_go_only_to_agents_with_the_connection(cluster: Cluster, warehouse_url: str) -> None:
    _seed_orders(warehouse_url, 10)
    cluster.start_agent("plain")
    cluster.apply(ETL)
    started = cluster.client.trigger_run("orders-etl").run
    cluster.wait_for(
        lambda: (
            steps_by_name(cluster.client.get_run(started.id))["extract"].waiting_reason
            == "waiting: no connected agent has connection 'warehouse'"
        ),
        "the step to say why it waits",
    )
    cluster.start_agent("near-data", env={"LEGATO_CONNECTION_WAREHOUSE": warehouse_url})
    run = cluster.wait_run(started.id)
    assert run.status == run_pb2.RUN_STATUS_SUCCEEDED, run
    steps = steps_by_name(run)
    assert steps["extract"].agent == steps["load"].agent == "near-data"


def test_credentials_never_leave_the_agent(cluster: Cluster, warehouse_url: str) -> None:
    if not warehouse_url.startswith("postgresql"):
        pytest.skip("a password in the URL needs a server (trust auth ignores it)")
    secret = "Sup3rSecretPassw0rd"
    url = warehouse_url.replace("postgresql://postgres@", f"postgresql://postgres:{secret}@")
    cluster.start_agent("a1", env={"LEGATO_CONNECTION_WAREHOUSE": url})
    cluster.apply(
        """
        name: leaky
        steps:
          - name: broken
            query: {connection: warehouse, sql: SELECT * FROM no_such_table}
          - name: nosy
            transform:
              code: |
                import os
                print("sees the variable:", "LEGATO_CONNECTION_WAREHOUSE" in os.environ)
                print("url is", "SECRET_URL")
                raise RuntimeError("cannot use " + "SECRET_URL")
        """.replace("SECRET_URL", url)
    )
    run = cluster.run("leaky")
    assert run.status == run_pb2.RUN_STATUS_FAILED
    steps = steps_by_name(run)
    assert "no_such_table" in steps["broken"].error
    everything = json.dumps([str(run), *cluster.logs(run.id)], ensure_ascii=False) + str(
        cluster.client.get_run(run.id)
    )
    assert secret not in everything
    assert "url is ***" in cluster.logs(run.id)
    assert "sees the variable: False" in cluster.logs(run.id)
    assert steps["nosy"].error.startswith("RuntimeError: cannot use ***")


def test_tables_flow_between_agents(cluster: Cluster) -> None:
    cluster.start_agent("left", labels={"zone": "a"})
    cluster.start_agent("right", labels={"zone": "b"})
    cluster.apply(
        """
        name: handover
        steps:
          - name: make
            agent_selector: {zone: a}
            transform: {code: "result = pd.DataFrame({'n': range(5000), 's': ['x'] * 5000})"}
          - name: use
            needs: [make]
            agent_selector: {zone: b}
            transform: {code: "result = {'total': int(data['n'].sum()), 'rows': len(data)}"}
        """
    )
    run = cluster.run("handover")
    assert run.status == run_pb2.RUN_STATUS_SUCCEEDED, run
    steps = steps_by_name(run)
    assert (steps["make"].agent, steps["use"].agent) == ("left", "right")
    assert steps["use"].output.values["total"] == sum(range(5000))
    assert steps["use"].records_in == 5000


def test_an_output_over_the_artifact_limit_fails_the_step(tmp_path: Path) -> None:
    with LocalControlPlane(db=f"sqlite:///{tmp_path}/l.db", artifact_max_mb=1) as plane:
        cluster = Cluster(plane, tmp_path)
        try:
            cluster.start_agent("a1")
            cluster.apply(
                """
                name: big
                steps:
                  - name: huge
                    transform:
                      code: "result = pd.DataFrame({'s': ['y' * 100] * 30000})"
                """
            )
            run = cluster.run("big")
        finally:
            cluster.stop()
    assert run.status == run_pb2.RUN_STATUS_FAILED
    error = steps_by_name(run)["huge"].error
    assert error.startswith("storing the output failed: "), error
    assert "is 3.1 MiB, over the artifact size limit of 1 MiB" in error, error


class _Receiver(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        server: Any = self.server
        server.requests.append((dict(self.headers), body))
        status = server.statuses.pop(0) if server.statuses else 200
        self.send_response(status)
        self.end_headers()

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[Any]:
    server: Any = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    server.requests, server.statuses = [], []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_webhook_export_batches_signs_and_retries(
    cluster: Cluster, receiver: Any, tmp_path: Path
) -> None:
    receiver.statuses = [503]
    connections = tmp_path / "connections.yaml"
    connections.write_text("hook-key: ${HOOK_KEY}\n")
    cluster.start_agent("a1", connections=connections, env={"HOOK_KEY": "k3y-for-hmac"})
    url = f"http://127.0.0.1:{receiver.server_address[1]}/hooks/orders"
    cluster.apply(
        f"""
        name: notify
        steps:
          - name: rows
            transform: {{code: "result = pd.DataFrame({{'id': range(250)}})"}}
          - name: send
            needs: [rows]
            export:
              webhook: {{url: "{url}", secret: hook-key, batch_size: 100}}
        """
    )
    run = cluster.run("notify")
    assert run.status == run_pb2.RUN_STATUS_SUCCEEDED, run
    assert "Step 2: send (250 delivered)" in cluster.logs(run.id)
    assert len(receiver.requests) == 4  # one 503, then three batches
    keys = [headers["Idempotency-Key"] for headers, _ in receiver.requests]
    assert keys[0] == keys[1] == f"{run.id}:send:0"
    for headers, body in receiver.requests:
        stamp, signature = (
            part.split("=", 1)[1] for part in headers["Legato-Signature"].split(",")
        )
        expected = hmac.new(b"k3y-for-hmac", f"{stamp}.".encode() + body, hashlib.sha256)
        assert hmac.compare_digest(signature, expected.hexdigest())
    delivered = [len(json.loads(body)["records"]) for _, body in receiver.requests[1:]]
    assert delivered == [100, 100, 50]


def test_status_says_which_step_waits_for_what(cluster: Cluster) -> None:
    cluster.start_agent("a1")
    cluster.apply(
        """
        name: lonely
        steps:
          - name: q
            query: {connection: nowhere, sql: SELECT 1}
        """
    )
    started = cluster.client.trigger_run("lonely").run
    cluster.wait_for(
        lambda: (
            "connection 'nowhere'"
            in steps_by_name(cluster.client.get_run(started.id))["q"].waiting_reason
        ),
        "the waiting reason",
    )
    step = steps_by_name(cluster.client.get_run(started.id))["q"]
    assert status_name(step.status) == "ready"
    cluster.client.cancel_run(started.id)


def test_cli_shows_outputs_and_saves_artifacts(cluster: Cluster, tmp_path: Path) -> None:
    cluster.start_agent("a1")
    cluster.apply(
        """
        name: report
        steps:
          - name: table
            transform:
              code: |
                import os
                with open(os.path.join(os.environ["LEGATO_ARTIFACTS_DIR"], "note.txt"), "w") as f:
                    f.write("hello from the step")
                result = pd.DataFrame({"region": ["north", "south", "east"], "amount": [3, 2, 1]})
        """
    )
    run = cluster.run("report")
    assert run.status == run_pb2.RUN_STATUS_SUCCEEDED, run
    env = {
        **os.environ,
        "LEGATO_SERVER": cluster.plane.address,
        "LEGATO_TOKEN": cluster.plane.token(),
    }

    def legato(*args: str) -> str:
        done = subprocess.run([LEGATO, *args], capture_output=True, text=True, env=env, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout

    status = legato("status", run.id)
    assert "table: 3 rows (region large_string, amount int64)" in status
    shown = legato("output", run.id, "table", "--limit", "2", "--save", str(tmp_path / "out"))
    assert "rows:     3" in shown
    assert "note.txt (text/plain, 19 bytes)" in shown
    assert "north" in shown and "east" not in shown
    assert "(2 of 3 rows; --limit N shows more)" in shown
    assert (tmp_path / "out" / "note.txt").read_text() == "hello from the step"
    assert (tmp_path / "out" / "output.arrow").read_bytes().startswith(b"ARROW1")
