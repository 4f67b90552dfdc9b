"""`--auth none`: the one way to turn authentication off, allowed only on loopback. Every
caller may do anything and is recorded as anonymous (with the user it claims); agents
register as they say; fencing by lease owner still holds."""

from __future__ import annotations

from pathlib import Path

import pytest
from cluster import running_cluster

from legato import Client
from legato.v1 import access_pb2, run_pb2

pytestmark = pytest.mark.timeout(90)


def test_without_authentication_everyone_may_do_anything(db_url: str, tmp_path: Path) -> None:
    with running_cluster(db_url, tmp_path, auth="none") as cluster:
        anonymous = Client(cluster.plane.address, user="dev")  # no token at all
        assert anonymous.get_caller().kind == access_pb2.ACTOR_KIND_ANONYMOUS
        cluster.start_agent("laptop", token="", labels={"where": "here"})
        name = cluster.apply(
            """
            name: hello
            steps:
              - name: only
                agent_selector: {where: here}
                transform: {code: "result = {'ok': 1}"}
            """
        )
        run = cluster.wait_run(anonymous.trigger_run(name).run.id)
        assert run.status == run_pb2.RUN_STATUS_SUCCEEDED
        assert run.steps[0].attempts[0].agent == "laptop"
        entry = next(anonymous.list_audit_events(action="TriggerRun"))
        assert (entry.actor, entry.actor_kind) == ("dev", access_pb2.ACTOR_KIND_ANONYMOUS)
        anonymous.close()
