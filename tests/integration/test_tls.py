"""TLS and mTLS end to end: a real `legato server` with --tls-cert/--tls-key (and
--client-ca) driven by the real `legato` CLI, the SDK, real `legato agent` processes and
HTTPS webhooks; the transport settings a server refuses; certificates renewed under a
running server and agent. Certificates come from `legato.devcerts`, made once per module."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from control_plane.triggers.webhooks import signature_header
from legato import Client
from legato.devcerts import CertFiles, create_certs
from legato.errors import RpcError
from legato.v1 import agent_pb2, run_pb2

pytestmark = pytest.mark.timeout(90)

LEGATO = str(Path(sys.executable).with_name("legato"))
HOOK_SECRET = "tls-hook-secret"
HOOKED = """\
name: hooked
triggers:
  - webhook: {secret: hook-key}
steps:
  - {name: a, transform: {code: "result = data"}}
"""
EU_ONLY = """\
name: eu-only
steps:
  - name: greet
    agent_selector: {region: eu}
    transform: {code: "result = {'greeting': 'hello from eu'}"}
"""


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertFiles:
    """One development CA for the module: server, agents a1, a2, ghost, client ci."""
    return create_certs(
        tmp_path_factory.mktemp("certs"), agents=["a1", "a2", "ghost"], clients=["ci"]
    )


@pytest.fixture(scope="module")
def other_certs(tmp_path_factory: pytest.TempPathFactory) -> CertFiles:
    """Another CA, which the servers of these tests do not trust."""
    return create_certs(tmp_path_factory.mktemp("other-certs"), agents=["a1"], clients=["ci"])


# -- processes --------------------------------------------------------------------------


@dataclass
class Server:
    process: subprocess.Popen[str]
    address: str
    http_port: int
    token: str
    events: list[dict[str, Any]] = field(default_factory=list)
    """The server's log, as it goes (read by a thread so its pipe never fills)."""

    def logged(self, event: str) -> list[dict[str, Any]]:
        return [line for line in list(self.events) if line.get("event") == event]


def admin_token(db_url: str) -> str:
    made = cli("tokens", "create", "tls-admin", "--role", "admin", "--db", db_url, "-o", "json")
    assert made.returncode == 0, made.stderr
    secret: str = json.loads(made.stdout)["secret"]
    return secret


@contextlib.contextmanager
def legato_server(db_url: str, *flags: str) -> Iterator[Server]:
    token = admin_token(db_url)
    process = subprocess.Popen(
        [
            LEGATO,
            "server",
            "--listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
            "--db",
            db_url,
            "--log-format",
            "json",
            *flags,
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    events: list[dict[str, Any]] = []
    http_port = 0
    started: dict[str, Any] | None = None
    for line in process.stderr:
        event = _parse(line)
        events.append(event)
        if event.get("event") == "http_listening":
            http_port = int(event["port"])
        if event.get("event") == "server_started":
            started = event
            break
    if started is None:
        process.kill()
        process.wait(timeout=10)
        raise AssertionError(f"the server did not start: {events}")
    drain = threading.Thread(
        target=lambda: events.extend(_parse(line) for line in process.stderr or ()),
        daemon=True,
    )
    drain.start()
    server = Server(process, f"127.0.0.1:{started['port']}", http_port, token, events)
    try:
        yield server
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        drain.join(timeout=5)


def _parse(line: str) -> dict[str, Any]:
    try:
        event = json.loads(line)
    except ValueError:
        return {"event": "text", "text": line}
    return event if isinstance(event, dict) else {"event": "text", "text": line}


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [LEGATO, *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=60,
    )


@dataclass
class Agent:
    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait(self, timeout: float = 30) -> int:
        return self.process.wait(timeout=timeout)


@contextlib.contextmanager
def legato_agents() -> Iterator[Callable[..., Agent]]:
    """Start `legato agent` processes (killed at the end): start(workdir, *flags, token=)."""
    started: list[Agent] = []

    def start(workdir: Path, *flags: str, token: str = "") -> Agent:
        workdir.mkdir(parents=True, exist_ok=True)
        log = workdir / "agent.log"
        env = {**os.environ, "LEGATO_AGENT_TOKEN": token} if token else dict(os.environ)
        with log.open("wb") as out:
            process = subprocess.Popen(
                [
                    LEGATO,
                    "agent",
                    "--workdir",
                    str(workdir / "work"),
                    "--slots",
                    "1",
                    "--grace",
                    "1s",
                    "--log-format",
                    "json",
                    *flags,
                ],
                stdout=out,
                stderr=out,
                env=env,
                start_new_session=True,
            )
        agent = Agent(process, log)
        started.append(agent)
        return agent

    try:
        yield start
    finally:
        for agent in started:
            if agent.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(agent.process.pid, signal.SIGKILL)
                agent.process.wait(timeout=10)


def wait_for(
    condition: Callable[[], bool], what: str | Callable[[], str], timeout: float = 20
) -> None:
    """Poll ``condition``; ``what`` (or what it returns, at the end) says what it was."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    said = what() if callable(what) else what
    raise AssertionError(f"timed out after {timeout}s waiting for {said}")


def agent_tls(certs: CertFiles, name: str, *, ca: Path | None = None) -> list[str]:
    cert, key = certs.agents[name]
    return ["--ca", str(ca or certs.ca), "--cert", str(cert), "--key", str(key)]


def client_tls(certs: CertFiles) -> list[str]:
    cert, key = certs.clients["ci"]
    return ["--ca", str(certs.ca), "--cert", str(cert), "--key", str(key)]


def post_hook(
    port: int, body: bytes, *, ca: Path, signature: str | None = None
) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["Legato-Signature"] = signature
    request = urllib.request.Request(
        f"https://127.0.0.1:{port}/hooks/hooked", data=body, headers=headers
    )
    context = ssl.create_default_context(cafile=str(ca))
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def agent_named(client: Client, name: str) -> agent_pb2.Agent | None:
    return next((a for a in client.list_agents(show_disconnected=True) if a.name == name), None)


def connected(client: Client, name: str) -> bool:
    agent = agent_named(client, name)
    return agent is not None and agent.state == agent_pb2.AGENT_STATE_CONNECTED


# -- TLS --------------------------------------------------------------------------------


def test_a_tls_server_serves_the_cli_the_sdk_and_https_webhooks(
    db_url: str, certs: CertFiles, other_certs: CertFiles, tmp_path: Path
) -> None:
    secrets = tmp_path / "secrets.yaml"
    secrets.write_text(f"hook-key: {HOOK_SECRET}\n")
    spec = tmp_path / "hooked.yaml"
    spec.write_text(HOOKED)
    assert certs.server is not None and certs.server_key is not None
    with legato_server(
        db_url, "--tls-cert", str(certs.server), "--tls-key", str(certs.server_key),
        "--secrets", str(secrets),
    ) as server:  # fmt: skip
        at = ["--server", server.address, "--token", server.token]
        ca = ["--ca", str(certs.ca)]

        applied = cli("apply", "-f", str(spec), *at, *ca)
        assert applied.returncode == 0, applied.stderr
        assert applied.stdout == "pipeline hooked: version 1 (created)\n"
        whoami = cli("whoami", *at, *ca)
        assert (whoami.returncode, whoami.stdout) == (
            0,
            f"tls-admin (token, role admin) on {server.address}\n",
        ), whoami.stderr
        from_env = cli(
            "pipelines",
            env={
                "LEGATO_SERVER": server.address,
                "LEGATO_TOKEN": server.token,
                "LEGATO_CA": str(certs.ca),
            },
        )
        assert from_env.returncode == 0, from_env.stderr
        assert "hooked" in from_env.stdout

        # Plaintext, or a CA that did not sign the server's certificate: refused, and told
        # which flag to fix.
        plain = cli("whoami", *at)
        assert plain.returncode == 1
        assert f"cannot connect to the Legato server at {server.address}" in plain.stderr
        assert "if it serves TLS, give the CA that signed its certificate with --ca" in (
            plain.stderr
        )
        wrong = cli("whoami", *at, "--ca", str(other_certs.ca))
        assert wrong.returncode == 1
        assert "its certificate is not signed by the CA given with --ca" in wrong.stderr

        with Client(server.address, token=server.token, ca=str(certs.ca)) as client:
            assert client.get_caller().name == "tls-admin"
            assert [p.name for p in client.list_pipelines()] == ["hooked"]
            with (
                Client(server.address, token=server.token) as plaintext,
                pytest.raises(RpcError) as refused,
            ):
                plaintext.get_caller()
            assert "--ca" in refused.value.message

            # The webhook listener speaks HTTPS with the same certificate.
            body = b'{"order": 7}'
            status, data = post_hook(server.http_port, body, ca=certs.ca)
            assert (status, data["reason"]) == (401, "SIGNATURE_MISSING"), data
            signature = signature_header(HOOK_SECRET, int(time.time()), body)
            status, data = post_hook(server.http_port, body, ca=certs.ca, signature=signature)
            assert status == 202, data
            assert client.get_run(data["run_id"]).trigger.kind == run_pb2.TRIGGER_KIND_WEBHOOK
            with pytest.raises(urllib.error.URLError) as untrusted:
                post_hook(server.http_port, body, ca=other_certs.ca, signature=signature)
            assert isinstance(untrusted.value.reason, ssl.SSLCertVerificationError)
            with pytest.raises(OSError):
                urllib.request.urlopen(
                    f"http://127.0.0.1:{server.http_port}/hooks/hooked", data=body, timeout=10
                )
            assert len(list(client.list_runs(pipeline="hooked"))) == 1

        # A context keeps the CA and the token; `localhost` is the same server, and its
        # name is in the certificate too.
        port = server.address.rpartition(":")[2]
        made = cli("config", "set-context", "tls", "--server", server.address, *ca,
                   "--token", server.token, "--use")  # fmt: skip
        assert made.returncode == 0, made.stderr
        for args in ([], ["--server", f"localhost:{port}"]):
            through_context = cli("pipelines", *args)
            assert through_context.returncode == 0, through_context.stderr
            assert "hooked" in through_context.stdout


# -- mTLS -------------------------------------------------------------------------------


def test_an_mtls_server_lets_in_only_clients_and_agents_with_the_right_certificate(
    db_url: str, certs: CertFiles, other_certs: CertFiles, tmp_path: Path
) -> None:
    assert certs.server is not None and certs.server_key is not None
    with (
        legato_server(
            db_url, "--tls-cert", str(certs.server), "--tls-key", str(certs.server_key),
            "--client-ca", str(certs.ca),
        ) as server,
        legato_agents() as start_agent,
    ):  # fmt: skip
        at = ["--server", server.address, "--token", server.token]
        enrolled = cli(
            "agents", "token", "create", "--name", "a1", "--labels", "region=eu",
            "--connections", "*", "-o", "json", *at, *client_tls(certs),
        )  # fmt: skip
        assert enrolled.returncode == 0, enrolled.stderr
        a1_token = json.loads(enrolled.stdout)["secret"]
        # Refused agents, started now, checked below: one whose certificate names an agent
        # that is not enrolled, one with a1's token and a2's certificate.
        ghost = start_agent(
            tmp_path / "ghost", "--server", server.address, *agent_tls(certs, "ghost")
        )
        mismatch = start_agent(
            tmp_path / "mismatch",
            "--server",
            server.address,
            *agent_tls(certs, "a2"),
            token=a1_token,
        )
        # Token and certificate naming the same agent: let in.
        matching = start_agent(
            tmp_path / "a1",
            "--server",
            server.address,
            *agent_tls(certs, "a1"),
            token=a1_token,
        )

        no_certificate = cli("whoami", *at, "--ca", str(certs.ca))
        assert no_certificate.returncode == 1
        assert "if it requires client certificates (mTLS), give --cert and --key" in (
            no_certificate.stderr
        )
        cert, key = other_certs.clients["ci"]
        foreign = cli("whoami", *at, "--ca", str(certs.ca), "--cert", str(cert), "--key", str(key))
        assert foreign.returncode == 1
        assert "give --cert and --key" in foreign.stderr
        plain = cli("whoami", *at)
        assert plain.returncode == 1 and "--ca" in plain.stderr

        whoami = cli("whoami", *at, *client_tls(certs))
        assert whoami.returncode == 0, whoami.stderr
        assert whoami.stdout.startswith("tls-admin (token, role admin)")
        cert, key = certs.clients["ci"]
        from_env = cli(
            "pipelines",
            env={
                "LEGATO_SERVER": server.address,
                "LEGATO_TOKEN": server.token,
                "LEGATO_CA": str(certs.ca),
                "LEGATO_CERT": str(cert),
                "LEGATO_KEY": str(key),
            },
        )
        assert from_env.returncode == 0, from_env.stderr

        sdk = Client(
            server.address, token=server.token, ca=str(certs.ca), cert=str(cert), key=str(key)
        )
        with sdk:
            assert sdk.get_caller().name == "tls-admin"
            wait_for(lambda: connected(sdk, "a1"), lambda: f"a1 to connect: {matching.output()}")
            a1 = agent_named(sdk, "a1")
            assert a1 is not None and a1.credential.startswith("token ")
            assert dict(a1.labels) == {"region": "eu"}
        with (
            Client(server.address, token=server.token, ca=str(certs.ca)) as uncertified,
            pytest.raises(RpcError) as refused,
        ):
            uncertified.get_caller()
        assert "--cert and --key" in refused.value.message
        # Webhook senders present no certificate: the HTTPS listener does not ask for one.
        status, data = post_hook(server.http_port, b"{}", ca=certs.ca)
        assert (status, data["reason"]) == (404, "WEBHOOK_NOT_FOUND"), data

        assert ghost.wait() == 3, ghost.output()
        assert "the client certificate names agent 'ghost', which is not enrolled" in (
            ghost.output()
        )
        assert "(AGENT_NOT_ENROLLED)" in ghost.output()
        assert mismatch.wait() == 3, mismatch.output()
        assert "(AGENT_IDENTITY_MISMATCH)" in mismatch.output()
        assert "the enrolment token is for agent 'a1' but the client certificate names agent " \
            "'a2'" in mismatch.output()  # fmt: skip


@pytest.mark.timeout(120)
def test_an_agent_proven_by_its_certificate_alone_runs_steps_until_its_enrolment_is_revoked(
    db_url: str, certs: CertFiles, tmp_path: Path
) -> None:
    spec = tmp_path / "eu-only.yaml"
    spec.write_text(EU_ONLY)
    assert certs.server is not None and certs.server_key is not None
    with (
        legato_server(
            db_url, "--tls-cert", str(certs.server), "--tls-key", str(certs.server_key),
            "--client-ca", str(certs.ca),
        ) as server,
        legato_agents() as start_agent,
    ):  # fmt: skip
        at = ["--server", server.address, "--token", server.token, *client_tls(certs)]
        enrolled = cli(
            "agents", "token", "create", "--name", "a1", "--labels", "region=eu",
            "--connections", "*", "-o", "json", *at,
        )  # fmt: skip
        assert enrolled.returncode == 0, enrolled.stderr
        enrolment = json.loads(enrolled.stdout)["token"]["id"]
        assert cli("apply", "-f", str(spec), *at).returncode == 0

        # No token: the certificate names a1, which is enrolled.
        agent = start_agent(tmp_path / "a1", "--server", server.address, *agent_tls(certs, "a1"))
        cert, key = certs.clients["ci"]
        with Client(
            server.address, token=server.token, ca=str(certs.ca), cert=str(cert), key=str(key)
        ) as client:
            wait_for(
                lambda: connected(client, "a1"), lambda: f"agent a1 to connect: {agent.output()}"
            )
            listed = cli("agents", "-o", "json", *at)
            assert listed.returncode == 0, listed.stderr
            (a1,) = json.loads(listed.stdout)["agents"]
            assert (a1["name"], a1["labels"], a1["state"]) == (
                "a1",
                {"region": "eu"},
                "AGENT_STATE_CONNECTED",
            )
            assert a1["credential"] == "certificate a1"

            ran = cli("run", "eu-only", "--follow", "-o", "json", *at)
            assert ran.returncode == 0, ran.stderr + agent.output()
            run = json.loads(ran.stdout)["run"]
            assert run["status"] == "RUN_STATUS_SUCCEEDED"
            (step,) = run["steps"]
            assert (step["status"], step["attempts"][0]["agent"]) == ("STEP_STATUS_SUCCEEDED", "a1")

            # Revoking the enrolment cuts the certificate-only agent off too.
            revoked_at = time.monotonic()
            revoked = cli("agents", "token", "revoke", enrolment, *at)
            assert revoked.returncode == 0, revoked.stderr
            assert agent.wait(timeout=20) == 3, agent.output()
            assert time.monotonic() - revoked_at < 15
            assert "(TOKEN_REVOKED)" in agent.output()
            assert "agent 'a1' (certificate a1) was revoked" in agent.output()
            wait_for(lambda: not connected(client, "a1"), "a1 to be shown disconnected")


# -- refused settings -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["--listen", "0.0.0.0:0"],
            "refusing to serve --listen 0.0.0.0:0 without TLS: tokens and step code would cross "
            "the network in plaintext. Give --tls-cert and --tls-key (`legato certs create` "
            "makes development ones), or --insecure if TLS ends in front of the server",
        ),
        (
            ["--http-listen", "0.0.0.0:0"],
            "refusing to serve --http-listen 0.0.0.0:0 without TLS",
        ),
        (
            ["--auth", "none", "--listen", "0.0.0.0:0", "--insecure"],
            "--auth none serves everyone without a credential, so it is only allowed on a "
            "loopback address; --listen is 0.0.0.0:0",
        ),
        (["--client-ca", "ca.pem"], "--client-ca needs TLS: give --tls-cert and --tls-key too"),
    ],
)
def test_unsafe_transports_stop_the_server_at_once(
    tmp_path: Path, flags: list[str], message: str
) -> None:
    started = time.monotonic()
    refused = subprocess.run(
        [LEGATO, "server", "--db", f"sqlite:///{tmp_path}/legato.db", *flags],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
    )
    assert refused.returncode == 2
    assert message in refused.stderr
    assert "Traceback" not in refused.stderr
    assert time.monotonic() - started < 10
    assert not (tmp_path / "legato.db").exists()  # nothing was opened


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_insecure_lets_a_server_listen_on_every_interface_without_tls(db_url: str) -> None:
    with (
        legato_server(db_url, "--listen", "0.0.0.0:0", "--insecure") as server,
        Client(server.address, token=server.token) as client,
    ):
        (started,) = server.logged("server_started")
        assert (started["listen"], started["tls"]) == ("0.0.0.0:0", "off")
        assert client.get_caller().name == "tls-admin"


def test_unusable_pem_files_are_named_by_the_server_and_the_agent(
    certs: CertFiles, tmp_path: Path
) -> None:
    assert certs.server is not None and certs.server_key is not None
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("this is not PEM\n")
    a1_cert = certs.agents["a1"][0]
    with legato_agents() as start_agent:
        not_pem = start_agent(tmp_path / "x", "--server", "127.0.0.1:1", "--ca", str(garbage))
        wrong_key = start_agent(
            tmp_path / "y",
            "--server",
            "127.0.0.1:1",
            "--ca",
            str(certs.ca),
            "--cert",
            str(a1_cert),
            "--key",
            str(certs.server_key),
        )
        missing = start_agent(
            tmp_path / "z", "--server", "127.0.0.1:1", "--ca", str(tmp_path / "nosuch.pem")
        )
        server = subprocess.run(
            [
                LEGATO, "server", "--db", f"sqlite:///{tmp_path}/legato.db", "--listen",
                "127.0.0.1:0", "--http-listen", "off", "--tls-cert", str(a1_cert),
                "--tls-key", str(certs.server_key), "--log-format", "json",
            ],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert server.returncode == 1
        assert f"legato server: --tls-key {certs.server_key} is not the private key of " \
            f"--tls-cert {a1_cert}" in server.stderr  # fmt: skip
        for agent, message in (
            (not_pem, f"legato agent: --ca {garbage}: not a PEM certificate"),
            (wrong_key, f"--key {certs.server_key} is not the private key of --cert {a1_cert}"),
            (missing, f"legato agent: --ca '{tmp_path / 'nosuch.pem'}': no such file"),
        ):
            assert agent.wait() == 2, agent.output()
            assert message in agent.output()
            assert "Traceback" not in agent.output()


# -- renewal ----------------------------------------------------------------------------


def replace_file(source: Path, target: Path) -> None:
    """Put ``source``'s bytes at ``target`` atomically, as a secret update would."""
    partial = target.with_name(target.name + ".new")
    shutil.copyfile(source, partial)
    os.replace(partial, target)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_renewed_server_certificate_is_served_without_a_restart(
    db_url: str, certs: CertFiles, other_certs: CertFiles, tmp_path: Path
) -> None:
    assert certs.server is not None and certs.server_key is not None
    assert other_certs.server is not None and other_certs.server_key is not None
    live_cert, live_key = tmp_path / "server.pem", tmp_path / "server.key"
    shutil.copyfile(certs.server, live_cert)
    shutil.copyfile(certs.server_key, live_key)
    with legato_server(db_url, "--tls-cert", str(live_cert), "--tls-key", str(live_key)) as server:

        def caller(ca: Path) -> str:
            with Client(server.address, token=server.token, ca=str(ca)) as client:
                try:
                    return client.get_caller().name
                except RpcError as error:
                    return error.message

        assert caller(certs.ca) == "tls-admin"
        # Renewed (here: by another CA, so the tests can tell which one is served).
        replace_file(other_certs.server_key, live_key)
        replace_file(other_certs.server, live_cert)
        assert caller(other_certs.ca) == "tls-admin"
        assert "is not signed by the CA given with --ca" in caller(certs.ca)
        status, _ = post_hook(server.http_port, b"{}", ca=other_certs.ca)
        assert status == 404  # served, with the renewed certificate (no such webhook)
        with pytest.raises(urllib.error.URLError):
            post_hook(server.http_port, b"{}", ca=certs.ca)
        # The log is read by a thread: give it a moment to catch up.
        wait_for(
            lambda: {e["listener"] for e in server.logged("tls_renewed")} == {"grpc", "http"},
            lambda: f"both listeners to log the renewal: {server.events}",
        )

        # Half a renewal (a key that is not the certificate's) is skipped: the last good
        # pair is still served.
        replace_file(certs.server_key, live_key)
        assert caller(other_certs.ca) == "tls-admin"
        status, _ = post_hook(server.http_port, b"{}", ca=other_certs.ca)
        assert status == 404
        wait_for(lambda: bool(server.logged("tls_renewal_skipped")), "the skip to be logged")
        assert (
            "is not the private key of --tls-cert"
            in (server.logged("tls_renewal_skipped")[0]["error"])
        )
        replace_file(certs.server, live_cert)
        assert caller(certs.ca) == "tls-admin"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_an_agent_dials_again_with_renewed_files(
    db_url: str, certs: CertFiles, other_certs: CertFiles, tmp_path: Path
) -> None:
    assert certs.server is not None and certs.server_key is not None
    trust = tmp_path / "trust.pem"
    shutil.copyfile(other_certs.ca, trust)  # not the CA that signed the server's certificate
    with (
        legato_server(
            db_url, "--tls-cert", str(certs.server), "--tls-key", str(certs.server_key),
            "--client-ca", str(certs.ca),
        ) as server,
        legato_agents() as start_agent,
    ):  # fmt: skip
        cert, key = certs.clients["ci"]
        with Client(
            server.address, token=server.token, ca=str(certs.ca), cert=str(cert), key=str(key)
        ) as client:
            client.create_agent_token("a1", labels={"region": "eu"})
            agent = start_agent(
                tmp_path / "a1", "--server", server.address, *agent_tls(certs, "a1", ca=trust)
            )
            wait_for(
                lambda: "CERTIFICATE_VERIFY_FAILED" in agent.output(),
                "the agent to fail its handshakes",
            )
            assert not connected(client, "a1")
            replace_file(certs.ca, trust)
            wait_for(lambda: connected(client, "a1"), lambda: f"a1 to connect: {agent.output()}")
            assert agent.process.poll() is None
            assert '"event": "tls_renewed"' in agent.output()
