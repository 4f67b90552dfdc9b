"""Functions the integration tests' pipelines call (`function` steps); agents find this
module through PYTHONPATH."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any


def flaky(marker: str, fail_times: int) -> dict[str, Any]:
    """Fails the first ``fail_times`` calls (counted in the file ``marker``), then succeeds."""
    path = Path(marker)
    count = int(path.read_text()) if path.exists() else 0
    path.write_text(str(count + 1))
    if count < fail_times:
        raise RuntimeError(f"flaky failure {count + 1} of {fail_times}")
    return {"calls": count + 1}


def slow(seconds: float, marker: str = "") -> dict[str, Any]:
    """Sleeps; writes its pid to ``marker`` first so tests can find it."""
    if marker:
        Path(marker).write_text(str(os.getpid()))
    time.sleep(seconds)
    return {"slept": seconds}


def where(marker: str = "") -> dict[str, Any]:
    return {"pid": os.getpid(), "host": os.uname().nodename}


def effect(ledger: str, seconds: float = 0.0) -> dict[str, Any]:
    """Appends ``start RUN STEP ATTEMPT`` to ``ledger``, sleeps, then appends ``done ...``:
    tests count how often each step ran and finished."""
    key = " ".join(os.environ[v] for v in ("LEGATO_RUN_ID", "LEGATO_STEP", "LEGATO_ATTEMPT"))
    with open(ledger, "a") as handle:
        handle.write(f"start {key}\n")
    time.sleep(seconds)
    with open(ledger, "a") as handle:
        handle.write(f"done {key}\n")
    return {"slept": seconds}
