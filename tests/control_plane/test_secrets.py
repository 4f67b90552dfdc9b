"""Server-side secrets: the --secrets file, LEGATO_SECRET_* variables, and their settings."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from control_plane.access.secrets import SecretsError, load_secrets
from control_plane.config import ConfigError, ServerConfig, parse_server_args


def test_file_values_substitute_variables(tmp_path: Path) -> None:
    path = tmp_path / "secrets.yaml"
    path.write_text("orders-hook: ${HOOK_KEY}\nplain_key: abc-${SUFFIX}\n")
    secrets = load_secrets(path, env={"HOOK_KEY": "k1", "SUFFIX": "z"})
    assert (secrets.get("orders-hook"), secrets.get("plain_key")) == ("k1", "abc-z")
    assert secrets.get("other") is None


def test_variables_add_secrets_and_win_over_the_file(tmp_path: Path) -> None:
    path = tmp_path / "secrets.yaml"
    path.write_text("orders-hook: from-file\nbilling: b\n")
    env = {"LEGATO_SECRET_ORDERS__HOOK": "from-env", "LEGATO_SECRET_CRM_KEY": "c"}
    secrets = load_secrets(path, env=env)
    assert secrets.names == ["billing", "crm_key", "orders-hook"]
    assert secrets.get("orders-hook") == "from-env"


def test_values_never_show_in_repr(tmp_path: Path) -> None:
    secrets = load_secrets(None, env={"LEGATO_SECRET_HOOK": "hunter2"})
    assert "hunter2" not in repr(secrets)
    assert repr(secrets) == "Secrets(names=['hook'])"


@pytest.mark.parametrize(
    ("text", "env", "message"),
    [
        ("hook: ${UNSET}\n", {}, "secret 'hook' uses ${UNSET}, which is not set"),
        ("Hook: x\n", {}, "'Hook' is not a secret name"),
        ("hook: 12345\n", {}, "secret 'hook' must be a non-empty string"),
        ("- hook\n", {}, "expected a mapping of secret name to value"),
        ("hook: 'hunter2\n", {}, "is not valid YAML"),
    ],
)
def test_bad_files_are_named_without_values(
    tmp_path: Path, text: str, env: dict[str, str], message: str
) -> None:
    path = tmp_path / "secrets.yaml"
    path.write_text(text)
    with pytest.raises(SecretsError) as caught:
        load_secrets(path, env=env)
    assert message in str(caught.value)
    assert str(path) in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(SecretsError, match=r"nope\.yaml: cannot read secrets"):
        load_secrets(tmp_path / "nope.yaml", env={})


def test_a_variable_that_names_no_secret_is_refused() -> None:
    with pytest.raises(SecretsError, match="LEGATO_SECRET_9X does not name a secret"):
        load_secrets(None, env={"LEGATO_SECRET_9X": "v"})


def test_settings_of_the_http_listener_and_secrets() -> None:
    default = ServerConfig.load(argparse.Namespace(), env={})
    assert (default.http_listen, default.secrets_file) == ("127.0.0.1:7471", "")
    env = {"LEGATO_SERVER_HTTP_LISTEN": "off", "LEGATO_SERVER_SECRETS": "/etc/legato/s.yaml"}
    config = ServerConfig.load(argparse.Namespace(), env=env)
    assert (config.http_listen, config.secrets_file) == ("off", "/etc/legato/s.yaml")
    flags = parse_server_args(
        ["--http-listen", ":8080", "--secrets", "s.yaml", "--insecure"], "legato server"
    )
    assert (flags.http_listen, flags.secrets_file) == ("0.0.0.0:8080", "s.yaml")
    with pytest.raises(ConfigError, match="--http-listen '8080' is not HOST:PORT or off"):
        parse_server_args(["--http-listen", "8080"], "legato server")
