"""Alembic environment: runs on the connection handed over by control_plane.store.migrate."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from control_plane.store.models import Base

connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise RuntimeError("run migrations with `legato db upgrade`, which supplies the connection")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
