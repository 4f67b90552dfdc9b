"""Webhook and Slack exports against a real HTTP server on loopback: batching, JSON values,
headers, the signature, retries and what a failure says."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa  # type: ignore[import-untyped]
import pytest

from executor.kinds import slack_export, webhook_export
from executor.kinds.base import StepContext, StepError, Upstream
from executor.kinds.http import post_json, sign
from executor.kinds.slack_export import export_slack
from executor.kinds.tables import write_table
from executor.kinds.webhook_export import export_webhook


@dataclass
class Answer:
    status: int = 200
    body: bytes = b"ok"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    """A loopback HTTP server that records each request and gives the scripted answers
    in order, then 200 ``ok``."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.answers: list[Answer] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()

    def url(self, path: str = "/hooks/x") -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}{path}"

    def script(self, *answers: Answer) -> None:
        self.answers.extend(answers)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _record(self, request: Request) -> Answer:
        with self._lock:
            self.requests.append(request)
            return self.answers.pop(0) if self.answers else Answer()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                answer = receiver._record(Request(self.path, dict(self.headers.items()), body))
                time.sleep(answer.delay)
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The exports' retries record their waits here instead of sleeping."""
    waits: list[float] = []
    fast = functools.partial(post_json, sleep=waits.append)
    monkeypatch.setattr(webhook_export, "post_json", fast)
    monkeypatch.setattr(slack_export, "post_json", fast)
    return waits


def context(
    *,
    attempt: int = 1,
    connections: dict[str, str] | None = None,
    resolved: dict[str, Any] | None = None,
) -> StepContext:
    return StepContext(
        pipeline="etl",
        step="send",
        run_id="r1",
        attempt=attempt,
        params={},
        upstreams=(),
        workdir=Path("."),
        connections=connections or {},
        resolved=resolved or {},
    )


def upstream(tmp_path: Path, table: pa.Table, name: str = "totals") -> Upstream:
    path = tmp_path / f"{name}.arrow"
    write_table(table, path)
    return Upstream(name, {}, path)


def test_rows_are_posted_in_batches(receiver: Receiver, tmp_path: Path) -> None:
    source = upstream(tmp_path, pa.table({"id": list(range(1205))}))
    config = {"url": receiver.url(), "batch_size": 500}
    result = export_webhook(config, source, context())
    bodies = [request.json() for request in receiver.requests]
    assert [(b["batch"], b["batches"], len(b["records"])) for b in bodies] == [
        (0, 3, 500),
        (1, 3, 500),
        (2, 3, 205),
    ]
    assert [r["id"] for b in bodies for r in b["records"]] == list(range(1205))
    assert {(b["pipeline"], b["run_id"], b["step"], b["attempt"]) for b in bodies} == {
        ("etl", "r1", "send", 1)
    }
    assert (result.written, result.records_in, result.records_out) == (1205, 1205, 1205)
    assert result.values == {"batches": 3, "delivered": 1205, "url": receiver.url()}
    assert {request.path for request in receiver.requests} == {"/hooks/x"}


def test_the_default_batch_is_500_rows(receiver: Receiver, tmp_path: Path) -> None:
    source = upstream(tmp_path, pa.table({"id": list(range(501))}))
    export_webhook({"url": receiver.url()}, source, context())
    assert [len(r.json()["records"]) for r in receiver.requests] == [500, 1]


def test_values_are_sent_as_json(receiver: Receiver, tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "at": pd.Series([pd.Timestamp("2026-06-12T06:00:00", tz="UTC"), pd.NaT]),
            "ratio": [0.5, float("nan")],
        }
    )
    table = pa.Table.from_pandas(frame, preserve_index=False).append_column(
        "price", pa.array([Decimal("1.25"), None], pa.decimal128(10, 2))
    )
    table = table.append_column("blob", pa.array([b"\x00\xff", None]))
    table = table.append_column("day", pa.array([dt.date(2026, 6, 12), None]))
    table = table.append_column("n", pa.array([7, None], pa.int64()))
    table = table.append_column("inf", pa.array([float("inf"), float("nan")]))
    export_webhook({"url": receiver.url()}, upstream(tmp_path, table), context())
    assert receiver.requests[0].json()["records"] == [
        {
            "at": "2026-06-12T06:00:00+00:00",
            "ratio": 0.5,
            "price": 1.25,
            "blob": "AP8=",
            "day": "2026-06-12",
            "n": 7,
            "inf": None,
        },
        {
            "at": None,
            "ratio": None,
            "price": None,
            "blob": None,
            "day": None,
            "n": None,
            "inf": None,
        },
    ]


def test_an_input_without_a_table_sends_its_values_once(receiver: Receiver) -> None:
    source = Upstream("totals", {"count": 3, "region": "eu"}, None)
    result = export_webhook({"url": receiver.url()}, source, context())
    assert [r.json()["records"] for r in receiver.requests] == [[{"count": 3, "region": "eu"}]]
    assert (result.written, result.records_in, result.values["batches"]) == (1, None, 1)


def test_an_empty_table_sends_nothing(
    receiver: Receiver, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = upstream(tmp_path, pa.table({"id": pa.array([], pa.int64())}))
    result = export_webhook({"url": receiver.url()}, source, context())
    assert receiver.requests == []
    assert (result.written, result.records_in, result.values["batches"]) == (0, 0, 0)
    assert "'totals' has no rows; nothing sent" in capsys.readouterr().out


def test_idempotency_keys_are_the_same_for_each_attempt(receiver: Receiver, tmp_path: Path) -> None:
    source = upstream(tmp_path, pa.table({"id": [1, 2, 3]}))
    config = {"url": receiver.url(), "batch_size": 2, "headers": {"X-Team": "data"}}
    export_webhook(config, source, context(attempt=1))
    export_webhook(config, source, context(attempt=2))
    headers = [r.headers for r in receiver.requests]
    assert [h["Idempotency-Key"] for h in headers] == ["r1:send:0", "r1:send:1"] * 2
    assert [h["Legato-Attempt"] for h in headers] == ["1", "1", "2", "2"]
    assert {(h["Legato-Run"], h["Legato-Step"], h["X-Team"]) for h in headers} == {
        ("r1", "send", "data")
    }
    assert {(h["Content-Type"], h["User-Agent"]) for h in headers} == {
        ("application/json", "legato-agent")
    }
    assert all("Legato-Signature" not in h for h in headers)


def test_headers_that_legato_sets_cannot_be_replaced(receiver: Receiver) -> None:
    source = Upstream("totals", {}, None)
    for headers, message in [
        ({"idempotency-key": "mine"}, "is set by Legato"),
        ({"X-Bad": "a\r\nInjected: 1"}, "line break"),
        ({"Bad Name": "x"}, "not a valid header name"),
    ]:
        config = {"url": receiver.url(), "headers": headers}
        with pytest.raises(StepError, match=message):
            export_webhook(config, source, context())
    assert receiver.requests == []


def test_the_signature_verifies_with_the_secret(receiver: Receiver, tmp_path: Path) -> None:
    source = upstream(tmp_path, pa.table({"id": [1, 2, 3]}))
    ctx = context(connections={"alerts-hook": "s3cr3t-key"})
    config = {"url": receiver.url(), "secret": "alerts-hook", "batch_size": 2}
    export_webhook(config, source, ctx)
    assert len(receiver.requests) == 2
    for request in receiver.requests:
        fields = dict(part.split("=", 1) for part in request.headers["Legato-Signature"].split(","))
        assert abs(int(fields["t"]) - time.time()) < 60
        signed = fields["t"].encode() + b"." + request.body
        expected = hmac.new(b"s3cr3t-key", signed, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(fields["v1"], expected)
    assert sign("k", 10, b"{}") == (
        "t=10,v1=" + hmac.new(b"k", b"10.{}", hashlib.sha256).hexdigest()
    )


def test_a_missing_secret_names_the_connection(receiver: Receiver) -> None:
    config = {"url": receiver.url(), "secret": "alerts-hook"}
    with pytest.raises(StepError, match="no connection 'alerts-hook'"):
        export_webhook(config, Upstream("totals", {}, None), context())
    assert receiver.requests == []


def test_a_503_is_retried_with_backoff(
    receiver: Receiver, capsys: pytest.CaptureFixture[str]
) -> None:
    receiver.script(Answer(503, b"busy"), Answer(503, b"busy"))
    waits: list[float] = []
    status = post_json(receiver.url(), b"{}", {}, what="webhook W", sleep=waits.append)
    assert (status, len(receiver.requests), waits) == (200, 3, [0.5, 1.0])
    assert capsys.readouterr().out.splitlines() == [
        "webhook W answered 503: busy; retry in 0.5s (attempt 2 of 5)",
        "webhook W answered 503: busy; retry in 1s (attempt 3 of 5)",
    ]


def test_an_export_retries_a_failed_batch_with_the_same_key(
    receiver: Receiver, sleeps: list[float]
) -> None:
    receiver.script(Answer(502))
    result = export_webhook({"url": receiver.url()}, Upstream("t", {"a": 1}, None), context())
    assert result.written == 1 and len(sleeps) == 1
    assert [r.headers["Idempotency-Key"] for r in receiver.requests] == ["r1:send:0"] * 2
    assert receiver.requests[0].body == receiver.requests[1].body


def test_a_429_waits_as_long_as_retry_after_says_up_to_the_cap(receiver: Receiver) -> None:
    receiver.script(
        Answer(429, headers={"Retry-After": "3"}),
        Answer(429, headers={"Retry-After": "120"}),
        Answer(429, headers={"Retry-After": "Wed, 21 Oct 2026 07:28:00 GMT"}),
    )
    waits: list[float] = []
    post_json(receiver.url(), b"{}", {}, what="webhook W", sleep=waits.append, backoff=0.25)
    assert waits == [3.0, 8.0, 1.0]  # a date is not understood: the backoff is used


def test_backoff_doubles_up_to_its_cap(receiver: Receiver) -> None:
    receiver.script(*[Answer(500)] * 5)
    waits: list[float] = []
    post_json(receiver.url(), b"{}", {}, what="w", sleep=waits.append, attempts=6, max_backoff=3)
    assert waits == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_a_400_fails_at_once_with_the_start_of_the_body(receiver: Receiver) -> None:
    receiver.script(Answer(400, b"invalid payload:\n  field 'x'\tmissing " + b"y" * 5000))
    waits: list[float] = []
    with pytest.raises(StepError) as caught:
        post_json(receiver.url(), b"{}", {}, what="webhook W", sleep=waits.append)
    message = caught.value.message
    assert message.startswith("webhook W answered 400: invalid payload: field 'x' missing yyy")
    assert "\n" not in message and len(message) < 300
    assert (len(receiver.requests), waits) == (1, [])


def test_a_redirect_is_not_followed(receiver: Receiver) -> None:
    receiver.script(Answer(302, headers={"Location": receiver.url("/elsewhere")}))
    with pytest.raises(StepError, match="answered 302, a redirect, which is not followed"):
        post_json(receiver.url(), b"{}", {}, what="webhook W")
    assert [r.path for r in receiver.requests] == ["/hooks/x"]


def test_a_timeout_is_retried(receiver: Receiver) -> None:
    receiver.script(Answer(delay=0.6))
    waits: list[float] = []
    status = post_json(receiver.url(), b"{}", {}, what="w", sleep=waits.append, timeout=0.2)
    assert (status, len(receiver.requests), waits) == (200, 2, [0.5])


def test_a_refused_connection_fails_after_all_attempts(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with socket.socket() as unused:  # bound, not listening: connections are refused
        unused.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{unused.getsockname()[1]}/hooks/x"
        waits: list[float] = []
        with pytest.raises(StepError) as caught:
            post_json(url, b"{}", {}, what="webhook W", sleep=waits.append, attempts=3)
    assert caught.value.message == (
        "webhook W failed after 3 attempts; the last one failed: connection refused"
    )
    assert waits == [0.5, 1.0]
    assert len(capsys.readouterr().out.splitlines()) == 2


def test_a_url_that_is_not_http_is_refused() -> None:
    for url in ["ftp://example.com/x", "example.com/x", "http://exa mple.com/x"]:
        with pytest.raises(StepError, match=r"webhook W (is not an http|has a space)"):
            post_json(url, b"{}", {}, what="webhook W")


def slack_context(receiver: Receiver, **resolved: Any) -> StepContext:
    url = receiver.url("/services/T000/B000/sEcReTpAtH")
    return context(connections={"slack-data-team": url}, resolved=resolved)


def test_slack_posts_the_rendered_text_with_a_preview(receiver: Receiver, tmp_path: Path) -> None:
    table = pa.table({"region": ["eu", "north-america", "<!channel>"], "n": [3, 1205, 7]})
    config = {"webhook": "slack-data-team", "channel": "#data-team", "text": "{{ raw }}"}
    ctx = slack_context(receiver, text="1,215 records loaded")
    result = export_slack(config, upstream(tmp_path, table), ctx)
    [request] = receiver.requests
    assert request.path == "/services/T000/B000/sEcReTpAtH"
    assert (request.headers["Content-Type"], request.headers["User-Agent"]) == (
        "application/json",
        "legato-agent",
    )
    payload = request.json()
    assert payload["channel"] == "#data-team"
    assert payload["text"].splitlines() == [
        "1,215 records loaded",
        "```",
        "region            n",
        "-------------  ----",
        "eu                3",
        "north-america  1205",
        "&lt;!channel&gt;        7",  # shown as <!channel>, aligned
        "```",
    ]
    assert result.values == {"channel": "#data-team", "messages": 1}
    assert (result.written, result.records_in) == (1, 3)


def test_slack_text_falls_back_to_the_spec_then_a_default(
    receiver: Receiver, tmp_path: Path
) -> None:
    big = upstream(tmp_path, pa.table({"id": list(range(11))}))
    export_slack({"webhook": "slack-data-team", "text": "done"}, big, slack_context(receiver))
    export_slack({"webhook": "slack-data-team"}, big, slack_context(receiver, text=""))
    texts = [r.json()["text"] for r in receiver.requests]
    assert texts == ["done", "Pipeline etl, run r1, step send: 11 records from totals"]
    assert all("channel" not in r.json() for r in receiver.requests)


def test_slack_messages_are_capped(receiver: Receiver, tmp_path: Path) -> None:
    table = pa.table({f"c{i}": ["v" * 100] * 10 for i in range(12)})
    ctx = slack_context(receiver, text="x" * 500)
    export_slack({"webhook": "slack-data-team"}, upstream(tmp_path, table), ctx)
    text = receiver.requests[0].json()["text"]
    assert len(text) <= slack_export.MAX_MESSAGE
    assert text.endswith("\n…\n```") and "v" * 31 not in text
    export_slack(
        {"webhook": "slack-data-team"},
        Upstream("t", {}, None),
        slack_context(receiver, text="y" * 10_000),
    )
    assert len(receiver.requests[1].json()["text"]) == slack_export.MAX_MESSAGE


def test_a_slack_failure_never_shows_the_webhook_url(
    receiver: Receiver, sleeps: list[float], capsys: pytest.CaptureFixture[str]
) -> None:
    receiver.script(*[Answer(500, b"error at /services/T000/B000/sEcReTpAtH")] * 5)
    with pytest.raises(StepError) as caught:
        export_slack(
            {"webhook": "slack-data-team"}, Upstream("t", {}, None), slack_context(receiver)
        )
    message = caught.value.message
    assert message.startswith("Slack webhook 'slack-data-team' failed after 5 attempts")
    assert "answered 500" in message
    out = capsys.readouterr().out
    assert len(receiver.requests) == 5 and len(sleeps) == 4
    assert out.count("Slack webhook 'slack-data-team' answered 500") == 4
    for text in (message, out):
        assert "sEcReTpAtH" not in text and "/services/" not in text


def test_a_slack_export_needs_its_webhook_secret(receiver: Receiver) -> None:
    with pytest.raises(StepError, match="no connection 'slack-data-team'"):
        export_slack({"webhook": "slack-data-team"}, Upstream("t", {}, None), context())
    with pytest.raises(StepError, match="without webhook"):
        export_slack({}, Upstream("t", {}, None), context())
