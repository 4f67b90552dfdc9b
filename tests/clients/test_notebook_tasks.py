"""The pieces of legato.notebook without running a step: loading (files, pipelines as
code, problems at their lines), inputs, params, limits, connections, the Task built as
the agent builds it, and the results' summaries."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pandas as pd
import pyarrow as pa  # type: ignore[import-untyped]
import pytest

import legato.notebook
from legato.notebook import NotebookError, StepResult, TestResult
from legato.notebook.tasks import (
    build_task,
    check_params,
    limits_of,
    resolved_for,
    step_connections,
    upstream_of,
)
from legato.spec import SpecFormatError, load_spec_text
from legato.v1 import spec_pb2

SPEC = """
name: etl
params:
  day: {type: date, required: true}
  limit: {type: integer, default: 100}
limits: {step_timeout: 5m, step_memory: 1Gi}
steps:
  - name: extract
    query:
      connection: warehouse
      sql: select * from orders where day = :day limit :n
      parameters: {day: params.day, n: params.limit}
  - name: other
    transform: {code: "result = None"}
  - name: clean
    needs: [extract]
    timeout: 30s
    transform: {code: "result = data"}
  - name: join
    needs: [clean, other]
    memory: 256Mi
    transform: {code: "result = None"}
"""


def _spec() -> spec_pb2.PipelineSpec:
    return load_spec_text(textwrap.dedent(SPEC)).spec


def _step(name: str) -> spec_pb2.Step:
    return next(s for s in _spec().steps if s.name == name)


def test_load_reads_files_and_reports_problems_at_their_lines(tmp_path: Path) -> None:
    path = tmp_path / "etl.yaml"
    path.write_text(textwrap.dedent(SPEC))
    p = legato.notebook.load(path)
    assert p.steps == ["extract", "other", "clean", "join"]
    assert "legato pipeline 'etl'" in repr(p) and "<table>" in p._repr_html_()
    with pytest.raises(NotebookError, match=r"no step 'clen' \(did you mean 'clean'\?\)"):
        p.step("clen")

    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nsteps:\n  - name: a\n    needs: [nope]\n    transform: {code: x}\n")
    with pytest.raises(SpecFormatError) as problems:
        legato.notebook.load(bad)
    assert str(problems.value).startswith(f"{bad}:4: steps[0].needs[0]:")


def test_load_reads_pipelines_as_code(tmp_path: Path) -> None:
    module = tmp_path / "pipes.py"
    module.write_text(
        textwrap.dedent(
            """
            import legato

            first = legato.Pipeline("first", steps=[legato.transform("a", code="result = 1")])
            second = legato.Pipeline("second", steps=[legato.transform("b", code="result = 2")])
            """
        )
    )
    with pytest.raises(NotebookError, match="defines 2 pipelines"):
        legato.notebook.load(module)
    assert legato.notebook.load(module, name="second").steps == ["b"]
    assert legato.notebook.load(_spec()).name == "etl"


def test_inputs_stand_for_the_steps_a_step_needs() -> None:
    spec = _spec()
    frame = pd.DataFrame({"x": [1, 2]})
    (given,) = upstream_of(spec, _step("clean"), frame)
    assert given.step == "extract" and given.rows == 2
    assert isinstance(given.table, pa.Table)

    both = upstream_of(spec, _step("join"), inputs={"clean": [{"x": 1}], "other": {"n": 3}})
    assert [(u.step, u.rows, u.values) for u in both] == [
        ("clean", 1, {}),
        ("other", None, {"n": 3}),
    ]

    with pytest.raises(NotebookError, match="needs 2 steps"):
        upstream_of(spec, _step("join"), frame)
    with pytest.raises(NotebookError, match="needs no step"):
        upstream_of(spec, _step("extract"), frame)
    with pytest.raises(NotebookError, match="needs 'other'"):
        upstream_of(spec, _step("join"), inputs={"clean": frame})
    with pytest.raises(NotebookError, match=r"'clena', which is not a step .*did you mean 'clean'"):
        upstream_of(spec, _step("join"), inputs={"clena": frame})


def test_params_are_checked_and_defaulted_as_the_server_does() -> None:
    spec = _spec()
    assert check_params(spec, {"day": "2026-06-01"}) == {"day": "2026-06-01", "limit": 100}
    with pytest.raises(NotebookError, match="parameter 'day' is required"):
        check_params(spec, {})
    with pytest.raises(NotebookError, match=r"params\.limit"):
        check_params(spec, {"day": "2026-06-01", "limit": "many"})
    with pytest.raises(NotebookError, match="'dya'"):
        check_params(spec, {"day": "2026-06-01", "dya": 1})


def test_limits_come_from_the_spec_or_the_call() -> None:
    spec = _spec()
    assert limits_of(spec, "extract") == (300.0, 1 << 30)
    assert limits_of(spec, "clean") == (30.0, 1 << 30)
    assert limits_of(spec, "join") == (300.0, 256 << 20)
    assert limits_of(spec, "join", timeout="2s", memory="64Mi") == (2.0, 64 << 20)
    assert limits_of(spec, "join", timeout=1.5, memory=1000) == (1.5, 1000)
    with pytest.raises(NotebookError, match="timeout= or memory="):
        limits_of(spec, "join", memory="lots")
    with pytest.raises(NotebookError, match="more than 0"):
        limits_of(spec, "join", timeout=0)


def test_connections_come_from_the_call_or_the_agents_variables() -> None:
    step = _step("extract")
    env = {"LEGATO_CONNECTION_WAREHOUSE": "sqlite:///env.db"}
    assert step_connections(step, None, env) == {"warehouse": "sqlite:///env.db"}
    assert step_connections(step, {"warehouse": "sqlite:///given.db"}, env) == {
        "warehouse": "sqlite:///given.db"
    }
    with pytest.raises(NotebookError) as missing:
        step_connections(step, None, {})
    assert "connection 'warehouse'" in str(missing.value)
    assert "LEGATO_CONNECTION_WAREHOUSE" in str(missing.value)
    assert step_connections(_step("clean"), None, {}) == {}


def test_the_task_is_the_one_an_agent_would_run(tmp_path: Path) -> None:
    spec = _spec()
    step = _step("clean")
    upstream = upstream_of(spec, step, pd.DataFrame({"x": [1]}))
    task = build_task(
        spec,
        step,
        params={"day": "2026-06-01", "limit": 7},
        upstream=upstream,
        resolved={},
        timeout=30.0,
        memory_bytes=1 << 20,
        connections={},
        workdir=tmp_path,
        run_id="notebook-1",
    )
    assert (task.kind, task.step_name, task.pipeline) == ("transform", "clean", "etl")
    assert task.params == {"day": "2026-06-01", "limit": 7}  # ints stay ints, as on an agent
    assert (task.timeout, task.memory_bytes, task.isolation) == (30.0, 1 << 20, "process")
    (given,) = task.inputs
    assert given.step == "extract" and given.table_path == tmp_path / "inputs" / "extract.arrow"
    assert given.table_path.exists()

    resolved = resolved_for(spec, _step("extract"), {"day": "2026-06-01", "limit": 5}, {}, "r1")
    assert resolved == {"parameters": {"day": "2026-06-01", "n": 5}}


def test_results_summarise_what_ran() -> None:
    done = StepResult(
        step="clean", status="succeeded", records_in=127, records_out=98, duration=0.5
    )
    assert done.summary() == "clean: succeeded (127 → 98) in 0.50 s"
    skipped = StepResult(step="report", status="skipped", error="when 'x' was false")
    result = TestResult("etl", "succeeded", {"clean": done, "report": skipped})
    assert str(result).splitlines() == [
        "pipeline 'etl': succeeded",
        "  clean: succeeded (127 → 98) in 0.50 s",
        "  report: skipped: when 'x' was false",
    ]
    with pytest.raises(KeyError, match="its steps: 'clean', 'report'"):
        result["nope"]


NOT_IN_THE_NOTEBOOK_EXTRA = (
    "aiohttp",
    "aiosmtplib",
    "aiosqlite",
    "alembic",
    "asyncpg",
    "croniter",
    "cryptography",
    "greenlet",
    "grpc_health",
    "grpc_reflection",
    "openlineage",
)
"""Server dependencies that ``legato[notebook]`` (``legato[agent]`` + ipykernel) does not
install: the control-plane modules the notebook reuses must not need them."""

PROBE = """
import sys

class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ImportError(f"not in the notebook extra: {{name}}")

sys.meta_path.insert(0, Refuse())
import legato.notebook
from legato.v1 import spec_pb2

spec = spec_pb2.PipelineSpec(name="probe")
spec.steps.add(name="a").transform.code = "result = {{'n': 1}}"
spec.steps.add(name="b", needs=["a"], when="steps.a.outputs.n == 1").transform.code = (
    "result = inputs['a']"
)
print(legato.notebook.load(spec).test().status)
"""


def test_the_notebook_runs_with_the_notebook_extra_only() -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(blocked=set(NOT_IN_THE_NOTEBOOK_EXTRA))],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "succeeded"
