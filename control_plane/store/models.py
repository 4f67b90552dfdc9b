"""Tables. Every schema change goes through a migration in ``migrations/versions``;
``tests/control_plane/store/test_migrations.py`` checks that the two agree."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from control_plane.store.types import UTCDateTime

__all__ = ["AuditEntryRow", "Base", "PipelineRow", "PipelineVersionRow", "RequestRow"]

# SQLite only auto-increments INTEGER PRIMARY KEY columns.
BigIntId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention={"uq": "uq_%(table_name)s_%(column_0_name)s"})
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
    }


class PipelineRow(Base):
    """A named pipeline; its content lives in immutable versions."""

    __tablename__ = "pipelines"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    latest_version: Mapped[int] = mapped_column(Integer, default=0)
    archived: Mapped[bool] = mapped_column(default=False)
    create_time: Mapped[datetime]
    update_time: Mapped[datetime]
    archive_time: Mapped[datetime | None]


class PipelineVersionRow(Base):
    """One immutable version: the canonical spec (proto3 JSON) and who made it, why."""

    __tablename__ = "pipeline_versions"
    __table_args__ = (
        UniqueConstraint("pipeline_id", "number", name="uq_pipeline_versions_number"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    pipeline_id: Mapped[int] = mapped_column(ForeignKey("pipelines.id", ondelete="RESTRICT"))
    number: Mapped[int] = mapped_column(Integer)
    spec: Mapped[str] = mapped_column(Text)
    content_hash: Mapped[str] = mapped_column(String(80))
    author: Mapped[str] = mapped_column(String(200))
    message: Mapped[str] = mapped_column(Text, default="")
    create_time: Mapped[datetime]
    rollback_of: Mapped[int | None] = mapped_column(Integer)


class RequestRow(Base):
    """A mutation's request_id and what it produced, so a retried call replays it."""

    __tablename__ = "requests"

    method: Mapped[str] = mapped_column(String(100), primary_key=True)
    request_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    result: Mapped[dict[str, Any]]
    create_time: Mapped[datetime]


class AuditEntryRow(Base):
    """Who changed what, when, under which request id."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_resource_time", "resource", "time"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    time: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(100))
    resource: Mapped[str] = mapped_column(String(300))
    request_id: Mapped[str | None] = mapped_column(String(200))
    details: Mapped[dict[str, Any]]
