"""Runs one step in the attempt's process and returns the result document.

The task document (written by the runner as ``<workdir>/task.json``) says what to run; the
result document is what the runner turns into an Outcome:

    {"status": "succeeded" | "failed", "failure_kind": "error" | "memory" | null,
     "error": str, "records_in": int | null, "records_out": int | null, "values": {...},
     "table": {"path": str, "rows": int, "columns": [[name, type], ...]} | null,
     "started_at": epoch seconds, "ended_at": epoch seconds}
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from executor.kinds import KINDS, StepContext, StepError, Upstream
from executor.kinds.tables import write_table

__all__ = ["run_task"]


def _context(task: dict[str, Any]) -> StepContext:
    return StepContext(
        pipeline=task["pipeline"],
        step=task["step_name"],
        run_id=task["run_id"],
        attempt=task["attempt"],
        params=task["params"],
        upstreams=tuple(
            Upstream(i["step"], i["values"], Path(i["table_path"]) if i["table_path"] else None)
            for i in task["inputs"]
        ),
        workdir=Path(task["workdir"]),
        connections=dict(task.get("connections") or {}),
        resolved=dict(task.get("resolved") or {}),
    )


def _environ(task: dict[str, Any]) -> None:
    for name, value in task.get("environ", {}).items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def _failed(kind: str, error: str) -> dict[str, Any]:
    return {"status": "failed", "failure_kind": kind, "error": error}


def _execute(task: dict[str, Any]) -> dict[str, Any]:
    kind = KINDS.get(task["kind"])
    if kind is None:
        known = ", ".join(sorted(KINDS))
        return _failed(
            "error", f"this agent cannot run steps of kind {task['kind']!r} (it runs: {known})"
        )
    unresolved = (task.get("resolved") or {}).get("error")
    if unresolved:
        return _failed("error", str(unresolved))
    try:
        result = kind.run(task["config"], _context(task))
        document: dict[str, Any] = {
            "status": "succeeded",
            "failure_kind": None,
            "error": "",
            "records_in": result.records_in,
            "records_out": result.records_out,
            "values": result.values,
            "table": None,
        }
        if result.table is not None:
            path = Path(task["output_path"])
            columns = write_table(result.table, path)
            document["table"] = {
                "path": str(path),
                "rows": result.table.num_rows,
                "columns": columns,
            }
        return document
    except StepError as exc:
        return _failed(exc.kind, exc.message)
    except MemoryError as exc:
        return _failed("memory", f"MemoryError: {exc}" if str(exc) else "MemoryError")
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)
        return _failed("error", f"the {task['kind']} step kind failed: {type(exc).__name__}: {exc}")


def run_task(task_path: str, started: float) -> dict[str, Any]:
    task = json.loads(Path(task_path).read_text())
    os.chdir(task["workdir"])
    _environ(task)
    document = _execute(task)
    document["started_at"] = started
    document["ended_at"] = time.time()
    return document
