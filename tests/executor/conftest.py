"""Fixtures for the runner's tests: a started Runner (real fork server, real children), a
Task factory with a work directory per task."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from executor.runner import Runner, Task, TaskInput
from executor.runner.task import Isolation
from tests.executor.runner_support import USER_MODULES, MakeTask


@pytest.fixture
def make_task(tmp_path: Path) -> MakeTask:
    count = 0

    def make(
        code: str | None = None,
        *,
        kind: str = "transform",
        config: dict[str, Any] | None = None,
        inputs: list[TaskInput] | None = None,
        params: dict[str, Any] | None = None,
        timeout: float | None = None,
        memory_bytes: int | None = None,
        step: str = "clean",
        isolation: Isolation = "process",
    ) -> Task:
        nonlocal count
        count += 1
        workdir = tmp_path / f"attempt-{count}"
        workdir.mkdir()
        return Task(
            lease_id=f"lease-{count}",
            run_id="run-1",
            pipeline="etl",
            step_name=step,
            attempt=1,
            kind=kind,
            config=config if config is not None else {"code": code or ""},
            params=params or {},
            inputs=inputs or [],
            timeout=timeout,
            memory_bytes=memory_bytes,
            workdir=workdir,
            isolation=isolation,
        )

    return make


@pytest.fixture
async def runner() -> AsyncIterator[Runner]:
    runner = Runner(grace_seconds=1.0, module_path=[USER_MODULES])
    await runner.start()
    try:
        yield runner
    finally:
        await runner.stop()
