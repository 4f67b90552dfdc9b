"""A clone of the repository in a folder named ``legato``, and a script beside it that
imports the SDK: what docs/sdk.md says happens, and that its fixes work.

The folder has no ``__init__.py``, so Python sees it as a *namespace* portion: an
installed regular package of the same name wins over it, wherever it is on ``sys.path``,
but the finder of an editable install (``pip install -e``) is asked only after the path
scan has found the folder, so there the folder shadows the package. ``python -P`` (or
``PYTHONSAFEPATH=1``) leaves the script's folder off ``sys.path``; a regular install
(``pip install .``, or ``pip install -e . --config-settings editable_mode=compat``) puts
the real package on it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import legato

SCRIPT = "import legato\nfrom legato import Client\nprint(Client.__module__)\n"
PACKAGE_ROOT = Path(legato.__file__).resolve().parent.parent  # clients/python


@pytest.fixture
def beside_a_clone(tmp_path: Path) -> Path:
    """``work/legato/`` (a clone: a folder of files, no ``__init__.py``) and
    ``work/report.py`` beside it."""
    clone = tmp_path / "legato"
    (clone / "clients" / "python").mkdir(parents=True)
    (clone / "README.md").write_text("# Legato\n")
    (clone / "pyproject.toml").write_text("[project]\nname = 'legato'\n")
    script = tmp_path / "report.py"
    script.write_text(SCRIPT)
    return script


def _run(
    script: Path, *flags: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSAFEPATH")}
    return subprocess.run(
        [sys.executable, *flags, script.name],
        cwd=script.parent,
        env={**environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


def _editable_install() -> bool:
    """Whether this interpreter finds ``legato`` through an editable install's finder."""
    return any("editable" in type(finder).__name__.lower() or "editable" in repr(finder).lower()
               for finder in sys.meta_path)  # fmt: skip


def test_an_editable_install_is_shadowed_by_the_folder(beside_a_clone: Path) -> None:
    if not _editable_install():
        pytest.skip("legato is not an editable install here; only editable installs are shadowed")
    done = _run(beside_a_clone)
    assert done.returncode == 1
    assert "cannot import name 'Client' from 'legato' (unknown location)" in done.stderr


def test_python_dash_p_leaves_the_scripts_folder_off_the_path(beside_a_clone: Path) -> None:
    done = _run(beside_a_clone, "-P", env={"PYTHONPATH": str(PACKAGE_ROOT)})
    assert (done.returncode, done.stdout) == (0, "legato.client\n"), done.stderr
    safe = _run(beside_a_clone, env={"PYTHONSAFEPATH": "1", "PYTHONPATH": str(PACKAGE_ROOT)})
    assert (safe.returncode, safe.stdout) == (0, "legato.client\n"), safe.stderr


def test_a_regular_package_on_the_path_wins_over_the_folder(beside_a_clone: Path) -> None:
    """What a regular install gives: the package on sys.path, after the script's folder."""
    with_path = _run(beside_a_clone, env={"PYTHONPATH": str(PACKAGE_ROOT)})
    assert (with_path.returncode, with_path.stdout) == (0, "legato.client\n"), with_path.stderr
