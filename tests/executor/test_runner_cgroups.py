"""Detection of a delegated cgroup v2 and its memory controller, over fake /proc and cgroup
trees (a delegated memory controller cannot be arranged in a test), and the fallback where
there is none. Real cgroups, where this machine has them: test_runner_cleanup.py."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from executor.runner.cgroups import CgroupPool


def fake_system(tmp_path: Path, *, controllers: str, subtree: str = "") -> tuple[Path, Path]:
    proc = tmp_path / "proc"
    proc.mkdir()
    mount = tmp_path / "cgroup"
    (proc / "mountinfo").write_text(
        "25 30 0:22 / /proc rw,nosuid - proc proc rw\n"
        f"31 30 0:26 / {mount} rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"
    )
    (proc / "cgroup").write_text("0::/system.slice/legato-agent.service\n")
    own = mount / "system.slice" / "legato-agent.service"
    own.mkdir(parents=True)
    (own / "cgroup.controllers").write_text(controllers + "\n")
    (own / "cgroup.subtree_control").write_text(subtree + "\n")
    return proc, own


def test_without_a_memory_controller_cgroups_hold_attempts_but_limit_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(CgroupPool, "remove", staticmethod(shutil.rmtree))
    proc, own = fake_system(tmp_path, controllers="cpu io pids")
    pool = CgroupPool.detect(proc=proc)
    assert pool is not None and pool.root == own and not pool.memory
    # No controller to hand down, so the agent stays where it is.
    assert not (own / "legato-agent").exists()
    assert (own / "cgroup.subtree_control").read_text() == "\n"


def test_no_cgroup2_mount_means_no_pool(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    proc.mkdir()
    (proc / "mountinfo").write_text("25 30 0:22 / /proc rw - proc proc rw\n")
    (proc / "cgroup").write_text("4:memory:/agent\n")
    assert CgroupPool.detect(proc=proc) is None


def test_a_delegated_controller_is_enabled_for_attempt_cgroups(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Plain files cannot be removed like cgroup directories: remove them as a tree.
    monkeypatch.setattr(CgroupPool, "remove", staticmethod(shutil.rmtree))
    proc, own = fake_system(tmp_path, controllers="cpu memory pids")
    pool = CgroupPool.detect(proc=proc)
    assert pool is not None and pool.root == own
    # The agent moved itself into a leaf before enabling memory for its children.
    assert (own / "legato-agent" / "cgroup.procs").read_text() == str(os.getpid())
    assert (own / "cgroup.subtree_control").read_text() == "+memory"
    assert pool.memory
    path = pool.create()
    assert path == own / f"legato-{os.getpid()}-{os.getpid()}-2"  # after the probe
    pool.limit(path, 100 * 2**20)
    assert (path / "memory.max").read_text() == str(100 * 2**20)
    assert (path / "memory.swap.max").read_text() == "0"
    assert (path / "memory.oom.group").read_text() == "1"
    (path / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 0\n")
    assert not CgroupPool.oom_killed(path)
    (path / "memory.events").write_text("low 0\nhigh 0\nmax 9\noom 2\noom_kill 1\n")
    assert CgroupPool.oom_killed(path)
