"""``--server`` takes HOST:PORT: a URL (``http://host:7470``) is refused before any call,
with the address to give instead, wherever it came from (flag, LEGATO_SERVER, a context);
gRPC's own targets (``dns:///``, ``unix:``) are left alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from legato.cli.main import main
from legato.connection import ConfigFileError, resolve, save_config


def test_a_url_on_the_command_line_says_to_drop_the_scheme(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--server", "http://127.0.0.1:7470", "pipelines"]) == 1

    assert capsys.readouterr().err == (
        "legato pipelines: --server 'http://127.0.0.1:7470' is a URL; give HOST:PORT without "
        "the scheme: drop 'http://' and use 127.0.0.1:7470\n"
    )


def test_https_says_how_tls_is_chosen_and_adds_the_default_port(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LEGATO_SERVER", "https://cp.example.com/")

    assert main(["runs"]) == 1

    assert capsys.readouterr().err == (
        "legato runs: LEGATO_SERVER 'https://cp.example.com/' is a URL; give HOST:PORT without "
        "the scheme: drop 'https://' and use cp.example.com:7470; TLS is not chosen by the "
        "scheme: give --ca (or `legato config set-context --tls` for a server with a public "
        "certificate)\n"
    )


def test_a_contexts_url_names_the_context(tmp_path: Path) -> None:
    env = {"LEGATO_CONFIG": str(tmp_path / "config.yaml")}
    save_config(
        {"current-context": "prod", "contexts": {"prod": {"server": "grpc://cp:7470"}}}, env
    )
    with pytest.raises(ConfigFileError) as info:
        resolve(env=env, cwd=tmp_path)
    assert str(info.value).startswith("the server of context 'prod' 'grpc://cp:7470' is a URL")


def test_set_context_refuses_a_url(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "set-context", "prod", "--server", "http://cp:7470"]) == 1
    assert "drop 'http://' and use cp:7470" in capsys.readouterr().err


@pytest.mark.parametrize("target", ["dns:///cp.example.com:7470", "unix:/run/legato.sock"])
def test_grpc_targets_are_left_alone(tmp_path: Path, target: str) -> None:
    env = {"LEGATO_CONFIG": str(tmp_path / "config.yaml")}
    assert resolve(server=target, env=env, cwd=tmp_path).server == target
