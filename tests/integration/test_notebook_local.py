"""legato.notebook running steps on this machine with the agent's runner: a transform
over a DataFrame, limits (the same messages as a real agent's), a query on a real
database (SQLite and PostgreSQL), and ``p.test`` of a small DAG with a ``when`` skip, an
export without its connection and a trigger step."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy
from cluster import Cluster, steps_by_name

import legato.notebook
from legato.notebook import StepFailed

pytestmark = pytest.mark.timeout(60)

LIMITS = """
name: limits
steps:
  - name: slow
    timeout: 1s
    transform:
      code: |
        import time
        print("sleeping", flush=True)
        time.sleep(30)
        result = None
  - name: hungry
    memory: 64Mi
    transform:
      code: |
        import time
        blocks = []
        for _ in range(128):
            blocks.append(bytearray(4 << 20))
            time.sleep(0.02)
        result = None
"""

DAG = """
name: orders
params:
  min_amount: {type: number, default: 10}
steps:
  - name: extract
    query:
      connection: warehouse
      sql: select id, amount from orders
  - name: big
    needs: [extract]
    transform:
      code: |
        print("filtering", len(data))
        result = data[data.amount >= params["min_amount"]]
  - name: report
    needs: [big]
    when: steps.big.records > 0
    transform:
      code: |
        result = {"total": float(data.amount.sum())}
  - name: load
    needs: [big]
    export:
      table: {connection: lake, table: big_orders}
  - name: downstream
    needs: [report]
    trigger: {pipeline: other}
"""


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_a_transform_runs_over_a_dataframe(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = legato.notebook.load(_write(tmp_path, "orders.yaml", DAG))
    assert p.steps == ["extract", "big", "report", "load", "downstream"]
    frame = pd.DataFrame({"id": [1, 2, 3], "amount": [5.0, 20.0, 30.0]})
    out = p.step("big").run(data=frame, params={"min_amount": 25})
    assert out.status == "succeeded"
    assert out.data is not None and out.data.to_dict("records") == [{"id": 3, "amount": 30.0}]
    assert (out.records_in, out.records_out) == (3, 1)
    assert out.logs == ["filtering 3"]
    assert "[big] filtering 3" in capsys.readouterr().out
    # Params are checked as the server checks them.
    with pytest.raises(legato.notebook.NotebookError, match="min_amount"):
        p.step("big").run(data=frame, params={"min_amount": "lots"})
    with pytest.raises(legato.notebook.NotebookError, match="did you mean 'big'"):
        p.step("bgi")


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_limits_fail_with_the_agents_messages(cluster: Cluster, tmp_path: Path) -> None:
    p = legato.notebook.load(_write(tmp_path, "limits.yaml", LIMITS))
    with pytest.raises(StepFailed) as slow:
        p.step("slow").run()
    assert slow.value.failure_kind == "timeout"
    assert slow.value.result.logs == ["sleeping"]
    with pytest.raises(StepFailed) as hungry:
        p.step("hungry").run()
    assert hungry.value.failure_kind == "memory"
    # check=False returns the failed result instead.
    assert (
        p.step("slow")
        .run(timeout="0.5s", check=False)
        .error.startswith("step 'slow' exceeded its timeout of 500ms (timeout)")
    )

    cluster.start_agent("a1")
    cluster.apply(LIMITS)
    on_agent = steps_by_name(cluster.run("limits"))
    assert str(slow.value) == on_agent["slow"].error
    # The limit and its value; what follows (": MemoryError ...") says which of the
    # runner's mechanisms stopped it, which depends on timing here as on an agent.
    over = "step 'hungry' exceeded its memory limit of 64Mi (memory)"
    assert str(hungry.value).startswith(over)
    assert on_agent["hungry"].error.startswith(over)


def test_a_query_runs_on_a_real_database(warehouse_url: str, tmp_path: Path) -> None:
    engine = sqlalchemy.create_engine(
        warehouse_url.replace("postgresql://", "postgresql+psycopg://")
    )
    with engine.begin() as db:
        db.execute(sqlalchemy.text("create table orders (id integer, amount float)"))
        db.execute(
            sqlalchemy.text("insert into orders values (1, 5), (2, 20), (3, 30)"),
        )
    engine.dispose()
    p = legato.notebook.load(_write(tmp_path, "orders.yaml", DAG))
    out = p.step("extract").run(connections={"warehouse": warehouse_url})
    assert out.data is not None
    assert sorted(out.data["id"].tolist()) == [1, 2, 3]
    assert out.records_out == 3


def test_the_whole_dag_runs_here_on_small_inputs(tmp_path: Path) -> None:
    p = legato.notebook.load(_write(tmp_path, "orders.yaml", DAG))
    frame = pd.DataFrame({"id": [1, 2, 3], "amount": [5.0, 20.0, 30.0]})

    result = p.test(inputs={"extract": frame})
    assert result.status == "succeeded"
    statuses = {name: r.status for name, r in result.items()}
    assert statuses == {
        "extract": "given",
        "big": "succeeded",
        "report": "succeeded",
        "load": "skipped",
        "downstream": "skipped",
    }
    assert result["report"].values == {"total": 50.0}
    assert "connection 'lake'" in result["load"].error
    assert "trigger steps are not run" in result["downstream"].error

    # Nothing over the minimum: `report`'s when is false, and the trigger below is skipped.
    none = p.test(inputs={"extract": frame}, params={"min_amount": 100})
    assert none["big"].records_out == 0
    assert none["report"].status == "skipped"
    assert none["report"].error == "when 'steps.big.records > 0' was false"
    assert none["downstream"].status == "skipped"
    assert "report: skipped" in repr(none)

    # A failing step fails the test and its children, as in a run.
    broken = p.test(inputs={"extract": pd.DataFrame({"id": [1]})})
    assert broken.status == "failed"
    assert broken["big"].status == "failed" and "amount" in broken["big"].error
    assert broken["report"].status == "upstream_failed"


INTERRUPTED = """
import legato.notebook
from legato.v1 import spec_pb2

spec = spec_pb2.PipelineSpec(name="interrupt")
spec.steps.add(name="slow").transform.code = (
    "import time\\nprint('started', flush=True)\\ntime.sleep(60)\\nresult = None"
)
try:
    legato.notebook.load(spec).step("slow").run()
except legato.notebook.StepFailed as failed:
    print("FAILED", failed.result.status, failed)
"""


def test_interrupting_the_kernel_cancels_the_step() -> None:
    import signal
    import subprocess
    import sys
    import time

    child = subprocess.Popen([sys.executable, "-c", INTERRUPTED], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "[slow] started"
    started = time.monotonic()
    child.send_signal(signal.SIGINT)  # what Jupyter's "interrupt the kernel" sends
    out, _ = child.communicate(timeout=30)
    assert child.returncode == 0
    assert out.strip() == (
        "FAILED cancelled step 'slow' was cancelled: interrupted in the notebook"
    )
    assert time.monotonic() - started < 10
