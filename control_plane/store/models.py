"""Tables. Every schema change goes through a migration in ``migrations/versions``;
``tests/control_plane/store/test_migrations.py`` checks that the two agree."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from control_plane.store.types import UTCDateTime

__all__ = [
    "AgentRow",
    "AgentTokenRow",
    "ApiTokenRow",
    "ArtifactRow",
    "AttemptRow",
    "AuditEntryRow",
    "BackfillRow",
    "Base",
    "EventRow",
    "EventSubscriptionRow",
    "LineageEdgeRow",
    "LogLineRow",
    "PipelineRow",
    "PipelineVersionRow",
    "RequestRow",
    "RunRow",
    "ScheduleRow",
    "StepRunRow",
    "WatchRow",
]

# SQLite only auto-increments INTEGER PRIMARY KEY columns.
BigIntId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention={"uq": "uq_%(table_name)s_%(column_0_name)s"})
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
        list[str]: JSON(),
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
    """A mutation's request_id and what it produced, so a retried call replays it; the
    fingerprint of what it asked for (``store/requests.py``) refuses the id on another
    request. Rows from before migration 0009 have none."""

    __tablename__ = "requests"

    method: Mapped[str] = mapped_column(String(100), primary_key=True)
    request_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    result: Mapped[dict[str, Any]]
    create_time: Mapped[datetime]
    fingerprint: Mapped[str | None] = mapped_column(String(64))
    fields: Mapped[dict[str, Any] | None]


class AuditEntryRow(Base):
    """Who changed what, when, under which request id, and how it ended (the activity
    log). Successful mutations write theirs in their own transaction; refused and failed
    ones are written by the access interceptor after the call."""

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_resource_time", "resource", "time"),
        Index("ix_audit_log_pipeline_id", "pipeline", "id"),
        Index("ix_audit_log_actor_id", "actor", "id"),
        Index("ix_audit_log_time", "time"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    time: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(200))
    # token | agent | system | local | anonymous
    actor_kind: Mapped[str] = mapped_column(String(16), default="system")
    action: Mapped[str] = mapped_column(String(100))
    resource: Mapped[str] = mapped_column(String(300))
    pipeline: Mapped[str | None] = mapped_column(String(63))
    request_id: Mapped[str | None] = mapped_column(String(200))
    # succeeded | denied | failed
    outcome: Mapped[str] = mapped_column(String(16), default="succeeded")
    code: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str] = mapped_column(Text, default="")
    details: Mapped[dict[str, Any]]


class ApiTokenRow(Base):
    """A bearer token with a role. Only a hash of its secret is kept; ``name`` is unique
    among the tokens not revoked."""

    __tablename__ = "api_tokens"
    __table_args__ = (
        Index(
            "uq_api_tokens_live_name",
            "name",
            unique=True,
            sqlite_where=text("revoke_time IS NULL"),
            postgresql_where=text("revoke_time IS NULL"),
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(16))
    description: Mapped[str] = mapped_column(Text, default="")
    secret_hash: Mapped[str] = mapped_column(String(64))
    creator: Mapped[str] = mapped_column(String(200))
    create_time: Mapped[datetime]
    expire_time: Mapped[datetime | None]
    revoke_time: Mapped[datetime | None]
    last_use_time: Mapped[datetime | None]


class AgentTokenRow(Base):
    """An agent's enrolment token: the agent's name, its labels and the connections it may
    advertise (``["*"]``: any). Only a hash of its secret is kept."""

    __tablename__ = "agent_tokens"
    __table_args__ = (Index("ix_agent_tokens_agent", "agent"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    agent: Mapped[str] = mapped_column(String(100))
    labels: Mapped[dict[str, Any]]
    connections: Mapped[list[str]]
    secret_hash: Mapped[str] = mapped_column(String(64))
    creator: Mapped[str] = mapped_column(String(200))
    create_time: Mapped[datetime]
    expire_time: Mapped[datetime | None]
    revoke_time: Mapped[datetime | None]
    last_use_time: Mapped[datetime | None]


class RunRow(Base):
    """One execution of one pinned pipeline version."""

    __tablename__ = "runs"
    __table_args__ = (
        Index("ix_runs_pipeline_create_time", "pipeline_id", "create_time"),
        Index("ix_runs_status", "status"),
        Index("ix_runs_backfill_id", "backfill_id"),
        # A scheduled fire time makes one run, whatever the number of replicas.
        Index(
            "uq_runs_scheduled_logical_time",
            "pipeline_id",
            "logical_time",
            unique=True,
            sqlite_where=text("trigger_kind = 'schedule'"),
            postgresql_where=text("trigger_kind = 'schedule'"),
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    pipeline_id: Mapped[int] = mapped_column(ForeignKey("pipelines.id", ondelete="RESTRICT"))
    pipeline: Mapped[str] = mapped_column(String(63))
    version: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    trigger_kind: Mapped[str] = mapped_column(String(16))
    logical_time: Mapped[datetime | None]
    trigger: Mapped[dict[str, Any]]
    params: Mapped[dict[str, Any]]
    request_id: Mapped[str | None] = mapped_column(String(200))
    create_time: Mapped[datetime]
    start_time: Mapped[datetime | None]
    end_time: Mapped[datetime | None]
    deadline_time: Mapped[datetime | None]
    error: Mapped[str] = mapped_column(Text, default="")
    waiting_reason: Mapped[str] = mapped_column(Text, default="")
    trace_id: Mapped[str] = mapped_column(String(32), default="")
    span_id: Mapped[str] = mapped_column(String(16), default="")
    backfill_id: Mapped[str | None] = mapped_column(String(32))


class StepRunRow(Base):
    """The state of one step in one run; its attempts are AttemptRows."""

    __tablename__ = "step_runs"
    __table_args__ = (
        UniqueConstraint("run_id", "name", name="uq_step_runs_run_id"),
        Index("ix_step_runs_status", "status"),
        Index("ix_step_runs_run_id_status", "run_id", "status"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(63))
    position: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    not_before: Mapped[datetime | None]
    selector: Mapped[dict[str, Any]]
    agent: Mapped[str] = mapped_column(String(100), default="")
    records_in: Mapped[int | None] = mapped_column(BigInteger)
    records_out: Mapped[int | None] = mapped_column(BigInteger)
    output: Mapped[dict[str, Any]]
    error: Mapped[str] = mapped_column(Text, default="")
    failure_kind: Mapped[str] = mapped_column(String(16), default="")
    start_time: Mapped[datetime | None]
    end_time: Mapped[datetime | None]
    waiting_reason: Mapped[str] = mapped_column(Text, default="")
    child_run_id: Mapped[str | None] = mapped_column(String(32))
    # The latest attempt's resource use (migration 0014).
    peak_memory_bytes: Mapped[int | None] = mapped_column(BigInteger)
    cpu_seconds: Mapped[float | None] = mapped_column(Float)
    memory_limit_bytes: Mapped[int | None] = mapped_column(BigInteger)
    # What the latest finished attempt read and wrote: StepLineage as JSON (migration 0015).
    lineage: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class AttemptRow(Base):
    """One attempt of a step under a lease: the unit an agent runs."""

    __tablename__ = "attempts"
    __table_args__ = (
        UniqueConstraint("lease_id", name="uq_attempts_lease_id"),
        UniqueConstraint("step_run_id", "number", name="uq_attempts_step_run_id"),
        Index("ix_attempts_status_expire", "status", "lease_expire_time"),
        Index("ix_attempts_run_id", "run_id"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    step_run_id: Mapped[int] = mapped_column(ForeignKey("step_runs.id", ondelete="CASCADE"))
    run_id: Mapped[str] = mapped_column(String(32))
    number: Mapped[int] = mapped_column(Integer)
    lease_id: Mapped[str] = mapped_column(String(32))
    agent: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(16))
    lease_expire_time: Mapped[datetime]
    create_time: Mapped[datetime]
    start_time: Mapped[datetime | None]
    end_time: Mapped[datetime | None]
    records_in: Mapped[int | None] = mapped_column(BigInteger)
    records_out: Mapped[int | None] = mapped_column(BigInteger)
    error: Mapped[str] = mapped_column(Text, default="")
    failure_kind: Mapped[str] = mapped_column(String(16), default="")
    # What the attempt's process tree used, as its agent measured it (migration 0014).
    peak_memory_bytes: Mapped[int | None] = mapped_column(BigInteger)
    cpu_seconds: Mapped[float | None] = mapped_column(Float)
    memory_limit_bytes: Mapped[int | None] = mapped_column(BigInteger)


class LogLineRow(Base):
    """A line of a run's log; ``id`` is its sequence number (increasing)."""

    __tablename__ = "log_lines"
    __table_args__ = (Index("ix_log_lines_run_id_id", "run_id", "id"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(String(32))
    time: Mapped[datetime]
    step: Mapped[str] = mapped_column(String(63), default="")
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    stream: Mapped[str] = mapped_column(String(8))
    text: Mapped[str] = mapped_column(Text)


class AgentRow(Base):
    """An executor agent: what it said when it registered and when it was last seen."""

    __tablename__ = "agents"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    instance_id: Mapped[str] = mapped_column(String(64))
    labels: Mapped[dict[str, Any]]
    slots: Mapped[int] = mapped_column(Integer)
    version: Mapped[str] = mapped_column(String(64))
    hostname: Mapped[str] = mapped_column(String(255))
    connections: Mapped[list[str]]
    state: Mapped[str] = mapped_column(String(16))
    replica: Mapped[str] = mapped_column(String(100))
    connect_time: Mapped[datetime]
    last_seen_time: Mapped[datetime]
    # How it authenticated: "token <id>", "certificate <CN>" or "unauthenticated".
    credential: Mapped[str] = mapped_column(String(200), default="")


class ArtifactRow(Base):
    """A blob a step produced (its output table, a chart). The bytes are in ``data``
    (database storage) or in a file named by ``id`` (directory storage)."""

    __tablename__ = "artifacts"
    __table_args__ = (Index("ix_artifacts_run_id", "run_id"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    run_id: Mapped[str] = mapped_column(String(32))
    step: Mapped[str] = mapped_column(String(63))
    lease_id: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(200))
    media_type: Mapped[str] = mapped_column(String(100))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    storage: Mapped[str] = mapped_column(String(8))
    data: Mapped[bytes | None] = mapped_column(LargeBinary)
    create_time: Mapped[datetime]


class ScheduleRow(Base):
    """The live state of a pipeline's schedule: its next fire time (indexed, so the
    scheduler reads only what is due), whether it is paused and why, and its failure run."""

    __tablename__ = "schedules"
    __table_args__ = (Index("ix_schedules_next_fire_time", "next_fire_time"),)

    pipeline_id: Mapped[int] = mapped_column(
        BigIntId,
        ForeignKey("pipelines.id", ondelete="CASCADE"),
        primary_key=True,
        autoincrement=False,
    )
    version: Mapped[int] = mapped_column(Integer)
    next_fire_time: Mapped[datetime | None]
    last_fire_time: Mapped[datetime | None]
    paused: Mapped[bool] = mapped_column(default=False)
    pause_reason: Mapped[str] = mapped_column(Text, default="")
    pause_time: Mapped[datetime | None]
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    update_time: Mapped[datetime]


class BackfillRow(Base):
    """Runs for the fire times of a range, created at once, run in order behind live runs."""

    __tablename__ = "backfills"
    __table_args__ = (Index("ix_backfills_pipeline_id", "pipeline_id"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    pipeline_id: Mapped[int] = mapped_column(ForeignKey("pipelines.id", ondelete="RESTRICT"))
    pipeline: Mapped[str] = mapped_column(String(63))
    start_time: Mapped[datetime]
    end_time: Mapped[datetime]
    only_missing: Mapped[bool] = mapped_column(default=False)
    status: Mapped[str] = mapped_column(String(16))
    runs_total: Mapped[int] = mapped_column(Integer)
    actor: Mapped[str] = mapped_column(String(200))
    create_time: Mapped[datetime]
    finish_time: Mapped[datetime | None]


class EventRow(Base):
    """A published event and the runs it started."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_type_create_time", "type", "create_time"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    type: Mapped[str] = mapped_column(String(200))
    source: Mapped[str] = mapped_column(String(200))
    payload: Mapped[dict[str, Any]]
    run_ids: Mapped[list[str]]
    create_time: Mapped[datetime]


class EventSubscriptionRow(Base):
    """An event type the latest version of a non-archived pipeline has a trigger for, kept
    by ``triggers.subscriptions`` so a publish reads only its subscribers."""

    __tablename__ = "event_subscriptions"
    __table_args__ = (Index("ix_event_subscriptions_type", "type"),)

    pipeline_id: Mapped[int] = mapped_column(
        BigIntId,
        ForeignKey("pipelines.id", ondelete="CASCADE"),
        primary_key=True,
        autoincrement=False,
    )
    type: Mapped[str] = mapped_column(String(200), primary_key=True)


class WatchRow(Base):
    """A database trigger of a non-archived pipeline's latest version, kept by
    ``triggers.watches``, and the agent that watches it: ``replica`` claimed it for
    ``agent`` and refreshes ``claim_time`` while the agent stays connected there. After a
    release ``agent`` still names the last holder (its late reports are accepted) until
    another agent claims the watch."""

    __tablename__ = "watches"
    __table_args__ = (Index("ix_watches_pipeline_id", "pipeline_id"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    pipeline_id: Mapped[int] = mapped_column(
        BigIntId, ForeignKey("pipelines.id", ondelete="CASCADE")
    )
    pipeline: Mapped[str] = mapped_column(String(63))
    connection: Mapped[str] = mapped_column(String(100))
    trigger: Mapped[dict[str, Any]]
    agent: Mapped[str | None] = mapped_column(String(100))
    replica: Mapped[str | None] = mapped_column(String(100))
    claim_time: Mapped[datetime | None]
    watermark: Mapped[str] = mapped_column(Text, default="")
    change_time: Mapped[datetime | None]
    create_time: Mapped[datetime]


class NotificationRow(Base):
    """A message to send to one channel about one event of a run: written in the
    transaction of the change that causes it (the outbox), sent by the delivery loop."""

    __tablename__ = "notifications"
    __table_args__ = (
        Index("ix_notifications_due", "status", "next_attempt_time"),
        Index("ix_notifications_run_id", "run_id"),
        Index("ix_notifications_throttle", "throttle_key", "id"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    idempotency_key: Mapped[str] = mapped_column(String(64), unique=True)
    run_id: Mapped[str] = mapped_column(String(32))
    pipeline: Mapped[str] = mapped_column(String(63))
    event: Mapped[str] = mapped_column(String(32))
    channel: Mapped[str] = mapped_column(String(16))
    # Where it goes, as users read it ("webhook https://…", "slack #data"): no secret.
    target: Mapped[str] = mapped_column(Text)
    # The channel's settings from the spec (secrets by name) and the event's facts.
    settings: Mapped[dict[str, Any]]
    facts: Mapped[dict[str, Any]]
    # pending | sending | delivered | failed | suppressed (throttled: never sent)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_time: Mapped[datetime]
    # While sending: until when this replica holds it (a crash lets another take it).
    claim_expire_time: Mapped[datetime | None]
    last_error: Mapped[str] = mapped_column(Text, default="")
    create_time: Mapped[datetime]
    deliver_time: Mapped[datetime | None]
    # The pipeline's channel it goes to (a digest of pipeline, channel and target): the
    # throttle compares a notification with the last one sent on the same key.
    throttle_key: Mapped[str] = mapped_column(String(40), default="", server_default="")


class WebSessionRow(Base):
    """A web UI session, born as a sign-in link's one-time code (``code_hash``, until
    ``code_expire_time``) or from a pasted API token. Exchanging the code clears it and
    sets ``secret_hash`` (the cookie's); the session acts as ``token_id``'s API token
    until ``expire_time``, or until it is signed out (``revoke_time``) or its token is
    revoked. Only hashes are kept."""

    __tablename__ = "web_sessions"
    __table_args__ = (Index("ix_web_sessions_token_id", "token_id"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    token_id: Mapped[str] = mapped_column(String(32))
    code_hash: Mapped[str | None] = mapped_column(String(64))
    code_expire_time: Mapped[datetime | None]
    secret_hash: Mapped[str | None] = mapped_column(String(64))
    next_path: Mapped[str] = mapped_column(Text, default="/")
    create_time: Mapped[datetime]
    expire_time: Mapped[datetime | None]
    revoke_time: Mapped[datetime | None]


class LineageEdgeRow(Base):
    """A data flow that runs recorded: a dataset read by a pipeline's step (``read``:
    dataset → pipeline), written by one (``write``: pipeline → dataset), or a trigger step
    starting another pipeline (``trigger``: pipeline → pipeline). Nodes are
    ``dataset:<namespace>.<name>`` and ``pipeline:<name>``. One row per edge, upserted as
    runs end (migration 0015)."""

    __tablename__ = "lineage_edges"
    __table_args__ = (
        UniqueConstraint(
            "source", "target", "kind", "pipeline", "step", name="uq_lineage_edges_source"
        ),
        Index("ix_lineage_edges_target", "target"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(Text)
    target: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(16))
    pipeline: Mapped[str] = mapped_column(String(63))
    step: Mapped[str] = mapped_column(String(63))
    first_seen_time: Mapped[datetime]
    last_seen_time: Mapped[datetime]
    last_run_id: Mapped[str] = mapped_column(String(32))
