"""`legato apply -f module.py`: the pipelines a Python file defines as code are applied
like YAML files — and the server's violations are printed at the Python line that wrote
the field."""

from __future__ import annotations

import textwrap
from pathlib import Path

from test_cli import Server, legato

FLOWS = textwrap.dedent(
    """
    import legato

    etl = legato.Pipeline(name="py-etl", description="orders, as code")
    extract = etl.transform("extract", code="result = {'rows': 3}")
    etl.transform("load", code="result = inputs['extract']", needs=[extract])
    """
)


def test_apply_a_python_module_of_pipelines(server: Server, tmp_path: Path) -> None:
    flows = tmp_path / "flows.py"
    flows.write_text(FLOWS)
    applied = legato(server, "apply", "-f", str(flows))
    assert applied.returncode == 0, applied.stderr
    assert "py-etl" in applied.stdout
    shown = legato(server, "show", "py-etl")
    assert shown.returncode == 0 and "name: extract" in shown.stdout

    broken = tmp_path / "broken.py"
    broken.write_text(
        FLOWS.replace('name="py-etl"', 'name="py-broken"').replace(
            "needs=[extract]", 'needs=["extrac"]'
        )
    )
    refused = legato(server, "apply", "-f", str(broken))
    assert refused.returncode == 1
    line = next(n for n, text in enumerate(FLOWS.splitlines(), 1) if "needs=" in text)
    assert f"{broken}:{line}:" in refused.stderr, refused.stderr
    assert "did you mean 'extract'" in refused.stderr and "Traceback" not in refused.stderr
