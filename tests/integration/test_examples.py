"""The seed's three workflows (examples/), end to end: a real control plane, an agent
process holding the connections, a PostgreSQL warehouse filled with generated data, and
the outside world — a partner API, Slack, an alert receiver — served on loopback."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import sqlalchemy as sa
from cluster import Cluster, steps_by_name
from legato_examples.sample_data import create_warehouse

from legato.spec import load_spec_file
from legato.testing import LocalControlPlane
from legato.v1 import run_pb2

# The daily report's SQL is PostgreSQL's: the examples run on the PostgreSQL warehouse only.
pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.parametrize("warehouse_url", ["postgres"], indirect=True),
]

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
API_ORDERS = 127
API_NOT_POSITIVE = 29
HOOK_KEY = "example-alert-key"


@dataclass
class World:
    """The partner API, Slack and the alert receiver, recording what they were sent."""

    posts: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)

    def orders(self, page: int, since: str) -> dict[str, Any]:
        start = dt.date.fromisoformat(since)
        everything = [
            {
                "orderId": f"p-{i:05d}",
                "customerId": i % 50,
                "total": 0.0 if i < API_NOT_POSITIVE else round(10 + i * 1.5, 2),
                "updatedAt": f"{start + dt.timedelta(days=1)}T{i % 24:02d}:15:00Z",
            }
            for i in range(API_ORDERS)
        ]
        size = 50
        chunk = everything[(page - 1) * size : page * size]
        return {"orders": chunk, "next_page": page + 1 if page * size < len(everything) else None}


def _handler(world: World) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            query = parse_qs(parts.query)
            body = json.dumps(world.orders(int(query["page"][0]), query["since"][0])).encode()
            self.send_response(200 if parts.path == "/api/v1/orders" else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            world.posts.append((self.path, dict(self.headers), body))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *_: Any) -> None:
            pass

    return Handler


@pytest.fixture
def world() -> Iterator[tuple[World, str]]:
    state = World()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def warehouse(warehouse_url: str) -> str:
    create_warehouse(warehouse_url)
    return warehouse_url


@pytest.fixture
def cluster(
    tmp_path: Path, warehouse: str, world: tuple[World, str]
) -> Iterator[tuple[Cluster, World, str]]:
    state, base = world
    with LocalControlPlane(db=f"sqlite:///{tmp_path}/legato.db") as plane:
        running = Cluster(plane, tmp_path)
        try:
            running.start_agent(
                "near-warehouse",
                connections=EXAMPLES / "agent" / "connections.yaml",
                env={
                    "PYTHONPATH": str(EXAMPLES),
                    "WAREHOUSE_URL": warehouse,
                    "SLACK_WEBHOOK_URL": f"{base}/slack/T000/B000/s3cretpath",
                    "ALERTS_HOOK_SECRET": HOOK_KEY,
                },
            )
            for path in sorted(EXAMPLES.glob("*.yaml")):
                spec = load_spec_file(path).spec
                for step in spec.steps:
                    if step.export.webhook.url:  # the alert receiver is on loopback here
                        step.export.webhook.url = f"{base}/hooks/data-quality"
                running.client.apply_pipeline(spec)
            yield running, state, base
        finally:
            running.stop()


def _scalar(url: str, sql: str) -> Any:
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.connect() as conn:
        value = conn.execute(sa.text(sql)).scalar()
    engine.dispose()
    return value


def test_daily_report(cluster: tuple[Cluster, World, str], warehouse: str, tmp_path: Path) -> None:
    running, world, _ = cluster
    run = running.run("daily-report", timeout=90)
    assert run.status == run_pb2.RUN_STATUS_SUCCEEDED, run
    steps = steps_by_name(run)
    sales = _scalar(
        warehouse,
        "SELECT count(*) FROM sales WHERE ordered_at >= CURRENT_DATE - 2 "
        "AND ordered_at < CURRENT_DATE",
    )
    regions = _scalar(
        warehouse,
        "SELECT count(DISTINCT region) FROM sales WHERE ordered_at >= CURRENT_DATE - 2 "
        "AND ordered_at < CURRENT_DATE",
    )
    logs = running.logs(run.id)
    assert f"Step 1: sales ({sales} records)" in logs
    assert f"Step 2: totals ({sales} → {regions} after filtering)" in logs
    assert f"Step 4: save ({regions} inserted)" in logs
    assert "Step 5: announce (1 delivered)" in logs
    assert _scalar(warehouse, "SELECT count(*) FROM daily_sales_report") == regions
    # The chart is an artifact of its step, downloadable as a PNG.
    chart = steps["chart"].output.artifacts
    assert [(a.name, a.media_type) for a in chart] == [("chart.png", "image/png")]
    saved = tmp_path / "chart.png"
    running.client.download_artifact(chart[0].id, saved)
    assert saved.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    # The Slack message: its template filled in, the totals as a preview.
    (_, _, body) = next(post for post in world.posts if post[0].startswith("/slack/"))
    message = json.loads(body)
    assert message["channel"] == "#data-team"
    assert message["text"].startswith(
        f"Sales report for the last 1 day(s) is ready: {regions} regions, chart chart.png."
    )
    assert "```" in message["text"] and "change_pct" in message["text"]


def test_data_quality_alerts_on_anomalies(cluster: tuple[Cluster, World, str]) -> None:
    running, world, _ = cluster
    run = running.run("data-quality", timeout=90)
    assert run.status == run_pb2.RUN_STATUS_SUCCEEDED, run
    steps = steps_by_name(run)
    assert steps["findings"].records_out == 2  # 7 users without email, 4 negative orders
    assert "Step 5: alert (2 delivered)" in running.logs(run.id)
    (_, headers, body) = next(post for post in world.posts if post[0] == "/hooks/data-quality")
    stamp, signature = (part.split("=", 1)[1] for part in headers["Legato-Signature"].split(","))
    expected = hmac.new(HOOK_KEY.encode(), f"{stamp}.".encode() + body, hashlib.sha256)
    assert hmac.compare_digest(signature, expected.hexdigest())
    findings = {(r["check"], r["target"], r["count"]) for r in json.loads(body)["records"]}
    assert findings == {
        ("null values", "users.email", 7),
        ("values out of range", "orders.amount", 4),
    }


def test_data_quality_stays_quiet_when_all_is_well(
    cluster: tuple[Cluster, World, str], warehouse: str
) -> None:
    running, world, _ = cluster
    engine = sa.create_engine(warehouse.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE users SET email = 'fixed@example.com' WHERE email IS NULL"))
        conn.execute(sa.text("UPDATE orders SET amount = -amount WHERE amount < 0"))
    engine.dispose()
    run = running.run("data-quality", timeout=90)
    assert run.status == run_pb2.RUN_STATUS_SUCCEEDED, run
    assert steps_by_name(run)["alert"].status == run_pb2.STEP_STATUS_SKIPPED
    assert not [post for post in world.posts if post[0] == "/hooks/data-quality"]


def test_etl_from_an_http_api(cluster: tuple[Cluster, World, str], warehouse: str) -> None:
    running, _, base = cluster
    before = _scalar(warehouse, "SELECT count(*) FROM orders")
    run = running.run("etl", timeout=90, api_url=f"{base}/api/v1", since_days=2)
    assert run.status == run_pb2.RUN_STATUS_SUCCEEDED, run
    kept = API_ORDERS - API_NOT_POSITIVE
    logs = running.logs(run.id)
    assert f"Step 1: extract ({API_ORDERS} records)" in logs
    assert f"Step 2: transform ({API_ORDERS} → {kept} after filtering)" in logs
    assert f"Step 3: load ({kept} inserted)" in logs
    assert _scalar(warehouse, "SELECT count(*) FROM orders") == before + kept
    report_rows = steps_by_name(run)["update_reports"].records_out
    assert report_rows == _scalar(warehouse, "SELECT count(*) FROM order_totals") > 0
    # Running it again loads the same orders: upsert keeps one row per order.
    again = running.run("etl", timeout=90, api_url=f"{base}/api/v1", since_days=2)
    assert again.status == run_pb2.RUN_STATUS_SUCCEEDED, again
    assert _scalar(warehouse, "SELECT count(*) FROM orders") == before + kept
