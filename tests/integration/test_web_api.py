"""The browser-facing API on the HTTP listener, against a real control plane on SQLite and
PostgreSQL, spoken as a browser speaks it (plain HTTP/1.1 from this test): Connect calls
reach the same servicers through the same access rules as gRPC; the session cookie comes
from a pasted token or a one-time sign-in link, is refused to other sites, and ends on
sign-out or when its token is revoked; editors' ``ValidatePipeline(source)`` places
problems at their lines; the bundle is served with a fallback for the UI's own routes."""

from __future__ import annotations

import http.client
import json
import struct
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from legato.errors import RpcError
from legato.spec import load_spec_text
from legato.testing import LocalControlPlane
from legato.v1 import run_pb2

pytestmark = pytest.mark.timeout(90)

API = "/api/legato.v1."
CONNECT = {"Content-Type": "application/json", "Connect-Protocol-Version": "1"}
PIPELINE = """\
name: web-etl
params:
  day:
    type: string
    default: "2026-12-01"
steps:
  - name: extract
    transform: {code: "result = {'rows': 3}"}
  - name: load
    needs: [extract]
    transform: {code: "result = inputs['extract']"}
"""


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> dict[str, object]:
        value = json.loads(self.body)
        assert isinstance(value, dict)
        return value

    @property
    def reason(self) -> str:
        """The ErrorInfo reason of a Connect error."""
        for detail in self.json().get("details", []):  # type: ignore[attr-defined]
            if detail["type"] == "google.rpc.ErrorInfo":
                return str(detail["debug"]["reason"])
        return ""


@dataclass
class Browser:
    """An HTTP client with one cookie jar, that never follows redirects."""

    address: str
    cookies: dict[str, str] = field(default_factory=dict)

    def request(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> Reply:
        host, port = self.address.rsplit(":", 1)
        connection = http.client.HTTPConnection(host, int(port), timeout=30)
        sent = dict(headers or {})
        if self.cookies:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        try:
            connection.request(method, path, body=body or None, headers=sent)
            response = connection.getresponse()
            reply = Reply(response.status, response.headers, response.read())
        finally:
            connection.close()
        for header in reply.headers.get_all("Set-Cookie") or []:
            name, _, rest = header.partition("=")
            value = rest.split(";", 1)[0]
            if "Max-Age=0" in header or not value or value == '""':
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = value
        return reply

    def call(
        self, method: str, message: dict[str, object], headers: dict[str, str] | None = None
    ) -> Reply:
        return self.request(
            "POST", API + method, json.dumps(message).encode(), {**CONNECT, **(headers or {})}
        )

    def sign_in(self, token: str) -> Reply:
        return self.request(
            "POST",
            "/ui/session",
            json.dumps({"token": token}).encode(),
            {"Content-Type": "application/json"},
        )


@pytest.fixture
def plane(db_url: str) -> Iterator[LocalControlPlane]:
    with LocalControlPlane(db=db_url) as running:
        yield running


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_connect_calls_reach_the_servicers_with_the_same_rules(plane: LocalControlPlane) -> None:
    web = Browser(plane.http_address)
    viewer, editor = plane.token("viewer"), plane.token("editor")

    anonymous = web.call("AccessService/GetCaller", {})
    assert anonymous.status == 401 and anonymous.json()["code"] == "unauthenticated"
    assert anonymous.reason == "CREDENTIAL_MISSING"

    me = web.call("AccessService/GetCaller", {}, bearer(viewer)).json()
    assert (me["name"], me["role"]) == ("tester-viewer", "ROLE_VIEWER")

    spec = {"name": "web-etl", "steps": [{"name": "a", "transform": {"code": "result = 1"}}]}
    refused = web.call("PipelineService/ApplyPipeline", {"spec": spec}, bearer(viewer))
    assert refused.status == 403 and refused.reason == "ROLE_REQUIRED"
    assert "needs the editor role" in str(refused.json()["message"])

    applied = web.call(
        "PipelineService/ApplyPipeline",
        {"spec": spec, "message": "from the browser", "requestId": "web-1"},
        bearer(editor),
    )
    assert applied.status == 200, applied.body
    assert applied.json()["version"]["number"] == 1  # type: ignore[index]
    # The same activity log as gRPC calls: the refusal and the success, with their ids.
    actions = [
        (e.actor, e.action, e.outcome) for e in plane.client().list_audit_events(pipeline="web-etl")
    ]
    assert ("tester-editor", "ApplyPipeline", 1) in actions
    assert ("tester-viewer", "ApplyPipeline", 2) in actions

    missing = web.call("RunService/GetRun", {"id": "nope"}, bearer(viewer))
    assert (missing.status, missing.json()["code"], missing.reason) == (
        404,
        "not_found",
        "RUN_NOT_FOUND",
    )
    bad_json = web.request("POST", API + "RunService/GetRun", b"{nope", CONNECT | bearer(viewer))
    assert bad_json.status == 400 and bad_json.json()["code"] == "invalid_argument"
    unknown = web.call("RunService/Nope", {}, bearer(viewer))
    assert unknown.status == 501 and "no RPC" in str(unknown.json()["message"])
    agents_only = web.call("AgentService/Connect", {}, bearer(viewer))
    assert agents_only.status == 501 and "gRPC" in str(agents_only.json()["message"])
    form = web.request(
        "POST", API + "RunService/GetRun", b"id=x", {"Content-Type": "text/plain", **bearer(viewer)}
    )
    assert form.status == 415
    huge = web.request(
        "POST", API + "RunService/GetRun", b" " * (5 << 20), CONNECT | bearer(viewer)
    )
    assert huge.status == 429 and huge.json()["code"] == "resource_exhausted"


def test_watch_run_streams_over_connect_until_the_run_ends(plane: LocalControlPlane) -> None:
    admin = plane.client()
    admin.apply_pipeline(load_spec_text(PIPELINE).spec)
    run_id = admin.trigger_run("web-etl").run.id  # no agent: it waits
    message = json.dumps({"id": run_id}).encode()
    host, port = plane.http_address.rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    connection.request(
        "POST",
        API + "RunService/WatchRun",
        body=struct.pack(">BI", 0, len(message)) + message,
        headers={"Content-Type": "application/connect+json", **bearer(plane.token("viewer"))},
    )
    response = connection.getresponse()
    assert response.status == 200
    assert response.getheader("Content-Type") == "application/connect+json"

    def envelope() -> tuple[int, dict[str, object]]:
        flags, length = struct.unpack(">BI", response.read(5))
        return flags, json.loads(response.read(length))

    flags, first = envelope()
    assert flags == 0 and first["run"]["id"] == run_id  # type: ignore[index]
    admin.cancel_run(run_id, reason="seen enough")
    statuses = []
    while True:
        flags, item = envelope()
        if flags & 0x02:
            assert item == {}  # the stream ended without an error
            break
        if "run" in item:
            statuses.append(item["run"]["status"])  # type: ignore[index]
    connection.close()
    assert statuses[-1] == run_pb2.RunStatus.Name(run_pb2.RUN_STATUS_CANCELLED)


def test_a_pasted_token_opens_a_session_that_other_sites_cannot_use(
    plane: LocalControlPlane,
) -> None:
    web = Browser(plane.http_address)
    viewer = plane.token("viewer")
    bad = web.sign_in("lgt_aaaaaaaaaaaaaaaa_" + "a" * 43)
    assert bad.status == 401 and bad.json()["reason"] == "INVALID_TOKEN"
    pasted_wrong = web.sign_in("my password")
    assert pasted_wrong.status == 401 and "not a Legato API token" in str(
        pasted_wrong.json()["error"]
    )
    agent = web.sign_in(plane.agent_token("a1"))
    assert agent.status == 403 and agent.json()["reason"] == "AGENT_TOKEN_NOT_ALLOWED"
    form = web.request("POST", "/ui/session", b"token=x", {"Content-Type": "text/plain"})
    assert form.status == 403 and form.json()["reason"] == "CROSS_SITE_REQUEST"
    assert web.cookies == {}

    signed = web.sign_in(viewer)
    assert signed.status == 200 and signed.json() == {"name": "tester-viewer", "role": "viewer"}
    cookie = signed.headers["Set-Cookie"]
    for attribute in ("HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"):
        assert attribute in cookie, cookie
    assert web.cookies["legato_session"].startswith("lgs_")

    me = web.call("AccessService/GetCaller", {})
    assert me.status == 200 and me.json()["name"] == "tester-viewer"
    # A request the UI did not make: no Connect header, another origin, another site.
    for headers in (
        {"Content-Type": "application/json"},
        {**CONNECT, "Origin": "https://evil.example"},
        {**CONNECT, "Sec-Fetch-Site": "cross-site"},
    ):
        refused = web.request("POST", API + "AccessService/GetCaller", b"{}", headers)
        assert refused.status == 403 and "session cookie was refused" in str(
            refused.json()["message"]
        ), headers
    same = web.request(
        "POST",
        API + "AccessService/GetCaller",
        b"{}",
        {**CONNECT, "Origin": f"http://{plane.http_address}", "Sec-Fetch-Site": "same-origin"},
    )
    assert same.status == 200
    # The viewer's session is a viewer: the API refuses what the UI would not show.
    run = web.call("RunService/TriggerRun", {"pipeline": "web-etl", "requestId": "r1"})
    assert run.status == 403 and run.reason == "ROLE_REQUIRED"

    secret = web.cookies["legato_session"]
    signed_out = web.request("POST", "/ui/signout", b"{}", {"Content-Type": "application/json"})
    assert signed_out.status == 204
    assert web.cookies == {}
    web.cookies["legato_session"] = secret  # a copy kept from before
    ended = web.call("AccessService/GetCaller", {})
    assert ended.status == 401 and ended.reason == "SESSION_ENDED"
    actions = [(e.actor, e.action) for e in plane.client().list_audit_events()]
    assert ("tester-viewer", "SignIn") in actions and ("tester-viewer", "SignOut") in actions


def test_a_sign_in_link_works_once_and_revoking_its_token_ends_the_session(
    plane: LocalControlPlane,
) -> None:
    operator = plane.client(role="operator")
    link = operator.create_sign_in_link(next_path="/runs?status=failed")
    url = urllib.parse.urlsplit(link.url)
    assert url.netloc == plane.http_address and url.path == "/ui/signin"
    web = Browser(plane.http_address)
    opened = web.request("GET", f"{url.path}?{url.query}")
    assert opened.status == 303 and opened.headers["Location"] == "/runs?status=failed"
    assert opened.headers["Referrer-Policy"] == "no-referrer"
    me = web.call("AccessService/GetCaller", {}).json()
    assert (me["name"], me["role"]) == ("tester-operator", "ROLE_OPERATOR")

    again = Browser(plane.http_address).request("GET", f"{url.path}?{url.query}")
    assert again.status == 303
    location = urllib.parse.urlsplit(again.headers["Location"])
    assert location.path == "/signin"
    assert "used already" in urllib.parse.parse_qs(location.query)["error"][0]
    forged = Browser(plane.http_address).request("GET", "/ui/signin?code=lgc_x")
    assert forged.status == 303 and forged.headers["Location"].startswith("/signin?error=")

    with pytest.raises(RpcError, match="next_path must be a path of the web UI"):
        operator.create_sign_in_link(next_path="//evil.example/")

    plane.client().revoke_token("tester-operator")
    revoked = web.call("AccessService/GetCaller", {})
    assert revoked.status == 401 and revoked.reason == "TOKEN_REVOKED"


def test_the_editor_sees_each_problem_at_its_line_and_versions_come_back_as_yaml(
    plane: LocalControlPlane,
) -> None:
    web = Browser(plane.http_address)
    token = bearer(plane.token("viewer"))

    def problems(source: str) -> list[tuple[int, str, str]]:
        reply = web.call("PipelineService/ValidatePipeline", {"source": source}, token)
        assert reply.status == 200, reply.body
        return [
            (int(p.get("line", 0)), str(p.get("field", "")), str(p["message"]))
            for p in reply.json().get("problems", [])  # type: ignore[attr-defined]
        ]

    assert problems(PIPELINE) == []
    typo = PIPELINE.replace("needs: [extract]", "needs: [extrac]")
    ((line, path, message),) = problems(typo)
    assert (line, path) == (10, "steps[1].needs[0]") and "did you mean 'extract'" in message
    unknown = PIPELINE.replace(
        "    transform: {code: \"result = {'rows': 3}\"}", "    transfrom: {}"
    )
    (found,) = problems(unknown)
    assert found[0] == 8 and "transfrom" in found[2]
    ((syntax_line, _, _),) = problems(PIPELINE + "  - name: [unclosed\n")
    assert syntax_line >= 12
    # What could be read comes back for the DAG preview, problems or not.
    partial = web.call("PipelineService/ValidatePipeline", {"source": typo}, token).json()
    assert [s["name"] for s in partial["spec"]["steps"]] == ["extract", "load"]  # type: ignore[index]

    admin = plane.client()
    admin.apply_pipeline(load_spec_text(PIPELINE).spec, message="first")
    version = web.call(
        "PipelineService/GetPipelineVersion", {"pipeline": "web-etl", "version": 1}, token
    ).json()
    stored = admin.get_pipeline_version("web-etl", 1).spec
    assert load_spec_text(str(version["yaml"])).spec == stored


def test_the_bundle_is_served_with_a_fallback_for_the_ui_routes(plane: LocalControlPlane) -> None:
    web = Browser(plane.http_address)
    for path in ("/", "/pipelines/web-etl", "/runs/abc?status=failed"):
        page = web.request("GET", path)
        assert page.status == 200, path
        assert page.headers["Content-Type"].startswith("text/html")
        assert b'<div id="root">' in page.body
        assert "default-src 'self'" in page.headers["Content-Security-Policy"]
        assert page.headers["Cache-Control"] == "no-cache"
    script = next(
        part.split('"', 1)[0]
        for part in page.body.decode().split('src="')[1:]
        if part.startswith("/assets/")
    )
    asset = web.request("GET", script)
    assert asset.status == 200 and "javascript" in asset.headers["Content-Type"]
    assert "immutable" in asset.headers["Cache-Control"]
    for escape in ("/assets/../../app.py", "/assets/%2e%2e/%2e%2e/app.py", "/assets/nope.js"):
        assert web.request("GET", escape).status == 404, escape


def test_with_auth_off_the_ui_needs_no_sign_in(tmp_path: Path) -> None:
    with LocalControlPlane(db=f"sqlite:///{tmp_path / 'open.db'}", auth="none") as plane:
        web = Browser(plane.http_address)
        me = web.call("AccessService/GetCaller", {})
        assert me.status == 200 and me.json()["role"] == "ROLE_ADMIN"
        link = web.call("AccessService/CreateSignInLink", {})
        assert link.status == 400 and link.reason == "AUTH_OFF"
        assert web.sign_in("lgt_x").json()["reason"] == "AUTH_OFF"
