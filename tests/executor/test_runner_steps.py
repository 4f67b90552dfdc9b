"""Steps run through the real runner: fork server, child process, Arrow files in and out."""

from __future__ import annotations

from datetime import UTC
from pathlib import Path

import pandas as pd
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.ipc as ipc  # type: ignore[import-untyped]

from executor.runner import ColumnInfo, Runner, TaskInput
from tests.executor.runner_support import USER_MODULES, Logs, MakeTask


def write_users(path: Path, rows: int = 127) -> Path:
    table = pa.table(
        {
            "id": list(range(rows)),
            "age": [17 - i % 5 if i < 29 else 18 + i % 50 for i in range(rows)],  # 29 minors
            "name": [f"user-{i}" for i in range(rows)],
        }
    )
    with pa.OSFile(str(path), "wb") as sink, ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    return path


def read_arrow(path: Path) -> pd.DataFrame:
    frame: pd.DataFrame = ipc.open_file(pa.memory_map(str(path))).read_all().to_pandas()
    return frame


async def test_a_no_op_transform_succeeds_with_no_output(
    runner: Runner, make_task: MakeTask
) -> None:
    logs = Logs()
    started: list[int] = []
    outcome = await runner.run(
        make_task("result = None"), logs, lambda pid, _t: started.append(pid)
    )
    assert outcome.status == "succeeded", outcome.error
    assert (outcome.failure_kind, outcome.error) == (None, "")
    assert (outcome.records_in, outcome.records_out, outcome.rows) == (None, None, None)
    assert (outcome.values, outcome.table_path, outcome.columns) == ({}, None, [])
    assert len(started) == 1 and started[0] != runner.zygote_pid
    assert outcome.started_at.tzinfo is UTC and outcome.ended_at >= outcome.started_at
    assert outcome.max_rss_bytes is not None and outcome.max_rss_bytes > 0
    assert logs.lines == []


async def test_a_transform_filters_an_upstream_table(
    runner: Runner, make_task: MakeTask, tmp_path: Path
) -> None:
    users = write_users(tmp_path / "users.arrow")
    code = "print(len(data), 'rows in')\nresult = data[data['age'] >= 18]\n"
    task = make_task(code, inputs=[TaskInput("extract", {"records": 127}, users)])
    logs = Logs()
    outcome = await runner.run(task, logs)
    assert outcome.status == "succeeded", outcome.error
    assert (outcome.records_in, outcome.records_out, outcome.rows) == (127, 98, 98)
    assert outcome.columns == [
        ColumnInfo("id", "int64"),
        ColumnInfo("age", "int64"),
        ColumnInfo("name", "large_string"),  # pandas 3 strings
    ]
    assert outcome.table_path == task.workdir / "output.arrow"
    frame = read_arrow(outcome.table_path)
    assert len(frame) == 98 and list(frame.columns) == ["id", "age", "name"]
    assert (frame["age"] >= 18).all()
    assert logs.of("stdout") == ["127 rows in"]


async def test_a_transform_sees_inputs_params_and_values(
    runner: Runner, make_task: MakeTask, tmp_path: Path
) -> None:
    users = write_users(tmp_path / "users.arrow", rows=5)
    orders = write_users(tmp_path / "orders.arrow", rows=3)
    code = (
        "result = {'data': data is None, 'users': len(inputs['users']),\n"
        "          'orders': len(inputs['orders']), 'settings': inputs['settings'],\n"
        "          'day': params['day'], 'pandas': pd.__name__}\n"
    )
    task = make_task(
        code,
        params={"day": "2026-06-12"},
        inputs=[
            TaskInput("users", {}, users),
            TaskInput("orders", {}, orders),
            TaskInput("settings", {"region": "eu"}, None),
        ],
    )
    outcome = await runner.run(task, Logs())
    assert outcome.status == "succeeded", outcome.error
    assert outcome.values == {
        "data": True,  # two upstream tables: no single `data`
        "users": 5,
        "orders": 3,
        "settings": {"region": "eu"},
        "day": "2026-06-12",
        "pandas": "pandas",
    }
    assert (outcome.records_in, outcome.records_out) == (8, None)


async def test_transform_results_become_tables_or_values(
    runner: Runner, make_task: MakeTask
) -> None:
    cases = {
        "result = [{'a': 1}, {'a': 2}]": (2, {}),
        "import numpy as np\nresult = {'n': np.int64(3), 'on': pd.Timestamp('2026-01-02')}": (
            None,
            {"n": 3, "on": "2026-01-02T00:00:00"},
        ),
        "result = 2.5": (None, {"result": 2.5}),
        "x = 1\nresult = None": (None, {}),  # declared to have no output
    }
    for code, (rows, values) in cases.items():
        outcome = await runner.run(make_task(code), Logs())
        assert outcome.status == "succeeded", (code, outcome.error)
        assert (outcome.rows, outcome.values) == (rows, values), code


async def test_a_result_that_is_not_json_is_refused(runner: Runner, make_task: MakeTask) -> None:
    outcome = await runner.run(make_task("result = {'tags': {1, 2}}"), Logs())
    assert (outcome.status, outcome.failure_kind) == ("failed", "error")
    assert outcome.error.startswith(
        "the transform's result['tags'] is a set, which is not a JSON value"
    )


async def test_an_error_in_a_transform_names_its_line(runner: Runner, make_task: MakeTask) -> None:
    logs = Logs()
    code = "x = 1\ny = 2\nraise ValueError('bad value')\n"
    outcome = await runner.run(make_task(code), logs)
    assert (outcome.status, outcome.failure_kind) == ("failed", "error")
    assert outcome.error == "ValueError: bad value (transform line 3)"
    stderr = logs.of("stderr")
    assert stderr[0] == "Traceback (most recent call last):"
    assert '  File "<transform>", line 3, in <module>' in stderr
    assert "    raise ValueError('bad value')" in stderr
    assert not any("executor/kinds" in line for line in stderr)  # user frames only
    assert stderr[-1] == "ValueError: bad value"


async def test_an_error_inside_pandas_names_the_transform_line(
    runner: Runner, make_task: MakeTask
) -> None:
    code = "frame = pd.DataFrame({'a': [1]})\n\nframe['missing']\n"
    outcome = await runner.run(make_task(code), Logs())
    assert outcome.error == "KeyError: 'missing' (transform line 3)"


async def test_a_syntax_error_names_its_line(runner: Runner, make_task: MakeTask) -> None:
    logs = Logs()
    outcome = await runner.run(make_task("x = 1\nif x\n    pass\n"), logs)
    assert outcome.error == "SyntaxError: expected ':' (transform line 2)"
    assert "SyntaxError: expected ':'" in logs.of("stderr")


async def test_a_function_gets_args_and_the_single_upstream_table(
    runner: Runner, make_task: MakeTask, tmp_path: Path
) -> None:
    users = write_users(tmp_path / "users.arrow")
    task = make_task(
        kind="function",
        config={"function": "legato_runner_steps:keep_adults", "args": {"min_age": 18}},
        inputs=[TaskInput("extract", {}, users)],
    )
    outcome = await runner.run(task, Logs())
    assert outcome.status == "succeeded", outcome.error
    assert (outcome.records_in, outcome.records_out) == (127, 98)


async def test_a_function_gets_upstreams_by_parameter_name(
    runner: Runner, make_task: MakeTask, tmp_path: Path
) -> None:
    users = write_users(tmp_path / "users.arrow", rows=4)
    inputs = [TaskInput("users", {}, users), TaskInput("settings", {"region": "eu"}, None)]
    ref = "legato_runner_steps:join_counts"
    outcome = await runner.run(
        make_task(kind="function", config={"function": ref, "args": {"label": "n"}}, inputs=inputs),
        Logs(),
    )
    assert outcome.status == "succeeded", outcome.error
    assert outcome.values == {"n": 4, "region": "eu"}
    ref = "legato_runner_steps:with_everything"
    outcome = await runner.run(
        make_task(kind="function", config={"function": ref}, inputs=inputs, params={"p": 1}),
        Logs(),
    )
    assert outcome.values == {"data": False, "inputs": ["settings", "users"], "params": {"p": 1}}


async def test_function_results_and_coroutines(runner: Runner, make_task: MakeTask) -> None:
    outcome = await runner.run(
        make_task(kind="function", config={"function": "legato_runner_steps:records"}), Logs()
    )
    assert (outcome.rows, [c.name for c in outcome.columns]) == (2, ["id", "name"])
    outcome = await runner.run(
        make_task(
            kind="function",
            config={"function": "legato_runner_steps:async_total"},
            params={"a": 2, "b": 3},
        ),
        Logs(),
    )
    assert outcome.values == {"result": 5}


async def test_function_errors_say_what_is_wrong(runner: Runner, make_task: MakeTask) -> None:
    async def error(config: dict[str, object]) -> str:
        task = make_task(kind="function", config=config, inputs=[TaskInput("users", {}, None)])
        outcome = await runner.run(task, Logs())
        assert (outcome.status, outcome.failure_kind) == ("failed", "error")
        return outcome.error

    assert (
        await error({"function": "x.y:z"}) == "cannot import 'x.y:z' on agent: No module named 'x'"
    )
    assert await error({"function": "legato_runner_steps:nope"}) == (
        "cannot import 'legato_runner_steps:nope' on agent: "
        "'legato_runner_steps' has no attribute 'nope'"
    )
    assert await error({"function": "legato_runner_steps"}) == (
        "function 'legato_runner_steps' must be written as 'package.module:function'"
    )
    assert await error({"function": "legato_runner_steps:needs_mystery"}) == (
        "function 'legato_runner_steps:needs_mystery' needs 'mystery', which the step does "
        "not provide; it can pass args (none given), data, inputs, params and the upstream "
        "steps ('users')"
    )
    assert await error({"function": "legato_runner_steps:records", "args": {"x": 1}}) == (
        "function 'legato_runner_steps:records' has no parameter 'x' given in args; "
        "its parameters are none"
    )


async def test_an_error_in_a_function_names_the_user_line(
    runner: Runner, make_task: MakeTask
) -> None:
    logs = Logs()
    task = make_task(
        kind="function",
        config={"function": "legato_runner_steps:explode"},
        params={"up_to": 5},
    )
    outcome = await runner.run(task, logs)
    source = (USER_MODULES / "legato_runner_steps.py").read_text().splitlines()
    line = next(n for n, text in enumerate(source, 1) if "raise ValueError" in text)
    assert outcome.error == f"ValueError: bad value 3 (legato_runner_steps line {line})"
    stderr = logs.of("stderr")
    assert "ValueError: bad value 3" in stderr
    assert any(f'legato_runner_steps.py", line {line}, in _check' in text for text in stderr)
    assert not any("executor/kinds" in text or "executor/runner" in text for text in stderr)


async def test_an_unknown_kind_is_refused(runner: Runner, make_task: MakeTask) -> None:
    outcome = await runner.run(make_task(kind="sensor", config={"poke": "x"}), Logs())
    assert outcome.error == (
        "this agent cannot run steps of kind 'sensor' (it runs: export, function, query, transform)"
    )


async def test_the_step_runs_in_its_workdir_with_its_identity(
    runner: Runner, make_task: MakeTask
) -> None:
    code = (
        "import os\n"
        "open('scratch.txt', 'w').write('x')\n"
        "names = ('LEGATO_STEP', 'LEGATO_PIPELINE', 'LEGATO_ATTEMPT')\n"
        "result = {k: os.environ[k] for k in names}\n"
        "result['cwd'] = os.getcwd()\n"
    )
    task = make_task(code)
    outcome = await runner.run(task, Logs())
    assert outcome.values == {
        "LEGATO_STEP": "clean",
        "LEGATO_PIPELINE": "etl",
        "LEGATO_ATTEMPT": "1",
        "cwd": str(task.workdir.resolve()),
    }
    assert (task.workdir / "scratch.txt").read_text() == "x"


async def test_children_draw_different_random_numbers(runner: Runner, make_task: MakeTask) -> None:
    code = (
        "import random\nimport numpy as np\nresult = [random.random(), float(np.random.random())]"
    )
    first = await runner.run(make_task(code), Logs())
    second = await runner.run(make_task(code), Logs())
    assert first.values["result"][0] != second.values["result"][0]
    assert first.values["result"][1] != second.values["result"][1]
