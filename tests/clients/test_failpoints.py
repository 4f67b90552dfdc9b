"""Fail points: inert unless armed, armed from LEGATO_FAILPOINTS or in-process, and each
term doing what it says — including ``exit``, which ends the process on the spot."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from legato import failpoints
from legato.failpoints import FailpointError, armed, failpoint


def test_an_unarmed_point_does_nothing_and_an_armed_one_runs_until_the_block_ends() -> None:
    calls: list[str] = []
    failpoint("test.point")
    with armed("test.point", lambda: calls.append("fired")):
        failpoint("test.point")
        failpoint("test.other")
        failpoint("test.point")
    failpoint("test.point")
    assert calls == ["fired", "fired"]


def test_armed_restores_what_was_armed_before() -> None:
    calls: list[str] = []
    with armed("test.point", lambda: calls.append("outer")):
        with armed("test.point", "off"):
            failpoint("test.point")
        failpoint("test.point")
    assert calls == ["outer"]


def test_terms_sleep_raise_and_off() -> None:
    with armed("test.nap", "sleep(120)"):
        started = time.monotonic()
        failpoint("test.nap")
        assert time.monotonic() - started >= 0.12
    with (
        armed("test.boom", "raise(disk full)"),
        pytest.raises(FailpointError, match=r"^disk full$"),
    ):
        failpoint("test.boom")
    with armed("test.boom", "raise"), pytest.raises(FailpointError) as caught:
        failpoint("test.boom")
    assert str(caught.value) == "failpoint 'test.boom' fired"
    with armed("test.quiet", "off"):
        failpoint("test.quiet")


def test_configure_arms_exactly_the_points_it_names() -> None:
    try:
        failpoints.configure("test.a=raise(a) ; test.b=sleep(0);test.c=off")
        with pytest.raises(FailpointError, match=r"^a$"):
            failpoint("test.a")
        failpoint("test.b")
        failpoint("test.c")
        failpoints.configure("test.b=raise")
        failpoint("test.a")  # no longer armed
        with pytest.raises(FailpointError):
            failpoint("test.b")
    finally:
        failpoints.configure("")
    failpoint("test.b")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("test.a", "'test.a' is not name=term"),
        ("test.a=nap(3)", "'test.a=nap(3)' has no term 'nap'"),
        ("test.a=sleep", "'test.a=sleep' needs milliseconds: sleep(500)"),
        ("test.a=sleep(1.5s)", "'test.a=sleep(1.5s)' needs milliseconds: sleep(500)"),
        ("test.a=exit(x)", "'test.a=exit(x)' needs an exit status: exit(1)"),
        ("test.a=off(1)", "'test.a=off(1)' takes no argument"),
        ("bad name=off", "'bad name=off' is not name=term"),
    ],
)
def test_a_bad_setting_is_refused_naming_it(text: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        failpoints.configure(text)
    assert str(caught.value) == (
        f"LEGATO_FAILPOINTS: {message}; the terms are off, sleep(ms), raise(message), exit(status)"
    )


def _python(code: str, setting: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LEGATO_FAILPOINTS": setting}
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=30
    )


def test_the_variable_arms_points_at_import_and_exit_ends_the_process_at_once() -> None:
    code = (
        "import atexit\n"
        "from legato.failpoints import failpoint\n"
        "atexit.register(lambda: print('cleaned up'))\n"
        "print('before', flush=True)\n"
        "failpoint('demo.crash')\n"
        "print('after')\n"
    )
    done = _python(code, "demo.crash=exit(7)")
    assert (done.returncode, done.stdout) == (7, "before\n")
    assert _python(code, "demo.other=exit(7)").stdout == "before\nafter\ncleaned up\n"


def test_a_bad_variable_stops_the_import() -> None:
    done = _python("import legato.failpoints", "demo.crash=crash")
    assert done.returncode == 1
    assert "ValueError: LEGATO_FAILPOINTS: 'demo.crash=crash' has no term 'crash'" in done.stderr


def test_every_point_in_the_code_is_listed_in_the_module_docstring() -> None:
    root = Path(__file__).parents[2]
    sources = [
        path
        for package in ("executor", "control_plane", "clients/python/legato")
        for path in (root / package).rglob("*.py")
    ]
    used = {
        name
        for path in sources
        for name in re.findall(r"""\bfailpoint\(["']([^"']+)["']\)""", path.read_text())
    }
    assert used, "no fail points found in the code"
    assert failpoints.__doc__ is not None
    listed = set(re.findall(r"^``([a-z_]+\.[a-z_.]+)``  ", failpoints.__doc__, re.MULTILINE))
    assert used == listed
