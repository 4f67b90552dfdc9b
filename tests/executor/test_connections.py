"""An agent's connections: file, ${ENV} substitution, LEGATO_CONNECTION_* variables, and
errors that name the entry without quoting a value."""

from __future__ import annotations

from pathlib import Path

import pytest

from executor.connections import ConnectionsError, load_connections
from legato.spec.connections import connection_variable


def test_file_and_variables(tmp_path: Path) -> None:
    path = tmp_path / "connections.yaml"
    path.write_text("warehouse: postgresql://etl:${PW}@db/wh\nshop-eu: sqlite:////srv/shop.db\n")
    env = {"PW": "s3cret", "LEGATO_CONNECTION_SHOP__EU": "sqlite:////other.db", "X": "y"}
    assert load_connections(path, env=env) == {
        "warehouse": "postgresql://etl:s3cret@db/wh",
        "shop-eu": "sqlite:////other.db",  # a variable wins over the file
    }
    assert connection_variable("shop-eu") == "LEGATO_CONNECTION_SHOP__EU"
    assert load_connections(None, env={}) == {}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("warehouse: postgresql://u:${UNSET}@db/x\n", "connection 'warehouse' uses ${UNSET}"),
        ("Warehouse: x\n", "'Warehouse' is not a connection name"),
        ("warehouse: 5432\n", "connection 'warehouse' must be a non-empty string"),
        ("- warehouse\n", "expected a mapping of connection name to value"),
        ("warehouse: 'postgresql://u:hunter2@db\n", "is not valid YAML"),
    ],
)
def test_bad_files_are_named_without_values(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "connections.yaml"
    path.write_text(text)
    with pytest.raises(ConnectionsError) as caught:
        load_connections(path, env={})
    assert message in str(caught.value)
    assert str(path) in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_a_variable_that_names_no_connection_is_refused() -> None:
    with pytest.raises(ConnectionsError, match="LEGATO_CONNECTION_9X does not name a connection"):
        load_connections(None, env={"LEGATO_CONNECTION_9X": "sqlite://"})
