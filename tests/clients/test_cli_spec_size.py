"""A spec over the server's limit (1 MiB encoded, docs/api.md#limits) is refused before
anything is sent, with the file named and the limit: the server here is unreachable, so
any attempt to send it would fail differently."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from legato.cli.main import main
from legato.cli.specfiles import MAX_SPEC_BYTES

UNREACHABLE = "127.0.0.1:1"


def _spec(tmp_path: Path, code_chars: int) -> Path:
    steps = [
        {"name": f"s{i}", "transform": {"code": "result = None  # " + "x" * code_chars}}
        for i in range(5)
    ]
    path = tmp_path / "huge.json"
    path.write_text(json.dumps({"name": "huge", "steps": steps}))
    return path


@pytest.mark.parametrize("command", ["apply", "validate"])
def test_an_oversized_spec_is_refused_before_sending(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    path = _spec(tmp_path, 250_000)
    started = time.monotonic()

    assert main(["--server", UNREACHABLE, command, "-f", str(path)]) == 1

    assert time.monotonic() - started < 10
    err = capsys.readouterr().err
    assert err.startswith(f"{path}: the spec is 1,250,")
    assert f"bytes encoded, over the limit of {MAX_SPEC_BYTES:,} bytes (1 MiB)" in err
    assert "docs/api.md#limits" in err
    assert "cannot reach" not in err


def test_a_spec_under_the_limit_goes_to_the_server(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _spec(tmp_path, 150_000)

    assert main(["--server", UNREACHABLE, "validate", "-f", str(path)]) == 1

    assert "cannot reach the Legato server at 127.0.0.1:1" in capsys.readouterr().err
