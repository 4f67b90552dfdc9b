"""The images, as far as they can be tried without a container engine: the package is built
from exactly the build context the Dockerfile's ignore file leaves, installed as each
build stage installs it (``pip install ".[server]"`` / ``".[agent]"`` into a fresh
virtualenv, by scripts/check-deploy), and each target's ENTRYPOINT + CMD is started with
the target's ENV (its paths moved under a temporary folder). Then its HEALTHCHECK command,
``legato-healthcheck`` from deploy/docker/healthcheck.py run by that virtualenv's Python,
must say healthy while the process serves and unhealthy once it stops — in plaintext, over
TLS, and under mTLS, with authentication on. The agent runs from a virtualenv holding only
the agent extra, so an import of a server-only package would fail here as in the image.

Run by scripts/check-deploy, which sets LEGATO_DEPLOY_SERVER_VENV and LEGATO_DEPLOY_AGENT_VENV."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import dockerfile

# Each test starts real processes (a first start imports pandas and pyarrow from a fresh
# virtualenv), on a machine other tests share: more than the suite's 60 s default.
pytestmark = pytest.mark.timeout(300)

HEALTHCHECK = Path(__file__).resolve().parents[1] / "docker" / "healthcheck.py"
IMAGE_STATE = "/var/lib/legato"


def _venv(variable: str) -> Path:
    value = os.environ.get(variable, "")
    if not value or not (Path(value) / "bin" / "legato").exists():
        pytest.fail(
            f"{variable} does not name a virtualenv with legato installed: these tests run "
            "from scripts/check-deploy, which builds one per image"
        )
    return Path(value)


@pytest.fixture(scope="module")
def server_venv() -> Path:
    return _venv("LEGATO_DEPLOY_SERVER_VENV")


@pytest.fixture(scope="module")
def agent_venv() -> Path:
    return _venv("LEGATO_DEPLOY_AGENT_VENV")


@pytest.fixture(scope="module")
def image() -> dockerfile.Dockerfile:
    return dockerfile.load()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def image_env(image: dockerfile.Dockerfile, target: str, state: Path) -> dict[str, str]:
    """The target's ENV with its paths under ``state`` instead of /var/lib/legato."""
    env = {
        key: value.replace(IMAGE_STATE, str(state))
        for key, value in image.env(target).items()
        if key not in ("PATH", "HOME")
    }
    return {**os.environ, **env, "HOME": str(state)}


@dataclass
class Process:
    venv: Path
    argv: list[str]
    env: dict[str, str]
    log: Path
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> Process:
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(
                [str(self.venv / "bin" / self.argv[0]), *self.argv[1:]],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.env["HOME"],
            )
        return self

    def stop(self, timeout: float = 30) -> int:
        assert self.popen is not None
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
            raise AssertionError(f"{self.argv} did not stop in {timeout}s: {self.tail()}") from None

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


def healthcheck(venv: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(venv / "bin" / "python"), str(HEALTHCHECK), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )


def wait_healthy(
    venv: Path, env: dict[str, str], args: list[str], process: Process, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    deadline = time.monotonic() + timeout
    while True:
        result = healthcheck(venv, env, *args)
        if result.returncode == 0:
            return result
        assert process.popen is not None
        if process.popen.poll() is not None:
            raise AssertionError(
                f"{process.argv} exited {process.popen.returncode}: {process.tail()}"
            )
        if time.monotonic() > deadline:
            raise AssertionError(
                f"legato-healthcheck {args} still unhealthy after {timeout}s: "
                f"{result.stderr}{result.stdout}\n{process.tail()}"
            )
        time.sleep(0.5)


def entrypoint(image: dockerfile.Dockerfile, target: str) -> list[str]:
    """ENTRYPOINT + CMD without tini (PID 1 in the image, not needed here)."""
    argv = image.last_json(target, "ENTRYPOINT") + image.last_json(target, "CMD")
    assert argv[:2] == ["tini", "--"], f"the {target} image should run legato under tini: {argv}"
    return argv[2:]


def health_args(image: dockerfile.Dockerfile, target: str) -> list[str]:
    command = image.last_json(target, "HEALTHCHECK")
    assert command[:1] == ["legato-healthcheck"], command
    return command[1:]


@pytest.fixture
def state(tmp_path: Path) -> Path:
    path = tmp_path / "state"
    (path / "work").mkdir(parents=True)
    return path


def make_certs(venv: Path, where: Path) -> Path:
    subprocess.run(
        [
            str(venv / "bin" / "legato"),
            "certs",
            "create",
            "--dir",
            str(where),
            "--host",
            "legato-server",
            "--agent",
            "eu-1",
            "--client",
            "healthcheck",
        ],
        check=True,
        capture_output=True,
    )
    return where


def cli(venv: Path, env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [str(venv / "bin" / "legato"), *args], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, f"legato {' '.join(args)}: {result.stderr}"
    return result.stdout.strip()


def test_the_server_image_refuses_to_listen_beyond_loopback_without_tls(
    image: dockerfile.Dockerfile, server_venv: Path, state: Path
) -> None:
    env = image_env(image, "server", state)
    assert env["LEGATO_SERVER_LISTEN"].startswith("0.0.0.0:")
    result = subprocess.run(
        [
            str(server_venv / "bin" / entrypoint(image, "server")[0]),
            *entrypoint(image, "server")[1:],
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=state,
    )
    assert result.returncode == 2, result.stderr
    assert "TLS" in result.stderr and "--insecure" in result.stderr, result.stderr


def test_the_server_image_starts_and_its_healthcheck_follows_it(
    image: dockerfile.Dockerfile, server_venv: Path, state: Path
) -> None:
    grpc_port, http_port = free_port(), free_port()
    env = {
        **image_env(image, "server", state),
        "LEGATO_SERVER_LISTEN": f"127.0.0.1:{grpc_port}",
        "LEGATO_SERVER_HTTP_LISTEN": f"127.0.0.1:{http_port}",
    }
    server = Process(server_venv, entrypoint(image, "server"), env, state / "server.log").start()
    try:
        healthy = wait_healthy(server_venv, env, health_args(image, "server"), server)
        assert f"grpc://127.0.0.1:{grpc_port} is SERVING" in healthy.stdout
        assert f"http://127.0.0.1:{http_port}/metrics answered 401" in healthy.stdout
        assert (state / "legato.db").exists(), "the image's default database is under its state"

        # With an API token the HTTP check also proves the database answers.
        db = env["LEGATO_SERVER_DB"]
        token = cli(
            server_venv, env, "tokens", "create", "probe", "--role", "viewer", "--db", db, "-q"
        )
        (state / "probe.token").write_text(token + "\n")
        with_token = {**env, "LEGATO_HEALTHCHECK_TOKEN_FILE": str(state / "probe.token")}
        deep = healthcheck(server_venv, with_token, *health_args(image, "server"))
        assert deep.returncode == 0, deep.stderr
        assert "answered 200 and the database is up" in deep.stdout
        (state / "bad.token").write_text("lgt_0000000000000000_nope\n")
        bad = healthcheck(
            server_venv,
            {**env, "LEGATO_HEALTHCHECK_TOKEN_FILE": str(state / "bad.token")},
            *health_args(image, "server"),
        )
        assert bad.returncode == 1
        assert "answered 401" in bad.stderr, bad.stderr
    finally:
        assert server.stop() == 0, server.tail()
    stopped = healthcheck(server_venv, env, *health_args(image, "server"))
    assert stopped.returncode == 1
    assert f"127.0.0.1:{grpc_port} failed: UNAVAILABLE" in stopped.stderr, stopped.stderr


def test_the_healthcheck_works_over_tls_and_mtls_with_authentication_on(
    image: dockerfile.Dockerfile, server_venv: Path, state: Path
) -> None:
    certs = make_certs(server_venv, state / "tls")
    grpc_port, http_port = free_port(), free_port()
    env = {
        **image_env(image, "server", state),
        "LEGATO_SERVER_LISTEN": f"127.0.0.1:{grpc_port}",
        "LEGATO_SERVER_HTTP_LISTEN": f"127.0.0.1:{http_port}",
        "LEGATO_SERVER_TLS_CERT": str(certs / "server.pem"),
        "LEGATO_SERVER_TLS_KEY": str(certs / "server.key"),
        "LEGATO_SERVER_CLIENT_CA": str(certs / "ca.pem"),
    }
    server = Process(server_venv, entrypoint(image, "server"), env, state / "server.log").start()
    try:
        # mTLS and no client certificate for the check: gRPC is skipped, HTTPS must do.
        result = wait_healthy(server_venv, env, health_args(image, "server"), server)
        assert f"https://127.0.0.1:{http_port}/metrics answered 401" in result.stdout
        assert "gRPC skipped: the server requires client certificates" in result.stdout

        with_cert = {
            **env,
            "LEGATO_HEALTHCHECK_CERT": str(certs / "client-healthcheck.pem"),
            "LEGATO_HEALTHCHECK_KEY": str(certs / "client-healthcheck.key"),
        }
        result = healthcheck(server_venv, with_cert, *health_args(image, "server"))
        assert result.returncode == 0, result.stderr
        assert f"grpcs://127.0.0.1:{grpc_port} is SERVING" in result.stdout

        # A certificate the server's CA did not sign is refused: the check fails.
        other = make_certs(server_venv, state / "other-ca")
        wrong = {
            **env,
            "LEGATO_HEALTHCHECK_CERT": str(other / "client-healthcheck.pem"),
            "LEGATO_HEALTHCHECK_KEY": str(other / "client-healthcheck.key"),
        }
        result = healthcheck(server_venv, wrong, *health_args(image, "server"))
        assert result.returncode == 1
        assert "gRPC health check of grpcs://" in result.stderr, result.stderr

        nothing = healthcheck(
            server_venv, {**env, "LEGATO_SERVER_HTTP_LISTEN": "off"}, *health_args(image, "server")
        )
        assert nothing.returncode == 1
        assert "nothing could be checked" in nothing.stderr
    finally:
        assert server.stop() == 0, server.tail()


def test_the_agent_image_connects_drains_and_its_healthcheck_tells_liveness_from_readiness(
    image: dockerfile.Dockerfile, server_venv: Path, agent_venv: Path, state: Path
) -> None:
    certs = make_certs(server_venv, state / "tls")
    grpc_port, http_port, metrics_port = free_port(), free_port(), free_port()
    server_env = {
        **image_env(image, "server", state),
        "LEGATO_SERVER_LISTEN": f"127.0.0.1:{grpc_port}",
        "LEGATO_SERVER_HTTP_LISTEN": f"127.0.0.1:{http_port}",
        "LEGATO_SERVER_TLS_CERT": str(certs / "server.pem"),
        "LEGATO_SERVER_TLS_KEY": str(certs / "server.key"),
    }
    server = Process(server_venv, entrypoint(image, "server"), server_env, state / "server.log")
    server.start()
    agent: Process | None = None
    try:
        wait_healthy(server_venv, server_env, health_args(image, "server"), server)
        db = server_env["LEGATO_SERVER_DB"]
        admin = cli(
            server_venv,
            server_env,
            "tokens",
            "create",
            "admin",
            "--role",
            "admin",
            "--db",
            db,
            "-q",
        )
        client_env = {
            **server_env,
            "LEGATO_SERVER": f"localhost:{grpc_port}",
            "LEGATO_CA": str(certs / "ca.pem"),
            "LEGATO_TOKEN": admin,
        }
        enrolment = cli(
            server_venv,
            client_env,
            "agents",
            "token",
            "create",
            "--name",
            "eu-1",
            "--labels",
            "region=eu",
            "--connections",
            "warehouse",
            "-q",
        )
        (state / "agent.token").write_text(enrolment + "\n")
        (state / "connections.yaml").write_text("warehouse: sqlite:///${WAREHOUSE_FILE}\n")
        agent_state = state / "agent"
        (agent_state / "work").mkdir(parents=True)
        agent_env = {
            **image_env(image, "agent", agent_state),
            "LEGATO_AGENT_SERVER": f"localhost:{grpc_port}",
            "LEGATO_AGENT_CA": str(certs / "ca.pem"),
            "LEGATO_AGENT_TOKEN_FILE": str(state / "agent.token"),
            "LEGATO_AGENT_CONNECTIONS": str(state / "connections.yaml"),
            "LEGATO_AGENT_LABELS": "region=eu",
            "LEGATO_AGENT_SLOTS": "2",
            "LEGATO_AGENT_METRICS_LISTEN": f"127.0.0.1:{metrics_port}",
            "WAREHOUSE_FILE": str(state / "warehouse.db"),
        }
        assert image.env("agent")["LEGATO_AGENT_METRICS_LISTEN"] == "0.0.0.0:9464"
        agent = Process(agent_venv, entrypoint(image, "agent"), agent_env, state / "agent.log")
        agent.start()
        ready = wait_healthy(
            agent_venv, agent_env, [*health_args(image, "agent"), "--connected"], agent
        )
        assert "connected, 0 of 2 slots busy" in ready.stdout, ready.stdout
        listed = cli(server_venv, client_env, "agents", "-o", "json")
        assert '"eu-1"' in listed and "warehouse" in listed, listed

        # The control plane goes away: the agent is alive (liveness) but not ready.
        assert server.stop() == 0, server.tail()
        deadline = time.monotonic() + 30
        while True:
            readiness = healthcheck(
                agent_venv, agent_env, *health_args(image, "agent"), "--connected"
            )
            if readiness.returncode == 1:
                break
            assert time.monotonic() < deadline, f"still ready: {readiness.stdout}"
            time.sleep(0.5)
        assert "not connected to the control plane" in readiness.stderr, readiness.stderr
        liveness = healthcheck(agent_venv, agent_env, *health_args(image, "agent"))
        assert liveness.returncode == 0, liveness.stderr

        # The first SIGTERM drains; with nothing running the agent exits 0.
        assert agent.stop() == 0, agent.tail()
        gone = healthcheck(agent_venv, agent_env, *health_args(image, "agent"))
        assert gone.returncode == 1
        assert f"127.0.0.1:{metrics_port}/metrics failed" in gone.stderr, gone.stderr
    finally:
        if agent is not None and agent.popen is not None and agent.popen.poll() is None:
            agent.stop()
        if server.popen is not None and server.popen.poll() is None:
            server.stop()


def test_each_image_holds_its_own_extra_only(server_venv: Path, agent_venv: Path) -> None:
    def has(venv: Path, module: str) -> bool:
        probe = (
            "import importlib.util, sys; "
            f"sys.exit(0 if importlib.util.find_spec({module!r}) else 1)"
        )
        return subprocess.run([str(venv / "bin" / "python"), "-c", probe]).returncode == 0

    for module in ("alembic", "aiohttp", "asyncpg", "grpc_health"):
        assert has(server_venv, module) and not has(agent_venv, module), module
    for module in ("pandas", "psycopg"):
        assert has(agent_venv, module) and not has(server_venv, module), module
    for venv in (server_venv, agent_venv):
        assert not has(venv, "pytest"), f"{venv}: test tools leaked into an image"


def test_the_healthcheck_needs_a_metrics_page_to_check_an_agent(agent_venv: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "LEGATO_AGENT_METRICS_LISTEN"}
    result = healthcheck(agent_venv, env, "agent")
    assert result.returncode == 1
    assert "set LEGATO_AGENT_METRICS_LISTEN" in result.stderr
    result = healthcheck(agent_venv, env, "agent", "--metrics", "0.0.0.0:99999")
    assert result.returncode == 1
    assert "port from 1 to 65535" in result.stderr


def _demo_spec(venv: Path) -> Path:
    found = sorted(venv.glob("lib/python*/site-packages/legato/cli/demo.yaml"))
    assert found, f"no legato/cli/demo.yaml in {venv}: the package data is missing from the image"
    return found[0]


def _serve(
    image: dockerfile.Dockerfile, venv: Path, state: Path, db: str
) -> tuple[Process, dict[str, str]]:
    grpc_port, http_port = free_port(), free_port()
    env = {
        **image_env(image, "server", state),
        "LEGATO_SERVER_LISTEN": f"127.0.0.1:{grpc_port}",
        "LEGATO_SERVER_HTTP_LISTEN": f"127.0.0.1:{http_port}",
        "LEGATO_SERVER_DB": db,
        "LEGATO_SERVER": f"127.0.0.1:{grpc_port}",
    }
    state.mkdir(parents=True, exist_ok=True)
    server = Process(venv, entrypoint(image, "server"), env, state / "server.log").start()
    wait_healthy(venv, env, health_args(image, "server"), server)
    return server, env


def _backup_round_trip(
    image: dockerfile.Dockerfile,
    venv: Path,
    state: Path,
    db: str,
    restored_db: str,
    backup: list[list[str]],
) -> None:
    """Serve ``db``, write to it, run ``backup`` (commands) while it serves, then serve
    ``restored_db`` and find what was written."""
    server, env = _serve(image, venv, state / "live", db)
    try:
        admin = cli(venv, env, "tokens", "create", "admin", "--role", "admin", "--db", db, "-q")
        env = {**env, "LEGATO_TOKEN": admin}
        cli(venv, env, "apply", "-f", str(_demo_spec(venv)))
        for command in backup:
            done = subprocess.run(command, capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, f"{command}: {done.stderr}"
    finally:
        assert server.stop() == 0, server.tail()
    restored, env = _serve(image, venv, state / "restored", restored_db)
    try:
        listed = cli(venv, {**env, "LEGATO_TOKEN": admin}, "pipelines", "-o", "json")
        assert "hello-legato" in listed, listed
    finally:
        assert restored.stop() == 0, restored.tail()


def test_a_sqlite_store_is_backed_up_while_the_server_runs(
    image: dockerfile.Dockerfile, server_venv: Path, state: Path
) -> None:
    """docs/deploy.md: `sqlite3 legato.db ".backup FILE"` while the server runs."""
    live = state / "live" / "legato.db"
    copy = state / "backup" / "legato.db"
    copy.parent.mkdir(parents=True)
    _backup_round_trip(
        image,
        server_venv,
        state,
        f"sqlite:///{live}",
        f"sqlite:///{copy}",
        [["sqlite3", str(live), f".backup {copy}"]],
    )


def test_a_postgres_store_is_dumped_while_the_server_runs_and_restored(
    image: dockerfile.Dockerfile, server_venv: Path, state: Path
) -> None:
    """docs/deploy.md: `pg_dump --format=custom` while the servers run, `pg_restore`."""
    url = os.environ.get(
        "LEGATO_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
    )
    probe = subprocess.run(["psql", url, "-Atc", "select 1"], capture_output=True, text=True)
    if probe.returncode != 0:
        if os.environ.get("LEGATO_TEST_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL at {url} is required and not reachable: {probe.stderr}")
        pytest.skip(f"no PostgreSQL at {url} (LEGATO_TEST_POSTGRES_URL): {probe.stderr.strip()}")
    base = url.rsplit("/", 1)[0]
    name = f"legato_deploy_{os.getpid()}_{free_port()}"
    for db in (name, f"{name}_restored"):
        subprocess.run(["psql", url, "-qc", f'CREATE DATABASE "{db}"'], check=True)
    dump = state / "legato.dump"
    try:
        _backup_round_trip(
            image,
            server_venv,
            state,
            f"{base}/{name}",
            f"{base}/{name}_restored",
            [
                ["pg_dump", "--format=custom", f"--file={dump}", f"{base}/{name}"],
                ["pg_restore", "--no-owner", f"--dbname={base}/{name}_restored", str(dump)],
            ],
        )
    finally:
        for db in (name, f"{name}_restored"):
            subprocess.run(["psql", url, "-qc", f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'])
