"""examples/notebook/etl.ipynb executed for real: nbclient with an ipykernel whose kernel
spec (installed in a temporary directory) starts this virtualenv's interpreter; the
cells' outputs hold the step's log lines, the DataFrame it returned and the test's
summary."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

pytestmark = pytest.mark.timeout(60)

EXAMPLE = Path(__file__).parents[2] / "examples" / "notebook"
KERNEL = "legato-notebook-test"


def _texts(cell: nbformat.NotebookNode, name: str) -> str:
    return "".join(
        output.get("text", "")
        for output in cell.get("outputs", [])
        if output.get("output_type") == "stream" and output.get("name") == name
    )


def test_the_example_notebook_runs_its_steps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prefix = tmp_path / "jupyter"
    subprocess.run(
        [sys.executable, "-m", "ipykernel", "install", "--prefix", str(prefix), "--name", KERNEL],
        check=True,
        capture_output=True,
        timeout=30,
    )
    monkeypatch.setenv("JUPYTER_PATH", str(prefix / "share" / "jupyter"))
    monkeypatch.delenv("LEGATO_CONNECTION_LAKE", raising=False)
    notebook = nbformat.read(EXAMPLE / "etl.ipynb", as_version=4)  # type: ignore[no-untyped-call]
    # Unix sockets, not TCP ports: jupyter_client picks free ports by binding and releasing
    # them before the kernel binds them again, a window in which the other tests' servers
    # (all on port 0) can take one.
    kernel = KernelManager(kernel_name=KERNEL, transport="ipc", ip=str(tmp_path / "kernel"))
    client = NotebookClient(
        notebook,
        km=kernel,
        timeout=45,
        resources={"metadata": {"path": str(EXAMPLE)}},
    )
    client.execute()
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    loaded, run, tested = code

    assert "<legato pipeline 'orders-etl': extract, clean, totals, publish>" in _texts(
        loaded, "stdout"
    )

    out = _texts(run, "stdout")
    assert "[clean] kept 3 of 5 orders (min_amount 10)" in out
    assert "clean: succeeded (5 → 3)" in out
    frame = [line.split() for line in out.splitlines() if line.strip()[:1].isdigit()]
    assert frame == [["1", "acme", "12.5"], ["3", "globex", "40.0"], ["5", "globex", "18.0"]]

    summary = _texts(tested, "stdout")
    assert "pipeline 'orders-etl': succeeded" in summary
    assert "  extract: given (- → 5)" in summary
    assert "  totals: succeeded (3 → 2)" in summary
    assert "  publish: skipped: not run: step 'publish' uses connection 'lake'" in summary
    assert [line.split() for line in summary.splitlines()[-2:]] == [
        ["acme", "12.5"],
        ["globex", "58.0"],
    ]
