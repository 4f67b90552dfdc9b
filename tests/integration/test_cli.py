"""The real `legato server` process driven by the real `legato` CLI, as a user would."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from control_plane.store.migrate import head_revision

LEGATO = str(Path(sys.executable).with_name("legato"))

SPEC = textwrap.dedent(
    """\
    name: etl
    description: Nightly ETL
    schedule:
      cron: "0 2 * * *"
      timezone: Europe/Berlin
    steps:
      - name: extract
        query:
          connection: warehouse
          sql: SELECT * FROM orders
      - name: clean
        needs: [extract]
        transform:
          code: result = data.dropna()
      - name: load
        needs: [clean]
        export:
          table: {connection: warehouse, table: orders_clean, mode: upsert, keys: [id]}
    """
)


@dataclass
class Server:
    process: subprocess.Popen[str]
    address: str
    token: str = ""
    """An admin token, made with `legato tokens create --db` as an operator would."""


def admin_token(db_url: str, name: str = "test-admin") -> str:
    """The first admin token of a database, made straight in it (no server needed)."""
    made = legato(None, "tokens", "create", name, "--role", "admin", "--db", db_url, "-o", "json")
    assert made.returncode == 0, made.stderr
    secret: str = json.loads(made.stdout)["secret"]
    return secret


def start_server(db_url: str, *extra: str) -> Server:
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
            *extra,
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            break
        event = json.loads(line)
        if event.get("event") == "server_started":
            return Server(process, f"127.0.0.1:{event['port']}", token)
    process.kill()
    raise AssertionError(f"server did not start: {process.stderr.read()}")


def legato(
    server: Server | None, *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "USER": "alice", "LOGNAME": "alice", **(env or {})}
    if server is not None:
        env["LEGATO_SERVER"] = server.address
        env.setdefault("LEGATO_TOKEN", server.token)
    return subprocess.run(
        [LEGATO, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=60
    )


def test_the_versioning_workflow(server: Server, tmp_path: Path) -> None:
    spec = tmp_path / "etl.yaml"
    spec.write_text(SPEC)
    out = legato(server, "apply", "-f", str(spec), "-m", "first cut")
    assert (out.returncode, out.stdout) == (0, "pipeline etl: version 1 (created)\n"), out.stderr
    assert (
        legato(server, "apply", "-f", str(spec)).stdout == "pipeline etl: version 1 (unchanged)\n"
    )

    spec.write_text(SPEC.replace("result = data.dropna()", "result = data.dropna().head(100)"))
    assert legato(server, "apply", "-f", str(spec), "-m", "limit rows").stdout == (
        "pipeline etl: version 2 (created)\n"
    )

    versions = legato(server, "versions", "etl")
    lines = versions.stdout.splitlines()
    assert lines[0].split() == ["VERSION", "CREATED", "AUTHOR", "MESSAGE", "HASH"]
    assert lines[1].startswith("2 ") and "test-admin" in lines[1] and "limit rows" in lines[1]
    assert lines[2].startswith("1 ") and "first cut" in lines[2]

    diff = legato(server, "diff", "etl", "1", "2")
    assert diff.returncode == 0
    assert "step clean changed: transform.code" in diff.stdout
    assert "+      code: result = data.dropna().head(100)" in diff.stdout

    rolled = legato(server, "rollback", "etl", "--to", "1", "-m", "bad deploy")
    assert rolled.stdout == "pipeline etl: version 3 (created, same content as version 1)\n"

    shown = legato(server, "show", "etl", "--version", "1")
    assert "cron: 0 2 * * *" in shown.stdout or "cron: '0 2 * * *'" in shown.stdout
    assert "code: result = data.dropna()\n" in shown.stdout

    listed = legato(server, "pipelines")
    assert listed.stdout.splitlines()[1].split()[:4] == ["etl", "3", "0", "2"]
    assert legato(server, "archive", "etl").stdout == "pipeline etl archived\n"
    assert "no pipelines" in legato(server, "pipelines").stdout
    assert legato(server, "pipelines", "--archived").stdout.count("etl") == 1
    assert legato(server, "restore", "etl").stdout == "pipeline etl restored\n"


def test_json_output_is_the_proto_message(server: Server, tmp_path: Path) -> None:
    spec = tmp_path / "etl.yaml"
    spec.write_text(SPEC)
    applied = json.loads(legato(server, "apply", "-f", str(spec), "-o", "json").stdout)
    assert applied["created"] is True
    assert applied["version"]["number"] == 1
    assert applied["pipeline"]["latest_version"] == 1
    assert applied["version"]["spec"]["steps"][2]["export"]["table"]["mode"] == "EXPORT_MODE_UPSERT"
    listed = json.loads(legato(server, "pipelines", "-o", "json").stdout)
    assert [p["name"] for p in listed["pipelines"]] == ["etl"]
    shown = legato(server, "show", "etl", "-o", "yaml").stdout
    assert "content_hash: sha256:" in shown


def test_validation_errors_point_at_file_lines(server: Server, tmp_path: Path) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text(
        SPEC.replace("needs: [clean]", "needs: [claen]").replace('"0 2 * * *"', '"0 25 * * *"')
    )
    out = legato(server, "validate", "-f", str(spec))
    assert out.returncode == 1
    assert out.stdout == ""
    errors = out.stderr.splitlines()
    assert any(line.startswith(f"{spec}:4: schedule.cron: ") and "25" in line for line in errors), (
        errors
    )
    assert any(
        line.startswith(f"{spec}:16: steps[2].needs[0]: ") and "did you mean 'clean'" in line
        for line in errors
    ), errors
    assert "Traceback" not in out.stderr
    # Nothing was stored.
    assert "no pipelines" in legato(server, "pipelines", "--archived").stdout


def test_format_errors_are_reported_before_contacting_the_server(tmp_path: Path) -> None:
    spec = tmp_path / "typo.yaml"
    spec.write_text(SPEC.replace("needs: [extract]", "need: [extract]"))
    out = legato(None, "--server", "127.0.0.1:1", "apply", "-f", str(spec))
    assert out.returncode == 1
    assert f"{spec}:12: steps[1]: unknown field 'need'" in out.stderr
    assert "did you mean 'needs'" in out.stderr


def test_unreachable_server_is_a_clear_error(tmp_path: Path) -> None:
    out = legato(None, "--server", "127.0.0.1:1", "pipelines")
    assert out.returncode == 1
    assert "cannot reach the Legato server at 127.0.0.1:1" in out.stderr
    assert "Traceback" not in out.stderr


def test_missing_pipeline_is_a_clear_error(server: Server) -> None:
    out = legato(server, "show", "nope")
    assert out.returncode == 1
    assert out.stderr.startswith("legato show: pipeline 'nope' does not exist")


def test_server_refuses_a_bad_database_url() -> None:
    out = legato(None, "server", "--db", "mysql://root@localhost/x")
    assert out.returncode == 2
    assert "--db: 'mysql://root@localhost/x': unsupported database 'mysql'" in out.stderr
    assert "Traceback" not in out.stderr


def test_server_reports_an_unreachable_database() -> None:
    out = legato(
        None, "server", "--listen", "127.0.0.1:0", "--db", "postgresql://u:secret@127.0.0.1:1/x"
    )
    assert out.returncode == 1
    assert "cannot connect to postgresql+asyncpg://u:***@127.0.0.1:1/x" in out.stderr
    assert "secret" not in out.stderr
    assert "Traceback" not in out.stderr


def test_sigterm_stops_the_server_cleanly(tmp_path: Path) -> None:
    running = start_server(f"sqlite:///{tmp_path}/legato.db")
    running.process.send_signal(signal.SIGTERM)
    assert running.process.wait(timeout=20) == 0
    assert running.process.stderr is not None
    assert "server_stopped" in running.process.stderr.read()


def test_db_upgrade_is_idempotent(tmp_path: Path) -> None:
    head = head_revision()
    url = f"sqlite:///{tmp_path}/fresh.db"
    first = legato(None, "db", "upgrade", "--db", url)
    assert first.returncode == 0 and f"schema upgraded from empty to {head}" in first.stdout
    second = legato(None, "db", "upgrade", "--db", url)
    assert f"schema already at revision {head}" in second.stdout


@contextmanager
def legato_up(cwd: Path, *args: str) -> Iterator[tuple[list[str], str]]:
    """``legato up`` on free ports in ``cwd``: its output up to the "Try:" line and its
    control plane's address, while it runs; stopped with Ctrl-C (SIGINT) afterwards."""
    process = subprocess.Popen(
        [LEGATO, "up", *args, "--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    lines: list[str] = []
    try:
        for line in process.stdout:
            lines.append(line.rstrip("\n"))
            if line.startswith("Try: "):
                break
        up = next((ln for ln in lines if ln.startswith("Legato is up")), "")
        yield lines, up.removeprefix("Legato is up: control plane on ").split(",")[0]
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)
    output = "\n".join(lines)
    assert process.returncode == 0, output + (process.stderr.read() if process.stderr else "")


def test_up_demo_runs_a_pipeline_and_shows_its_log(tmp_path: Path) -> None:
    """The README's first command: one process, a pipeline run to success with its log."""
    started = time.monotonic()
    with legato_up(tmp_path, "--demo") as (lines, _):
        pass
    output = "\n".join(lines)
    assert "Legato is up: control plane on 127.0.0.1:" in output
    assert "Pipeline started (hello-legato v1, trigger manual)" in output
    assert "Step 1: extract (127 records)" in output
    assert "Step 2: transform (127 → " in output and "after filtering)" in output
    assert "Pipeline completed successfully" in output
    assert " succeeded" in lines[-2] or any(line.endswith(" succeeded") for line in lines)
    assert (tmp_path / ".legato" / "legato.db").exists()
    assert time.monotonic() - started < 60


NIGHTLY = """\
name: nightly
schedule:
  cron: "30 2 * * *"
  timezone: Europe/Berlin
steps:
  - name: work
    transform: {code: "result = {}"}
"""


def test_schedule_preview_pause_resume_and_backfill(server: Server, tmp_path: Path) -> None:
    spec = tmp_path / "nightly.yaml"
    spec.write_text(NIGHTLY)
    assert legato(server, "apply", "-f", str(spec)).returncode == 0
    env_tz = {"TZ": "UTC"}
    out = legato(
        server,
        "schedule",
        "preview",
        "nightly",
        "--count",
        "3",
        "--from",
        "2026-03-27T00:00Z",
        env=env_tz,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "schedule: 30 2 * * * (Europe/Berlin)"
    assert lines[1].startswith("state:    active, next at ")
    assert lines[3].split() == ["LOCAL", "UTC", "DST"]
    assert lines[4].startswith("2026-03-27 02:30:00+01:00  2026-03-27 01:30:00 UTC")
    assert lines[6].startswith("2026-03-29 03:00:00+02:00  2026-03-29 01:00:00 UTC  02:30 does not")
    assert "03:00 CEST" in lines[6]

    paused = legato(server, "schedule", "pause", "nightly", "--reason", "migration")
    assert paused.stdout == "schedule of nightly paused: migration\n", paused.stderr
    preview = legato(server, "schedule", "preview", "nightly", "--count", "1")
    assert "state:    paused — migration" in preview.stdout
    resumed = legato(server, "schedule", "resume", "nightly")
    assert resumed.stdout.startswith("schedule of nightly resumed; next fire time "), resumed.stderr

    dry = legato(
        server,
        "backfill",
        "nightly",
        "--from",
        "2026-03-20T00:00Z",
        "--to",
        "2026-03-23T00:00Z",
        "--dry-run",
        env=env_tz,
    )
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.splitlines() == [
        # In the schedule's zone (the host's is UTC here), each with its UTC time.
        "3 fire times in Europe/Berlin (dry run, nothing created):",
        "  2026-03-20 02:30:00 CET  (2026-03-20 01:30 UTC)",
        "  2026-03-21 02:30:00 CET  (2026-03-21 01:30 UTC)",
        "  2026-03-22 02:30:00 CET  (2026-03-22 01:30 UTC)",
    ]
    created = legato(
        server, "backfill", "nightly", "--from", "2026-03-20T00:00Z", "--to", "2026-03-23T00:00Z"
    )
    assert created.returncode == 0, created.stderr
    backfill_id = created.stdout.splitlines()[0].split()[-1]
    assert "runs:     0 of 3 done, 0 failed" in created.stdout
    runs = legato(server, "runs", "--backfill", backfill_id)
    assert runs.stdout.count("backfill@") == 3
    cancelled = legato(server, "backfill", "--cancel", backfill_id)
    assert "status:   cancelled" in cancelled.stdout
    bad = legato(server, "schedule", "preview", "nope")
    assert bad.returncode == 1 and "pipeline 'nope' does not exist" in bad.stderr


def test_up_applies_the_examples_with_their_schedules_paused(tmp_path: Path) -> None:
    examples = tmp_path / "examples"
    examples.mkdir()
    root = Path(__file__).resolve().parents[2] / "examples"
    for spec in root.glob("*.yaml"):
        (examples / spec.name).write_text(spec.read_text())
    elsewhere = tmp_path.parent / f"{tmp_path.name}-elsewhere"
    elsewhere.mkdir()
    with legato_up(tmp_path) as (lines, address):
        # The CLI in the same directory (or below it) finds legato up's admin token ...
        listed = legato(
            None, "pipelines", "-o", "json", cwd=examples, env={"LEGATO_SERVER": address}
        )
        # ... and elsewhere, without one, it is refused.
        refused = legato(None, "pipelines", cwd=elsewhere, env={"LEGATO_SERVER": address})
    assert refused.returncode == 1 and "needs a credential" in refused.stderr
    credentials = tmp_path / ".legato" / "credentials.yaml"
    assert credentials.stat().st_mode & 0o777 == 0o600
    output = "\n".join(lines)
    assert "pipeline etl: version 1 (created) from " in output, output
    assert "its schedule is paused; `legato schedule resume etl` starts it" in output
    pipelines = {p["name"]: p for p in json.loads(listed.stdout)["pipelines"]}
    assert set(pipelines) == {"daily-report", "data-quality", "etl"}
    assert all(p["schedule"]["paused"] for p in pipelines.values())


def test_up_keeps_its_admin_token_across_restarts(tmp_path: Path) -> None:
    """A second `legato up` in the same directory reuses the token it left there, and a
    credentials file that no longer works (here: tampered with) is replaced."""
    credentials = tmp_path / ".legato" / "credentials.yaml"
    with legato_up(tmp_path, "--examples", "none") as (_, address):
        first = credentials.read_text()
        assert legato(None, "whoami", cwd=tmp_path, env={"LEGATO_SERVER": address}).returncode == 0
    with legato_up(tmp_path, "--examples", "none") as (_, address):
        assert credentials.read_text().split("token:")[1] == first.split("token:")[1]
        who = legato(None, "whoami", cwd=tmp_path, env={"LEGATO_SERVER": address})
        assert who.stdout.startswith("local-admin (token, role admin)"), who.stderr
    token = first.split("token:")[1].strip()
    credentials.write_text(first.replace(token, token[:-4] + "AAAA"))
    with legato_up(tmp_path, "--examples", "none") as (_, address):
        assert token[:-4] not in credentials.read_text()
        who = legato(None, "whoami", cwd=tmp_path, env={"LEGATO_SERVER": address})
        assert who.returncode == 0, who.stderr
        listed = legato(
            None, "tokens", "list", "--all", cwd=tmp_path, env={"LEGATO_SERVER": address}
        )
        assert listed.stdout.count("local-admin") == 2 and "revoked" in listed.stdout
