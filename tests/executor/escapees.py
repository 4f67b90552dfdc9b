"""A process that tries to outlive the step that started it, for the tests of what dies with
a step: started with ``python -c``, it leaves the step's session and process group
(``setsid``), ignores SIGTERM (noting that it came in ``<pidfile>.term``), writes its pid to
``<pidfile>`` once all that is done, and sleeps. Orphaned, it first forks and lets its
parent exit, so it is orphaned while the step still runs (a daemon's double fork)."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

from tests.executor.runner_support import alive

__all__ = ["escapee_alive", "escapee_pid", "kill_escapee", "step_code", "terminated"]

MARK = "legato-escapee"
"""In its command line, so a test kills only its own escapees."""

_ESCAPEE = """# {mark}
import os, signal, sys, time
pidfile = sys.argv[1]
if sys.argv[2] == "orphan" and os.fork():
    os._exit(0)
os.setsid()
def noted(signum, frame):
    with open(pidfile + ".term", "w") as out:
        out.write("SIGTERM")
signal.signal(signal.SIGTERM, noted)
with open(pidfile + ".tmp", "w") as out:
    out.write(str(os.getpid()))
os.replace(pidfile + ".tmp", pidfile)
while True:
    time.sleep(300)
"""


def step_code(pidfile: Path, *, orphan: bool = False, then: str = "") -> str:
    """Code of a ``transform`` step that starts an escapee, waits until it has written
    ``pidfile``, then runs ``then`` (nothing: the step succeeds at once)."""
    escapee = _ESCAPEE.format(mark=MARK)
    mode = "orphan" if orphan else "child"
    return (
        "import os, subprocess, sys, time\n"
        f"subprocess.Popen([sys.executable, '-c', {escapee!r}, {str(pidfile)!r}, {mode!r}])\n"
        f"while not os.path.exists({str(pidfile)!r}):\n"
        "    time.sleep(0.01)\n"
        f"{then}\n"
        "result = os.getpid()\n"
    )


def escapee_pid(pidfile: Path) -> int:
    return int(pidfile.read_text())


def _is_escapee(pid: int) -> bool:
    try:
        return MARK.encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def escapee_alive(pidfile: Path) -> bool:
    """Whether the escapee of ``pidfile`` still runs."""
    pid = escapee_pid(pidfile)
    return alive(pid) and _is_escapee(pid)


def terminated(pidfile: Path) -> bool:
    """Whether the escapee was sent SIGTERM."""
    return pidfile.with_name(pidfile.name + ".term").exists()


def kill_escapee(pidfile: Path) -> None:
    """Kill the escapee of ``pidfile`` if it is still there (a failed test leaves nothing)."""
    if not pidfile.exists():
        return
    pid = escapee_pid(pidfile)
    if _is_escapee(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
