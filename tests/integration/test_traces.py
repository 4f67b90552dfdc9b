"""A run is an OpenTelemetry trace: spans from the control plane and from the agent (a
separate process) arrive at an OTLP receiver started here, in one tree."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
from cluster import Cluster
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from legato.testing import LocalControlPlane
from legato.v1 import run_pb2

pytestmark = pytest.mark.timeout(90)


class Receiver:
    """OTLP over HTTP (protobuf) on loopback, keeping every span it is sent."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, Any]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
                with receiver.lock:
                    for resource in request.resource_spans:
                        service = next(
                            a.value.string_value
                            for a in resource.resource.attributes
                            if a.key == "service.name"
                        )
                        for scope in resource.scope_spans:
                            receiver.spans.extend((service, span) for span in scope.spans)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.end_headers()
                self.wfile.write(trace_service_pb2.ExportTraceServiceResponse().SerializeToString())

            def log_message(self, *args: Any) -> None:
                return

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def of_trace(self, trace_id: str) -> list[tuple[str, Any]]:
        with self.lock:
            return [(svc, s) for svc, s in self.spans if s.trace_id.hex() == trace_id]


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    running = Receiver()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", running.endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
    try:
        yield running
    finally:
        running.server.shutdown()


def attributes(span: Any) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for item in span.attributes:
        kind = item.value.WhichOneof("value")
        values[item.key] = getattr(item.value, kind) if kind else None
    return values


def test_run_is_one_trace_across_processes(receiver: Receiver, tmp_path: Path) -> None:
    with LocalControlPlane(db=f"sqlite:///{tmp_path}/legato.db") as plane:
        cluster = Cluster(plane, tmp_path)
        try:
            cluster.start_agent("tracer")
            cluster.apply(
                """
                name: traced
                steps:
                  - name: make
                    transform: {code: "result = pd.DataFrame({'x': [1, 2, 3]})"}
                  - name: keep
                    needs: [make]
                    transform: {code: "result = data[data.x > 1]"}
                """
            )
            run = cluster.run("traced")
            assert run.status == run_pb2.RUN_STATUS_SUCCEEDED
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                names = {s.name for _, s in receiver.of_trace(run.trace_id)}
                if {
                    "run traced",
                    "step make",
                    "step keep",
                    "dispatch make",
                    "dispatch keep",
                } <= names:
                    break
                time.sleep(0.1)
        finally:
            cluster.stop()
    spans = receiver.of_trace(run.trace_id)
    by_name = {s.name: (svc, s) for svc, s in spans}
    service, root = by_name["run traced"]
    assert service == "legato-control-plane"
    assert root.parent_span_id == b""
    assert attributes(root)["legato.status"] == "succeeded"
    for step, records_out in (("make", 3), ("keep", 2)):
        agent_service, span = by_name[f"step {step}"]
        assert agent_service == "legato-agent"
        assert span.parent_span_id == root.span_id
        attrs = attributes(span)
        assert attrs["legato.step"] == step
        assert attrs["legato.attempt"] == 1
        assert attrs["legato.agent"] == "tracer"
        assert attrs["legato.outcome"] == "succeeded"
        assert attrs["legato.records_out"] == records_out
        _, dispatch = by_name[f"dispatch {step}"]
        assert dispatch.parent_span_id == root.span_id
        assert attributes(dispatch)["legato.agent"] == "tracer"
