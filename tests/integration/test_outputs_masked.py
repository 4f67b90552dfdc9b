"""A step's output never carries the agent's secrets: a step that returns a connection's
password — as a value, inside nested values, as a key, in table cells of every text shape
and as a column name — has it masked at the agent before anything leaves it, so it is not
in the control plane's database (either store), the artifact, GetStepOutput, or what
`legato status` and `legato output` show; the rest of the output is intact."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from cluster import Cluster, steps_by_name
from google.protobuf import json_format
from sqlalchemy import select

from control_plane.store.db import Database
from control_plane.store.models import Base
from legato.v1 import run_pb2

pytestmark = pytest.mark.timeout(120)

LEGATO = str(Path(sys.executable).with_name("legato"))
PASSWORD = "Pw-4b9e1d7c-never-leak"
CONNECTION = f"postgresql://loader:{PASSWORD}@127.0.0.1:9/warehouse"


def spec(password_file: Path) -> str:
    read = f"secret = open({str(password_file)!r}).read()"
    return textwrap.dedent(
        f"""\
        name: leaky
        steps:
          - name: values
            transform:
              code: |
                {read}
                result = {{
                    "password": secret,
                    "nested": {{"url": "postgresql://loader:" + secret + "@db:5432/other",
                                "list": [secret, "fine"]}},
                    secret: "a key",
                    "count": 3,
                }}
          - name: table
            transform:
              code: |
                {read}
                result = pd.DataFrame({{
                    "who": ["alice", "bob"],
                    "password": [secret, "not " + secret],
                    "tags": pd.Categorical([secret, "x"]),
                    "lists": [[secret], ["y"]],
                    "n": [1, 2],
                    secret: [10, 20],
                }})
        """
    )


def cli(cluster: Cluster, *args: str) -> str:
    env = {
        **os.environ,
        "LEGATO_SERVER": cluster.plane.address,
        "LEGATO_TOKEN": cluster.plane.token("viewer"),
    }
    done = subprocess.run(
        [LEGATO, *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


async def database_text(db_url: str) -> list[str]:
    """Every value of every row of every table, as text (bytes decoded as UTF-8)."""
    db = Database(db_url)
    found: list[str] = []
    try:
        async with db.read() as session:
            for table in Base.metadata.sorted_tables:
                for row in (await session.execute(select(table))).all():
                    for value in row:
                        if isinstance(value, bytes | memoryview):
                            found.append(bytes(value).decode("utf-8", "replace"))
                        elif isinstance(value, dict | list):
                            found.append(json.dumps(value, ensure_ascii=False))
                        else:
                            found.append(str(value))
    finally:
        await db.dispose()
    return found


def test_step_outputs_are_masked_at_the_agent(
    cluster: Cluster, db_url: str, tmp_path: Path
) -> None:
    password_file = tmp_path / "password.txt"
    password_file.write_text(PASSWORD)
    cluster.start_agent("near-data", env={"LEGATO_CONNECTION_WAREHOUSE": CONNECTION})
    cluster.apply(spec(password_file))
    run = cluster.run("leaky")
    assert run.status == run_pb2.RUN_STATUS_SUCCEEDED, run
    client = cluster.client

    values = json_format.MessageToDict(client.get_step_output(run.id, "values").summary.values)
    assert values == {
        "password": "***",
        "nested": {"url": "postgresql://loader:***@db:5432/other", "list": ["***", "fine"]},
        "***": "a key",
        "count": 3,
    }
    table = client.get_step_output(run.id, "table")
    assert table.summary.rows == 2
    assert [c.name for c in table.summary.columns] == [
        "who",
        "password",
        "tags",
        "lists",
        "n",
        "***",
    ]
    rows = [json_format.MessageToDict(row) for row in table.rows]
    assert rows == [
        {"who": "alice", "password": "***", "tags": "***", "lists": ["***"], "n": 1, "***": 10},
        {"who": "bob", "password": "not ***", "tags": "x", "lists": ["y"], "n": 2, "***": 20},
    ]
    assert steps_by_name(run)["table"].records_out == 2
    artifact = tmp_path / "output.arrow"
    client.download_artifact(table.summary.artifact_id, artifact)
    assert PASSWORD.encode() not in artifact.read_bytes()
    assert b"not ***" in artifact.read_bytes()

    shown = [
        cli(cluster, "status", run.id),
        cli(cluster, "status", run.id, "-o", "json"),
        cli(cluster, "output", run.id, "values"),
        cli(cluster, "output", run.id, "table"),
        cli(cluster, "output", run.id, "table", "-o", "json"),
    ]
    assert all("***" in text for text in shown)
    places = {"what the CLI showed": "\n".join(shown)}
    places["the database"] = "\n".join(asyncio.run(database_text(db_url)))
    if db_url.startswith("sqlite"):
        files = [p for p in Path(db_url.removeprefix("sqlite:///")).parent.glob("*.db*")]
        places["the database files"] = b"".join(p.read_bytes() for p in files).decode(
            "utf-8", "replace"
        )
    assert "not ***" in places["the database"]  # the artifact and the values are there
    for where, text in places.items():
        assert PASSWORD not in text, f"the connection's password is in {where}"
