"""A step's process sees none of its agent's credentials: not the enrolment token, not the
agent's or a server's settings and secrets, not a CLI token — with a real agent process
started the way operators start it (LEGATO_AGENT_TOKEN in its environment)."""

from __future__ import annotations

from pathlib import Path

import pytest
from cluster import running_cluster

from legato.v1 import run_pb2

pytestmark = pytest.mark.timeout(90)


def test_a_step_sees_none_of_its_agents_credentials(tmp_path: Path) -> None:
    with running_cluster(f"sqlite:///{tmp_path / 'legato.db'}", tmp_path) as cluster:
        cluster.start_agent(
            "a1",
            env={
                "LEGATO_TOKEN": "lgt_cli_token_of_the_operator",
                "LEGATO_SECRET_WAREHOUSE": "hunter2",
                "LEGATO_SERVER_DB": "postgresql://admin:pw@db/legato",
                "LEGATO_FAILPOINTS": "",
                "SHOP_REGION": "eu",
            },
        )
        cluster.apply(
            """
            name: nosy
            steps:
              - name: look
                transform:
                  code: |
                    import os
                    for name in sorted(os.environ):
                        if name.startswith(("LEGATO", "SHOP")):
                            print("env", name)
                    result = 1
            """
        )
        run = cluster.run("nosy")
        assert run.status == run_pb2.RUN_STATUS_SUCCEEDED, run
        seen = {line.split()[-1] for line in cluster.logs(run.id) if line.startswith("env ")}
        assert seen, cluster.logs(run.id)
        leaked = {
            "LEGATO_AGENT_TOKEN",
            "LEGATO_TOKEN",
            "LEGATO_SECRET_WAREHOUSE",
            "LEGATO_SERVER_DB",
        }
        assert seen & leaked == set(), seen
        assert {"SHOP_REGION", "LEGATO_RUN_ID", "LEGATO_STEP", "LEGATO_FAILPOINTS"} <= seen, seen
