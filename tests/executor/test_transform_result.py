"""A transform must bind ``result``: code that never does fails its step with a message
naming the step and what to write, instead of passing nothing downstream as if it were
the output. ``result = None`` says the step has no output. Through the real runner (fork
server, child process), in both isolations."""

from __future__ import annotations

import pytest

from executor.runner import Runner, TaskInput
from executor.runner.task import Isolation
from tests.executor.runner_support import Logs, MakeTask

ISOLATIONS: list[Isolation] = ["process", "pooled"]


@pytest.mark.parametrize("isolation", ISOLATIONS)
@pytest.mark.parametrize(
    "code",
    [
        "cleaned = data",  # the assignment went to another name
        "def f(data):\n    result = data\nf(data)",  # bound in a function, not the step's
        "result = 1\ndel result",
    ],
)
async def test_a_transform_that_never_sets_result_fails_and_says_so(
    runner: Runner, make_task: MakeTask, isolation: Isolation, code: str
) -> None:
    task = make_task(
        code, step="clean", isolation=isolation, inputs=[TaskInput("extract", {"n": 1}, None)]
    )
    outcome = await runner.run(task, Logs())

    assert outcome.status == "failed"
    assert outcome.error == (
        "the transform of step 'clean' never sets `result`, so it has no output to pass on; "
        "assign the output to `result` (a DataFrame, a list of dicts or a dict of values), "
        "or write `result = None` if the step has none"
    )
    assert (outcome.values, outcome.table_path) == ({}, None)


@pytest.mark.parametrize("isolation", ISOLATIONS)
async def test_result_none_declares_a_step_without_output(
    runner: Runner, make_task: MakeTask, isolation: Isolation
) -> None:
    outcome = await runner.run(
        make_task("print('side effect only')\nresult = None", isolation=isolation), Logs()
    )

    assert outcome.status == "succeeded", outcome.error
    assert (outcome.values, outcome.table_path, outcome.rows) == ({}, None, None)


async def test_a_result_set_on_one_branch_only_fails_on_the_other(
    runner: Runner, make_task: MakeTask
) -> None:
    code = "if params['full']:\n    result = {'rows': 1}\n"

    taken = await runner.run(make_task(code, params={"full": True}), Logs())
    skipped = await runner.run(make_task(code, params={"full": False}), Logs())

    assert taken.status == "succeeded" and taken.values == {"rows": 1}
    assert skipped.status == "failed"
    assert "never sets `result`" in skipped.error
