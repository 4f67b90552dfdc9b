"""Where the CLI and SDK connect and with which credentials: flags, then LEGATO_*, then the
context, then legato up's local credentials; a token goes only to the server it was
configured for."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from legato.connection import (
    ConfigFileError,
    config_path,
    find_local_credentials,
    resolve,
    save_config,
    write_local_credentials,
)

PROD = {"server": "legato.example.com:7470", "token": "lgt_prod", "ca": "/etc/legato/ca.pem"}


def env_for(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"LEGATO_CONFIG": str(tmp_path / "config.yaml"), **extra}


def write_config(tmp_path: Path, config: dict[str, object]) -> dict[str, str]:
    env = env_for(tmp_path)
    save_config(config, env)
    return env


def test_defaults_without_any_configuration(tmp_path: Path) -> None:
    connection = resolve(env=env_for(tmp_path), cwd=tmp_path)
    assert (connection.server, connection.token, connection.uses_tls) == (
        "localhost:7470",
        "",
        False,
    )


def test_the_current_context_gives_server_token_and_tls(tmp_path: Path) -> None:
    env = write_config(tmp_path, {"current-context": "prod", "contexts": {"prod": PROD}})
    connection = resolve(env=env, cwd=tmp_path)
    assert connection.server == "legato.example.com:7470"
    assert (connection.token, connection.ca, connection.context) == (
        "lgt_prod",
        "/etc/legato/ca.pem",
        "prod",
    )
    assert connection.uses_tls


def test_flags_beat_variables_beat_the_context(tmp_path: Path) -> None:
    env = write_config(tmp_path, {"current-context": "prod", "contexts": {"prod": PROD}})
    env["LEGATO_TOKEN"] = "lgt_from_env"
    assert resolve(env=env, cwd=tmp_path).token == "lgt_from_env"
    assert resolve(token="lgt_flag", env=env, cwd=tmp_path).token == "lgt_flag"


def test_a_contexts_token_never_goes_to_another_server(tmp_path: Path) -> None:
    env = write_config(tmp_path, {"current-context": "prod", "contexts": {"prod": PROD}})
    elsewhere = resolve(server="evil.example.net:7470", env=env, cwd=tmp_path)
    assert (elsewhere.server, elsewhere.token, elsewhere.ca, elsewhere.context) == (
        "evil.example.net:7470",
        "",
        "",
        "",
    )
    # The same server, named on the command line, keeps them.
    same = resolve(server="legato.example.com:7470", env=env, cwd=tmp_path)
    assert same.token == "lgt_prod"


def test_an_unknown_context_is_named(tmp_path: Path) -> None:
    env = write_config(tmp_path, {"contexts": {"prod": PROD}})
    with pytest.raises(ConfigFileError, match=r"there is no context 'stage' .*contexts: prod"):
        resolve(context="stage", env=env, cwd=tmp_path)
    env["LEGATO_CONTEXT"] = "prod"
    assert resolve(env=env, cwd=tmp_path).server == PROD["server"]


def test_the_config_file_is_private(tmp_path: Path) -> None:
    env = write_config(tmp_path, {"contexts": {"prod": PROD}})
    path = config_path(env)
    assert path.stat().st_mode & 0o777 == 0o600
    os.chmod(path, 0o644)
    with pytest.raises(ConfigFileError, match=r"others can read it \(mode 644\); run `chmod 600"):
        resolve(env=env, cwd=tmp_path)


def test_config_path_follows_xdg(tmp_path: Path) -> None:
    assert config_path({"XDG_CONFIG_HOME": str(tmp_path)}) == tmp_path / "legato/config.yaml"
    assert config_path({"LEGATO_CONFIG": "/x/y.yaml"}) == Path("/x/y.yaml")


def test_a_token_file_is_read_at_each_resolve(tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text("lgt_in_a_file\n")
    env = write_config(
        tmp_path,
        {
            "current-context": "ci",
            "contexts": {"ci": {"server": "ci:7470", "token-file": str(secret)}},
        },
    )
    assert resolve(env=env, cwd=tmp_path).token == "lgt_in_a_file"


def test_local_credentials_are_found_in_parent_directories(tmp_path: Path) -> None:
    write_local_credentials(tmp_path / ".legato", {"server": "127.0.0.1:7470", "token": "lgt_up"})
    below = tmp_path / "a" / "b"
    below.mkdir(parents=True)
    assert find_local_credentials(below) == {"server": "127.0.0.1:7470", "token": "lgt_up"}
    env = env_for(tmp_path)
    # localhost and 127.0.0.1 are the same loopback server.
    assert resolve(env=env, cwd=below).token == "lgt_up"
    assert resolve(server="localhost:7470", env=env, cwd=below).token == "lgt_up"
    assert resolve(server="127.0.0.1:9999", env=env, cwd=below).token == ""


def test_a_context_wins_over_local_credentials(tmp_path: Path) -> None:
    write_local_credentials(tmp_path / ".legato", {"server": "localhost:7470", "token": "lgt_up"})
    env = write_config(
        tmp_path, {"current-context": "local", "contexts": {"local": {"server": "h:1"}}}
    )
    connection = resolve(env=env, cwd=tmp_path)
    assert (connection.server, connection.token) == ("h:1", "")


def test_bad_yaml_is_named_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("contexts:\n  prod: [\n")
    os.chmod(path, 0o600)
    with pytest.raises(ConfigFileError, match=r"config.yaml:\d+: not valid YAML"):
        resolve(env=env_for(tmp_path), cwd=tmp_path)


def test_written_files_hold_what_was_given(tmp_path: Path) -> None:
    path = write_local_credentials(tmp_path, {"server": "s:1", "token": "lgt_x"})
    assert yaml.safe_load(path.read_text()) == {"server": "s:1", "token": "lgt_x"}
    assert path.stat().st_mode & 0o777 == 0o600


def test_a_client_certificate_given_here_keeps_the_contexts_key_out(tmp_path: Path) -> None:
    pair = {**PROD, "cert": "/etc/legato/ops.pem", "key": "/etc/legato/ops.key"}
    env = write_config(tmp_path, {"current-context": "prod", "contexts": {"prod": pair}})
    assert (resolve(env=env, cwd=tmp_path).cert, resolve(env=env, cwd=tmp_path).key) == (
        "/etc/legato/ops.pem",
        "/etc/legato/ops.key",
    )
    mine = resolve(cert="/home/me/me.pem", env=env, cwd=tmp_path)
    # Not the context's key with another certificate: the pair is incomplete, and says so.
    assert (mine.cert, mine.key, mine.ca) == ("/home/me/me.pem", "", "/etc/legato/ca.pem")
    with pytest.raises(ConfigFileError, match="give both --cert and --key"):
        mine.channel_credentials()
