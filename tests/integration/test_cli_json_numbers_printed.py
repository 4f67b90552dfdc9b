"""``-o json`` of a real run prints numbers as written: ``rows: 500`` (not 500.0) for a
parameter and a step's values, and records and row counts (int64) as numbers (not
strings). A real control plane and agent, and the real `legato` command."""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

from cluster import LEGATO, Cluster


def _json(cluster: Cluster, *args: str) -> Any:
    env = {
        **os.environ,
        "LEGATO_SERVER": cluster.plane.address,
        "LEGATO_TOKEN": cluster.plane.token("admin"),
    }
    done = subprocess.run(
        [LEGATO, *args, "-o", "json"], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert ".0," not in done.stdout and ".0\n" not in done.stdout
    return json.loads(done.stdout)


def test_numbers_print_as_written(cluster: Cluster) -> None:
    cluster.start_agent("a1")
    cluster.apply(
        """
        name: counts
        params:
          rows: {type: integer, default: 3}
        steps:
          - name: make
            transform:
              code: |
                result = pd.DataFrame({"n": range(params["rows"])})
          - name: total
            needs: [make]
            transform:
              code: |
                result = {"total": int(data["n"].sum()), "mean": float(data["n"].mean())}
        """
    )
    started = _json(cluster, "run", "counts", "-p", "rows=500")
    assert started["run"]["params"] == {"rows": 500}
    assert type(started["run"]["params"]["rows"]) is int
    cluster.wait_run(started["run"]["id"])

    run = _json(cluster, "status", started["run"]["id"])
    make, total = run["steps"]
    assert (make["records_out"], total["records_in"]) == (500, 500)
    assert total["output"]["values"] == {"total": 124750, "mean": 249.5}
    assert type(total["output"]["values"]["total"]) is int

    output = _json(cluster, "output", started["run"]["id"], "make", "--limit", "2")
    assert output["summary"]["rows"] == 500
    assert output["rows"] == [{"n": 0}, {"n": 1}]
