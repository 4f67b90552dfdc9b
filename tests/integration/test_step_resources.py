"""Resource use end to end: real agents measure each attempt's peak memory and CPU time,
the control plane stores them with the result (and warns in the run log near the memory
limit), GetRun shows them and GetPipelineStats summarises them, on both stores."""

from __future__ import annotations

import grpc
import pytest
from cluster import Cluster, steps_by_name

from legato import RpcError
from legato.v1 import run_pb2

pytestmark = pytest.mark.timeout(180)

MiB = 1 << 20

RESOURCES = """
name: resources
params:
  fail: {type: boolean, default: false}
steps:
  - name: hold
    memory: 240Mi
    transform:
      code: |
        import time
        block = bytearray(200 << 20)
        time.sleep(0.4)
        del block
        result = pd.DataFrame({"n": range(5)})
  - name: burn
    needs: [hold]
    transform:
      code: |
        import time
        start = time.process_time()
        while time.process_time() - start < 0.5:  # 0.5 s of CPU, however loaded the host
            pass
        if params["fail"]:
            raise ValueError("asked to fail")
        result = data
"""


def test_attempts_report_peak_memory_and_cpu_and_a_warning_near_the_limit(
    cluster: Cluster,
) -> None:
    cluster.start_agent("a1")
    cluster.apply(RESOURCES)
    run = cluster.run("resources")
    assert run.status == run_pb2.RUN_STATUS_SUCCEEDED, run
    steps = steps_by_name(run)
    hold, burn = steps["hold"], steps["burn"]
    assert hold.HasField("peak_memory_bytes") and hold.peak_memory_bytes >= 200 * MiB
    assert hold.memory_limit_bytes == 240 * MiB
    assert hold.attempts[0].peak_memory_bytes == hold.peak_memory_bytes
    assert hold.attempts[0].memory_limit_bytes == 240 * MiB
    assert burn.memory_limit_bytes == 0  # no limit
    cpu = burn.cpu_time.ToTimedelta().total_seconds()
    wall = burn.duration.ToTimedelta().total_seconds()
    assert 0.5 <= cpu <= wall + 0.05
    assert burn.attempts[0].cpu_time == burn.cpu_time
    warnings = [line for line in cluster.logs(run.id) if "memory limit (" in line]
    assert len(warnings) == 1
    assert warnings[0].startswith("Step 1: hold used ")
    assert "of its 240 MiB memory limit (" in warnings[0]
    assert warnings[0].endswith("): raise its memory: or make it hold less")


def test_pipeline_stats_over_real_runs(cluster: Cluster) -> None:
    cluster.start_agent("a1")
    cluster.apply(RESOURCES)
    client = cluster.client
    empty = client.pipeline_stats("resources")
    assert (empty.pipeline, list(empty.runs), list(empty.steps)) == ("resources", [], [])
    assert empty.slowest_step == ""
    runs = [cluster.run("resources"), cluster.run("resources", fail=True)]
    runs.append(cluster.run("resources"))
    assert [r.status for r in runs] == [
        run_pb2.RUN_STATUS_SUCCEEDED,
        run_pb2.RUN_STATUS_FAILED,
        run_pb2.RUN_STATUS_SUCCEEDED,
    ]
    stats = client.pipeline_stats("resources")
    assert [r.run_id for r in stats.runs] == [r.id for r in reversed(runs)]  # newest first
    assert [s.name for s in stats.steps] == ["hold", "burn"]
    hold, burn = stats.steps
    assert (hold.count, hold.failures, hold.kind) == (3, 0, "transform")
    assert (burn.count, burn.failures) == (3, 1)
    assert [s.run_id for s in burn.samples] == [r.id for r in runs]  # oldest first
    assert [s.status for s in burn.samples][1] == run_pb2.STEP_STATUS_FAILED
    assert hold.peak_memory_bytes_p50 >= 200 * MiB
    assert hold.peak_memory_bytes_max >= hold.peak_memory_bytes_p50
    assert hold.memory_limit_bytes == 240 * MiB and burn.memory_limit_bytes == 0
    assert hold.records_out_p50 == 5
    assert burn.cpu_time_p50.ToTimedelta().total_seconds() >= 0.5
    p50 = burn.duration_p50.ToTimedelta().total_seconds()
    assert 0.5 <= p50 <= burn.duration_p95.ToTimedelta().total_seconds()
    assert stats.slowest_step in ("hold", "burn")
    slowest = max(stats.steps, key=lambda s: s.duration_p50.ToTimedelta())
    assert stats.slowest_step == slowest.name
    one = client.pipeline_stats("resources", runs=1)
    assert [r.run_id for r in one.runs] == [runs[-1].id]
    assert [s.count for s in one.steps] == [1, 1]


def test_stats_of_an_unknown_pipeline_are_not_found(cluster: Cluster) -> None:
    with pytest.raises(RpcError) as raised:
        cluster.client.pipeline_stats("nope")
    assert raised.value.code == grpc.StatusCode.NOT_FOUND
    assert raised.value.reason == "PIPELINE_NOT_FOUND"
    with pytest.raises(RpcError) as missing:
        cluster.client.pipeline_stats("")
    assert missing.value.code == grpc.StatusCode.INVALID_ARGUMENT
