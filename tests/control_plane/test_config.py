"""Server settings: precedence and the messages of bad values."""

from __future__ import annotations

import argparse

import pytest

from control_plane.config import DEFAULT_DB, ConfigError, ServerConfig


def args(**values: str | None) -> argparse.Namespace:
    return argparse.Namespace(**values)


def test_defaults() -> None:
    config = ServerConfig.load(args(), env={})
    assert (config.listen, config.db, config.migrate) == ("127.0.0.1:7470", DEFAULT_DB, True)


def test_flags_win_over_variables() -> None:
    env = {"LEGATO_SERVER_LISTEN": "0.0.0.0:9000", "LEGATO_SERVER_LOG_LEVEL": "debug"}
    config = ServerConfig.load(args(listen="127.0.0.1:9100"), env=env)
    assert config.listen == "127.0.0.1:9100"
    assert config.log_level == "debug"


def test_listen_without_host_means_every_interface() -> None:
    config = ServerConfig.load(args(listen=":7470", insecure="true"), env={})
    assert config.listen == "0.0.0.0:7470"


def test_every_listener_defaults_to_loopback() -> None:
    config = ServerConfig.load(args(), env={})
    assert config.listen.startswith("127.0.0.1:")
    assert config.http_listen.startswith("127.0.0.1:")
    assert config.auth == "token"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"listen": "0.0.0.0:7470"}, "refusing to serve --listen 0.0.0.0:7470 without TLS"),
        (
            {"http_listen": "10.1.2.3:7471"},
            "refusing to serve --http-listen 10.1.2.3:7471 without TLS",
        ),
        (
            {"auth": "none", "listen": "0.0.0.0:7470", "insecure": "true"},
            "--auth none serves everyone without a credential, so it is only allowed on a "
            "loopback address; --listen is 0.0.0.0:7470",
        ),
        ({"tls_cert": "cert.pem"}, "--tls-cert and --tls-key go together"),
        ({"client_ca": "ca.pem"}, "--client-ca needs TLS"),
        ({"tls_cert": "/no/cert.pem", "tls_key": "/no/key.pem"}, "--tls-cert '/no/cert.pem': no"),
        ({"auth": "maybe"}, "--auth 'maybe' is not one of token, none"),
    ],
)
def test_unsafe_transports_are_refused(values: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        ServerConfig.load(args(**values), env={})
    assert message in str(caught.value)


def test_non_loopback_listeners_need_tls_or_insecure() -> None:
    plain = ServerConfig.load(args(listen="0.0.0.0:7470", insecure="true"), env={})
    assert plain.insecure
    loopback_none = ServerConfig.load(args(auth="none", listen="[::1]:7470"), env={})
    assert loopback_none.auth == "none"


@pytest.mark.parametrize(
    ("values", "env", "message"),
    [
        ({"listen": "7470"}, {}, "--listen '7470' is not HOST:PORT"),
        (
            {},
            {"LEGATO_SERVER_LISTEN": "host:99999"},
            "LEGATO_SERVER_LISTEN 'host:99999' is not HOST:PORT",
        ),
        ({"db": "mysql://x@y/z"}, {}, "--db: 'mysql://x@y/z': unsupported database 'mysql'"),
        ({"db": "sqlite://"}, {}, "names no file"),
        ({"log_format": "xml"}, {}, "--log-format 'xml' is not one of auto, json, console"),
        ({"shutdown_grace": "10"}, {}, "--shutdown-grace '10' is not a duration"),
        ({"max_message_mb": "0"}, {}, "--max-message-mb '0' is not a positive whole number"),
        (
            {},
            {"LEGATO_SERVER_MIGRATE": "maybe"},
            "LEGATO_SERVER_MIGRATE 'maybe' is not true or false",
        ),
    ],
)
def test_bad_values_are_named(values: dict[str, str], env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        ServerConfig.load(args(**values), env=env)
    assert message in str(caught.value)


def test_password_never_appears_in_url_errors() -> None:
    with pytest.raises(ConfigError) as caught:
        ServerConfig.load(args(db="postgresql+psycopg2://u:hunter2@h/db"), env={})
    assert "hunter2" not in str(caught.value)


def test_smtp_settings_come_from_flags_and_variables() -> None:
    env = {"LEGATO_SERVER_SMTP_HOST": "mail.example.com", "LEGATO_SERVER_SMTP_TLS": "tls"}
    config = ServerConfig.load(args(smtp_port="465"), env=env)
    assert (config.smtp_host, config.smtp_port, config.smtp_tls) == ("mail.example.com", 465, "tls")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {
                "smtp_host": "mail.example.com",
                "smtp_tls": "none",
                "smtp_user": "u",
                "smtp_password_secret": "p",
            },
            "would send the password to mail.example.com in clear",
        ),
        (
            {"smtp_host": "mail.example.com", "smtp_user": "u"},
            "--smtp-user and --smtp-password-secret go together",
        ),
        ({"smtp_host": "mail.example.com", "smtp_tls": "ssl"}, "--smtp-tls 'ssl'"),
        ({"smtp_host": "mail.example.com", "smtp_port": "70000"}, "is not a port"),
    ],
)
def test_smtp_settings_that_cannot_work_are_refused(values: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        ServerConfig.load(args(**values), env={})
    assert message in str(caught.value)


def test_a_missing_smtp_password_secret_names_the_variable_that_would_give_it() -> None:
    from control_plane.access.secrets import Secrets
    from control_plane.app import _smtp
    from control_plane.errors import FailedPrecondition

    config = ServerConfig(
        smtp_host="mail.example", smtp_user="legato", smtp_password_secret="mail-pass"
    )
    with pytest.raises(FailedPrecondition, match="LEGATO_SECRET_MAIL__PASS"):
        _smtp(config, Secrets())
    assert _smtp(config, Secrets({"mail-pass": "s3cret"})) is not None
