"""The drills' step: ``legato_drill_steps:work``, found by agents through PYTHONPATH.

It keeps an effects ledger: one line per event, appended to the file ``ledger`` with a
single ``O_APPEND`` write (atomic for lines this short), so a test counts exactly how many
times each (run, step) started and how many times it completed, whatever process wrote it:

    started   RUN STEP ATTEMPT AGENT PID
    completed RUN STEP ATTEMPT AGENT PID

``completed`` is written at the very end of the step, after its work: it is the step's
effect. Between the two the step works ``ticks`` times 0.1 s (counted in ticks, so time spent
stopped by SIGSTOP does not count as work done) and, for its attempts up to ``hold``, first
waits until the test opens its gate: the file ``gates/RUN.STEP.ATTEMPT`` next to the ledger.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

TICK = 0.1


def _mark(ledger: str, event: str, attempt: int) -> None:
    fields = [
        event,
        os.environ["LEGATO_RUN_ID"],
        os.environ["LEGATO_STEP"],
        str(attempt),
        os.environ.get("DRILL_AGENT", "-"),
        str(os.getpid()),
    ]
    fd = os.open(ledger, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (" ".join(fields) + "\n").encode())
    finally:
        os.close(fd)


def work(ledger: str, ticks: float = 0, hold: float = 0) -> dict[str, Any]:
    # Numbers of args arrive as JSON numbers (floats).
    attempt = int(os.environ["LEGATO_ATTEMPT"])
    _mark(ledger, "started", attempt)
    if attempt <= int(hold):
        name = f"{os.environ['LEGATO_RUN_ID']}.{os.environ['LEGATO_STEP']}.{attempt}"
        gate = Path(ledger).with_name("gates") / name
        while not gate.exists():
            time.sleep(0.02)
    for _ in range(int(ticks)):
        time.sleep(TICK)
    _mark(ledger, "completed", attempt)
    return {"attempt": attempt, "agent": os.environ.get("DRILL_AGENT", "-")}
