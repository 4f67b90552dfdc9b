"""docs/sdk.md runs as written: every ```python block of the guide, in order and in one
namespace (the file ``flows.py`` the guide writes), against a real control plane with an
agent process that has examples/ on its PYTHONPATH — as a reader following it would."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from cluster import Cluster, running_cluster

pytestmark = pytest.mark.timeout(180)

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "sdk.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with running_cluster(f"sqlite:///{tmp_path}/legato.db", tmp_path) as running:
        running.start_agent("a1", env={"PYTHONPATH": str(ROOT / "examples")})
        yield running


def test_every_example_of_the_guide_runs(
    cluster: Cluster,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    blocks = BLOCK.findall(GUIDE.read_text())
    assert len(blocks) >= 12, "the guide lost its examples"
    monkeypatch.setenv("LEGATO_SERVER", cluster.plane.address)
    monkeypatch.setenv("LEGATO_TOKEN", cluster.plane.token("admin"))
    monkeypatch.chdir(ROOT)  # the guide's paths are relative to a clone
    namespace: dict[str, object] = {"__name__": "flows"}
    for number, block in enumerate(blocks, start=1):
        # A file per block, so that functions have source (transforms made from them).
        source = tmp_path / f"sdk_md_block_{number}.py"
        source.write_text(block)
        try:
            exec(compile(block, str(source), "exec"), namespace)
        except Exception as error:
            pytest.fail(f"block {number} of docs/sdk.md failed: {error!r}\n{block}")
    printed = capsys.readouterr().out
    assert "succeeded" in printed
    assert " steps[0] unknown field 'timout' — did you mean 'timeout'?" in printed
    assert "schedule.cron - " in printed and "steps[0].needs[0] - " in printed
    assert "result = totals(data=data, params=params)" in printed
