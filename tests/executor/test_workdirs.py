"""The agent's work directory: held by one agent at a time (another process is refused with
a message naming it; the lock goes with its holder, even killed with SIGKILL), and what a
killed agent's attempts left is removed at start, whatever else the directory holds."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from executor.config import ConfigError
from executor.workdirs import LOCK_FILE, WorkdirInUseError, claim_workdir, remove_attempt

ROOT = Path(__file__).parents[2]
LEASE = "01kc4m8x0e5pwq9t2v7ynbzr3h"  # the shape of the control plane's lease ids


def claim_in_another_process(workdir: Path, *, then: str = "") -> subprocess.Popen[str]:
    """A process that claims ``workdir``, prints ``claimed`` or the refusal, then runs
    ``then``."""
    script = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from executor.workdirs import WorkdirInUseError, claim_workdir
        try:
            claim_workdir(Path({str(workdir)!r}))
        except WorkdirInUseError as exc:
            print("refused:", exc, flush=True)
            sys.exit(2)
        print("claimed", flush=True)
        {then}
        """
    )
    return subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )


def test_a_work_directory_in_use_is_refused_naming_it_and_its_agent(tmp_path: Path) -> None:
    workdir = tmp_path / "work"
    claim = claim_workdir(workdir)
    other = claim_in_another_process(workdir)
    out, _ = other.communicate(timeout=30)
    assert other.returncode == 2, out
    assert out.strip() == (
        f"refused: the work directory {workdir} is in use by another agent "
        f"(pid {os.getpid()} on host {os.uname().nodename}); give each agent a work "
        "directory of its own (--workdir or LEGATO_AGENT_WORKDIR)"
    )
    # In this process too (another Agent in `legato up`'s process), as a setting error.
    with pytest.raises(ConfigError, match="is in use by another agent"):
        claim_workdir(workdir)
    claim.release()
    again = claim_in_another_process(workdir)
    assert again.communicate(timeout=30)[0].strip() == "claimed"


def test_the_lock_goes_with_an_agent_killed_with_sigkill(tmp_path: Path) -> None:
    workdir = tmp_path / "work"
    holder = claim_in_another_process(workdir, then="time.sleep(300)")
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "claimed"
        with pytest.raises(WorkdirInUseError):
            claim_workdir(workdir)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    claim_workdir(workdir).release()


def test_what_a_killed_agent_left_is_removed_and_nothing_else(tmp_path: Path) -> None:
    workdir = tmp_path / "work"
    attempt = workdir / LEASE
    (attempt / "inputs").mkdir(parents=True)
    task = attempt / "task.json"
    task.write_text('{"connections": {"warehouse": "postgresql://u:secret@db/x"}}')
    task.chmod(0o600)
    downloading = workdir / "01kc4m8x0e5pwq9t2v7ynbzr3j"  # killed before task.json
    downloading.mkdir()
    kept = [workdir / "notes", workdir / "README.txt", workdir / "lease-1", workdir / LEASE[:-1]]
    kept[0].mkdir()
    for path in kept[1:]:
        path.write_text("not an attempt's")
    claim = claim_workdir(workdir)
    try:
        assert not attempt.exists() and not downloading.exists()
        assert all(path.exists() for path in kept)
        assert sorted(p.name for p in workdir.iterdir()) == sorted(
            [LOCK_FILE, *(p.name for p in kept)]
        )
    finally:
        claim.release()


@pytest.fixture
def nobody_dir() -> Iterator[tuple[Path, int]]:
    """A directory owned by an unprivileged user (read-only directories bind root not)."""
    path = Path(tempfile.mkdtemp())
    uid = os.geteuid() if os.geteuid() != 0 else pwd.getpwnam("nobody").pw_uid
    os.chown(path, uid, -1)
    try:
        yield path, uid
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_an_attempt_that_made_its_files_read_only_is_removed_all_the_same(
    nobody_dir: tuple[Path, int],
) -> None:
    directory, uid = nobody_dir
    workdir = directory / "work"
    script = textwrap.dedent(
        f"""
        import os
        from pathlib import Path
        from executor.workdirs import claim_workdir
        if os.geteuid() != {uid}:  # the interpreter's files may be root's alone: imported
            os.setuid({uid})
        attempt = Path({str(workdir / LEASE)!r})
        (attempt / "cache" / "locked").mkdir(parents=True)
        (attempt / "cache" / "locked" / "module.py").write_text("x = 1")
        (attempt / "cache" / "hidden").mkdir()
        (attempt / "cache" / "hidden" / "f").write_text("y")
        (attempt / "cache" / "hidden").chmod(0)
        (attempt / "cache" / "locked").chmod(0o500)
        (attempt / "cache").chmod(0o500)
        claim_workdir(attempt.parent).release()
        print(sorted(p.name for p in attempt.parent.iterdir()))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == str([LOCK_FILE])  # after the log line


@pytest.mark.parametrize("extra", ["none", "output", "artifact", "no task"])
def test_an_ended_attempts_directory_is_removed_whatever_it_holds(
    tmp_path: Path, extra: str
) -> None:
    attempt = tmp_path / "01hzy3m5k9q7r2x8w4v6t0abcd"
    (attempt / "artifacts").mkdir(parents=True)
    if extra != "no task":
        (attempt / "task.json").write_text("{}")
    if extra == "output":
        (attempt / "output.arrow").write_bytes(b"table")
    if extra == "artifact":
        (attempt / "artifacts" / "report.csv").write_text("a,b\n")
    remove_attempt(attempt)
    assert not attempt.exists()
