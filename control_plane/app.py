"""Wires the control plane: config → database (schema upgraded) → domain services →
servicers → one grpc.aio server with health checking and reflection."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from control_plane.access.audit_log import AuditLog
from control_plane.access.authenticator import Authenticator
from control_plane.access.rules import Rules
from control_plane.access.secrets import ENV_PREFIX as SECRET_PREFIX
from control_plane.access.secrets import Secrets, SecretsError, load_secrets
from control_plane.access.tls import grpc_credentials, http_context
from control_plane.access.tokens import Tokens
from control_plane.access.web_sessions import SignInLink, WebSessions
from control_plane.api.access import AccessInterceptor
from control_plane.api.access_service import AccessServicer
from control_plane.api.agent_service import AgentServicer
from control_plane.api.audit_service import AuditServicer
from control_plane.api.connect_adapter import ConnectAdapter, ServiceTable
from control_plane.api.errors import ErrorInterceptor
from control_plane.api.event_service import EventServicer
from control_plane.api.http_hooks import HookListener
from control_plane.api.http_metrics import MetricsEndpoint
from control_plane.api.http_web import WebUi
from control_plane.api.lineage_service import LineageServicer
from control_plane.api.pipeline_service import PipelineServicer
from control_plane.api.run_service import RunServicer
from control_plane.config import ServerConfig
from control_plane.errors import FailedPrecondition
from control_plane.execution.agents import Agents
from control_plane.execution.artifacts import ArtifactStore
from control_plane.execution.child_runs import ChildRuns
from control_plane.execution.dispatch import Dispatcher
from control_plane.execution.hub import AgentHub
from control_plane.execution.plans import PlanCache
from control_plane.execution.reaper import Reaper
from control_plane.execution.runs import Runs
from control_plane.execution.signals import Signals
from control_plane.execution.stats import PipelineStats
from control_plane.execution.test_runs import TestRuns
from control_plane.execution.transitions import Transitions
from control_plane.execution.unit_of_work import UnitOfWork
from control_plane.lineage.graph import Lineage
from control_plane.lineage.openlineage_client import OpenLineageSender, OpenLineageTarget
from control_plane.lineage.recorder import LineageRecorder
from control_plane.metrics.instruments import ServerMetrics
from control_plane.metrics.scraped import Scrape
from control_plane.notifications.channels import Settings
from control_plane.notifications.defaults import load_defaults
from control_plane.notifications.delivery import Delivery
from control_plane.notifications.email import Smtp
from control_plane.notifications.events import RunEvents
from control_plane.notifications.late import LateRuns
from control_plane.notifications.testing import NotificationTests
from control_plane.pipelines.registry import Registry
from control_plane.scheduling.backfills import Backfills
from control_plane.scheduling.control import ScheduleControl
from control_plane.scheduling.scheduler import Scheduler
from control_plane.scheduling.schedules import ScheduleSync, record_outcome
from control_plane.store import migrate
from control_plane.store.db import Database
from control_plane.store.urls import display_url
from control_plane.triggers.events import Events
from control_plane.triggers.subscriptions import EventSubscriptions
from control_plane.triggers.watch_assignment import WatchAssigner
from control_plane.triggers.watches import Watches, WatchSync
from control_plane.triggers.webhooks import Webhooks
from legato.named_values import variable_name
from legato.v1 import (
    access_service_pb2,
    access_service_pb2_grpc,
    agent_service_pb2,
    agent_service_pb2_grpc,
    audit_service_pb2,
    audit_service_pb2_grpc,
    event_service_pb2,
    event_service_pb2_grpc,
    lineage_service_pb2,
    lineage_service_pb2_grpc,
    pipeline_service_pb2,
    pipeline_service_pb2_grpc,
    run_service_pb2,
    run_service_pb2_grpc,
)
from observability.tracing import Tracing

__all__ = ["ControlPlane", "run"]

log = structlog.get_logger("legato.server")

SERVICE_NAMES = [
    pipeline_service_pb2.DESCRIPTOR.services_by_name["PipelineService"].full_name,
    run_service_pb2.DESCRIPTOR.services_by_name["RunService"].full_name,
    event_service_pb2.DESCRIPTOR.services_by_name["EventService"].full_name,
    agent_service_pb2.DESCRIPTOR.services_by_name["AgentService"].full_name,
    access_service_pb2.DESCRIPTOR.services_by_name["AccessService"].full_name,
    audit_service_pb2.DESCRIPTOR.services_by_name["AuditService"].full_name,
    lineage_service_pb2.DESCRIPTOR.services_by_name["LineageService"].full_name,
]
CREDENTIAL_CHECK_SECONDS = 2.0
"""How often connected agents' enrolment tokens are checked for revocation and expiry."""


@dataclass
class ControlPlane:
    """A running control plane; ``start`` it, then ``stop`` it."""

    config: ServerConfig
    db: Database | None = None
    server: grpc.aio.Server | None = None
    port: int = 0
    http_port: int = 0
    hub: AgentHub = field(default_factory=AgentHub)
    _health: health.aio.HealthServicer | None = None
    _signals: Signals | None = None
    _tracing: Tracing | None = None
    _hooks: HookListener | None = None
    _watches: WatchAssigner | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    clock: Callable[[], datetime] = field(default=lambda: _utcnow())
    """Now, in UTC: injectable so tests can move time (schedules) without sleeping."""
    scheduler: Scheduler | None = None
    scheduler_loop: bool = True
    """False: schedules fire only when ``scheduler.tick`` is called (tests)."""
    tokens: Tokens | None = None
    web_sessions: WebSessions | None = None
    """Web UI sessions (set by ``start``): ``legato up`` prints a sign-in link from here."""
    """API and agent tokens (set by ``start``): ``legato up`` and tests mint theirs here."""
    warn_without_admin: bool = True
    """Log ``no_admin_token`` at start when no admin token exists (``legato up`` makes its
    own right after)."""
    _authenticator: Authenticator | None = None
    metrics: ServerMetrics = field(default_factory=ServerMetrics)
    """Its Prometheus metrics (``GET /metrics`` on the HTTP listener)."""

    async def start(self) -> int:
        """Open the database (upgrading its schema), start serving; returns the bound port."""
        secrets = _load_secrets(self.config.secrets_file)
        smtp = _smtp(self.config, secrets)
        db = Database(self.config.db)
        self.db = db
        try:
            await db.check_connection()
            await self._prepare_schema(db)
            clock = self.clock
            tokens = Tokens(db, clock=clock)
            self.tokens = tokens
            web_sessions = WebSessions(db, clock=clock)
            self.web_sessions = web_sessions
            authenticator = (
                None
                if self.config.auth == "none"
                else Authenticator(tokens, clock=clock, sessions=web_sessions)
            )
            self._authenticator = authenticator
            audit_log = AuditLog(db, clock=clock)
            registry = Registry(db, clock=clock)
            registry.watch(EventSubscriptions())
            replica = f"{socket.gethostname()}-{os.getpid()}-{os.urandom(2).hex()}"
            lease = self.config.lease_timeout
            signals = Signals(replica, postgres_url=db.url if db.is_postgres else None)
            await signals.start()
            self._signals = signals
            plans = PlanCache()
            run_events = RunEvents(load_defaults(self.config.notifications_file))
            openlineage = _openlineage(self.config, secrets)
            lineage = LineageRecorder(openlineage)
            self._tracing = Tracing("legato-control-plane")
            metrics = self.metrics
            transitions = Transitions(
                plans,
                clock,
                self._tracing,
                on_run_finished=[record_outcome, run_events.finished, lineage.finished],
                on_run_started=[run_events.started, lineage.started],
                on_step_retrying=[run_events.retrying],
                on_run_event=[run_events.happened],
                observer=metrics,
            )
            signals.on_cancel(self.hub.cancel)
            # The dispatcher first: every unit of work leases what it made ready through it.
            dispatcher = Dispatcher(
                db,
                self.hub,
                plans,
                signals,
                lease_seconds=lease,
                clock=clock,
                tracing=self._tracing,
                observer=metrics,
            )
            unit_of_work = UnitOfWork(db, dispatcher, signals, clock=clock)
            runs = Runs(db, plans, transitions, unit_of_work, clock=clock)
            reaper = Reaper(
                db,
                transitions,
                signals,
                unit_of_work,
                clock=clock,
                lease_seconds=lease,
                observer=metrics,
            )
            agents = Agents(
                db,
                self.hub,
                transitions,
                signals,
                unit_of_work,
                dispatcher,
                reaper,
                replica=replica,
                lease_seconds=lease,
                clock=clock,
            )
            child_runs = ChildRuns(db, runs, transitions, signals, clock=clock)
            registry.watch(ScheduleSync(signals.schedules_changed))
            assigner = WatchAssigner(
                db, self.hub, replica=replica, lease_seconds=lease, clock=clock
            )
            registry.watch(WatchSync(assigner.wake))
            self._watches = assigner
            watches = Watches(runs, clock=clock, on_agents_changed=assigner.wake)
            self.scheduler = Scheduler(
                db, runs, plans, signals, clock=clock, on_fired=metrics.schedule_fired
            )
            backfills = Backfills(db, runs, plans, transitions, clock=clock)
            schedules = ScheduleControl(db, clock=clock, on_change=signals.schedules_changed)
            artifacts = ArtifactStore(
                db,
                directory=None if self.config.artifacts == "db" else Path(self.config.artifacts),
                max_bytes=self.config.artifact_max_mb * 1024 * 1024,
                clock=clock,
            )
            limit = self.config.max_message_mb * 1024 * 1024
            access = AccessInterceptor(
                Rules(), authenticator, audit_log, max_streams=self.config.max_streams_per_caller
            )
            interceptors = [ErrorInterceptor(), access]
            server = grpc.aio.server(
                interceptors=interceptors,
                options=[
                    ("grpc.max_receive_message_length", limit),
                    ("grpc.max_send_message_length", limit),
                    ("grpc.so_reuseport", 0),
                    # Find dead peers (agents ping every 10 s): ping idle connections every
                    # 30 s, drop them after 10 s without an answer; refuse ping floods.
                    ("grpc.keepalive_time_ms", 30_000),
                    ("grpc.keepalive_timeout_ms", 10_000),
                    ("grpc.keepalive_permit_without_calls", 1),
                    ("grpc.http2.min_recv_ping_interval_without_data_ms", 5_000),
                    ("grpc.http2.max_ping_strikes", 3),
                    ("grpc.max_concurrent_streams", 256),
                ],
            )
            services = ServiceTable(server)  # the Connect adapter calls the same servicers
            registering = services.as_server()
            pipeline_service_pb2_grpc.add_PipelineServiceServicer_to_server(
                PipelineServicer(
                    registry,
                    schedules,
                    NotificationTests(
                        db, Settings(secrets, smtp, self.config.pagerduty_url), clock=clock
                    ),
                    PipelineStats(db),
                ),
                registering,
            )
            run_service_pb2_grpc.add_RunServiceServicer_to_server(
                RunServicer(
                    runs,
                    signals,
                    db,
                    artifacts,
                    backfills,
                    tests=TestRuns(
                        runs,
                        plans,
                        transitions,
                        registry,
                        artifacts,
                        lease_seconds=lease,
                        clock=clock,
                    ),
                ),
                registering,
            )
            event_service_pb2_grpc.add_EventServiceServicer_to_server(
                EventServicer(Events(db, runs, plans, clock=clock)), registering
            )
            access_service_pb2_grpc.add_AccessServiceServicer_to_server(
                AccessServicer(tokens, authenticator, agents, web_sessions), registering
            )
            audit_service_pb2_grpc.add_AuditServiceServicer_to_server(
                AuditServicer(audit_log), registering
            )
            lineage_service_pb2_grpc.add_LineageServiceServicer_to_server(
                LineageServicer(Lineage(db)), registering
            )
            agent_service_pb2_grpc.add_AgentServiceServicer_to_server(
                AgentServicer(
                    agents,
                    artifacts,
                    lease_seconds=lease,
                    heartbeat_seconds=max(0.5, lease / 4),
                    watches=watches,
                ),
                registering,
            )
            self._health = health.aio.HealthServicer()
            health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
            reflection.enable_server_reflection(
                [*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME], server
            )
            credentials = grpc_credentials(self.config)
            try:
                if credentials is None:
                    self.port = server.add_insecure_port(self.config.listen)
                else:
                    self.port = server.add_secure_port(self.config.listen, credentials)
            except RuntimeError:
                raise FailedPrecondition(
                    f"cannot listen on {self.config.listen}: the address is in use or not "
                    "available here; choose another with --listen HOST:PORT",
                    reason="LISTEN_FAILED",
                ) from None
            if self.config.http_listen != "off":
                webhooks = Webhooks(db, runs, plans, secrets, clock=clock)
                self._hooks = HookListener(
                    webhooks,
                    self.config.http_listen,
                    ssl_context=http_context(self.config),
                    metrics=MetricsEndpoint(
                        Scrape(metrics, db, self.hub, clock=clock), authenticator
                    ),
                    web_ui=WebUi(
                        ConnectAdapter(services.handlers, interceptors, services=SERVICE_NAMES),
                        web_sessions,
                        authenticator,
                        secure=bool(self.config.tls_cert),
                    ),
                )
                self.http_port = await self._hooks.start()
                web_sessions.base_url = self.config.ui_url or _listener_url(
                    self.config.http_listen, self.http_port, tls=bool(self.config.tls_cert)
                )
                log.info("http_listening", listen=self.config.http_listen, port=self.http_port)
            await server.start()
            self.server = server
            for name in ["", *SERVICE_NAMES]:
                await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
            self._tasks = [
                asyncio.create_task(dispatcher.run_forever(), name="legato-dispatcher"),
                asyncio.create_task(reaper.run_forever(), name="legato-reaper"),
                asyncio.create_task(child_runs.run_forever(), name="legato-child-runs"),
                asyncio.create_task(assigner.run_forever(), name="legato-watches"),
                asyncio.create_task(
                    Delivery(
                        db,
                        Settings(
                            secrets,
                            smtp,
                            self.config.pagerduty_url,
                            openlineage=None
                            if openlineage is None
                            else OpenLineageSender(openlineage),
                        ),
                        clock=clock,
                        on_outcome=metrics.notification_sent,
                    ).run_forever(),
                    name="legato-notifications",
                ),
                asyncio.create_task(
                    LateRuns(db, run_events, clock=clock).run_forever(), name="legato-late-runs"
                ),
            ]
            if authenticator is not None:
                self._tasks.append(
                    asyncio.create_task(authenticator.run_forever(), name="legato-token-use")
                )
                self._tasks.append(
                    asyncio.create_task(web_sessions.run_forever(), name="legato-web-sessions")
                )
                self._tasks.append(
                    asyncio.create_task(
                        _check_agent_credentials(agents, tokens), name="legato-agent-credentials"
                    )
                )
            if self.scheduler_loop:
                self._tasks.append(
                    asyncio.create_task(self.scheduler.run_forever(), name="legato-scheduler")
                )
        except BaseException:
            if self._hooks is not None:
                await self._hooks.stop()
            if self._signals is not None:
                await self._signals.stop()
            await db.dispose()
            raise
        if self.config.auth == "none":
            log.warning(
                "authentication_off",
                detail="--auth none: every caller on this loopback listener may do anything",
            )
        elif self.warn_without_admin and await self.tokens.count_admins() == 0:
            log.warning(
                "no_admin_token",
                detail="no live admin token exists; make the first one on the database: "
                f"legato tokens create admin --role admin --db {display_url(self.config.db)}",
            )
        log.info(
            "server_started",
            listen=self.config.listen,
            port=self.port,
            db=db.display_url,
            tls="mtls" if self.config.client_ca else "tls" if self.config.tls_cert else "off",
            auth=self.config.auth,
        )
        return self.port

    async def sign_in_link(self, token: str, next_path: str = "/") -> SignInLink:
        """A one-time web UI sign-in link for the API token ``token`` (``legato up``)."""
        if self._authenticator is None or self.web_sessions is None:
            raise FailedPrecondition(
                "authentication is off: the web UI needs no sign-in", reason="AUTH_OFF"
            )
        principal = await self._authenticator.api(token)
        return await self.web_sessions.create_code(principal, next_path, principal.actor())

    async def stop(self, grace: float | None = None) -> None:
        """Stop taking calls, give in-flight ones ``grace`` seconds, close the database."""
        if self._health is not None:
            await self._health.enter_graceful_shutdown()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._watches is not None and self.db is not None and self.db.is_postgres:
            # Only other replicas (on PostgreSQL) gain from it; never let it hold up the
            # stop (a write may wait on a connection a cancelled task still holds).
            try:
                async with asyncio.timeout(2):
                    await self._watches.release()
            except Exception:
                log.exception("watch_release_failed")
        # Agent streams never end by themselves: close them so shutdown does not wait.
        for session in self.hub.sessions():
            session.send(None)
        if self._hooks is not None:
            await self._hooks.stop()
        if self.server is not None:
            await self.server.stop(self.config.shutdown_grace if grace is None else grace)
        if self._signals is not None:
            await self._signals.stop()
        if self._authenticator is not None:
            try:
                async with asyncio.timeout(2):
                    await self._authenticator.flush_use()
            except Exception:
                log.exception("token_use_flush_failed")
        if self._tracing is not None:
            await asyncio.to_thread(self._tracing.shutdown)
        if self.db is not None:
            await self.db.dispose()
        log.info("server_stopped")

    async def _prepare_schema(self, db: Database) -> None:
        head = migrate.head_revision()
        current = await migrate.current_revision(db)
        if current == head:
            return
        if current is not None and not migrate.is_known_revision(current):
            raise FailedPrecondition(
                f"the database schema is at revision {current}, newer than this server knows "
                f"(its newest is {head}): a newer Legato upgraded it. Run that version (or "
                "newer); a schema is never downgraded by starting an older server",
                reason="SCHEMA_TOO_NEW",
            )
        if not self.config.migrate:
            raise FailedPrecondition(
                f"the database schema is at revision {current or 'none'}, this server needs "
                f"{head}; run `legato db upgrade --db ...` or start without --no-migrate",
                reason="SCHEMA_OUT_OF_DATE",
            )
        before, after = await migrate.upgrade(db)
        log.info("schema_upgraded", before=before, after=after)


def _utcnow() -> datetime:
    return datetime.now(UTC)


async def _check_agent_credentials(agents: Agents, tokens: Tokens) -> None:
    """Close the streams of agents whose enrolment token was revoked (on any replica) or
    has expired; their steps are retried as lost."""
    while True:
        await asyncio.sleep(CREDENTIAL_CHECK_SECONDS)
        try:
            await agents.check_credentials(tokens.dead_agent_tokens)
        except Exception:
            log.exception("agent_credential_check_failed")


def _secret(secrets: Secrets, flag: str, name: str) -> str:
    """The value of the secret a setting names ("" when it names none)."""
    if not name:
        return ""
    found = secrets.get(name)
    if found is None:
        raise FailedPrecondition(
            f"{flag} {name!r}: the server has no such secret; give it in --secrets or as "
            + variable_name(SECRET_PREFIX, name),
            reason="INVALID_SECRETS",
        )
    return found


def _openlineage(config: ServerConfig, secrets: Secrets) -> OpenLineageTarget | None:
    """Where OpenLineage events go (None without --openlineage-url)."""
    if not config.openlineage_url:
        return None
    api_key = _secret(secrets, "--openlineage-api-key-secret", config.openlineage_api_key_secret)
    return OpenLineageTarget(
        url=config.openlineage_url,
        endpoint=config.openlineage_endpoint,
        api_key=api_key,
        namespace=config.openlineage_namespace,
    )


def _smtp(config: ServerConfig, secrets: Secrets) -> Smtp | None:
    """The SMTP settings of email notifications (None without --smtp-host)."""
    if not config.smtp_host:
        return None
    password = _secret(secrets, "--smtp-password-secret", config.smtp_password_secret)
    return Smtp(
        host=config.smtp_host,
        port=config.smtp_port,
        tls=config.smtp_tls,
        user=config.smtp_user,
        password=password,
        sender=config.smtp_from or f"legato@{socket.gethostname()}",
        ca_file=config.smtp_ca,
    )


def _load_secrets(path: str) -> Secrets:
    try:
        secrets = load_secrets(Path(path) if path else None)
    except SecretsError as exc:
        raise FailedPrecondition(f"--secrets: {exc}", reason="INVALID_SECRETS") from None
    if secrets.names:
        log.info("secrets_loaded", names=secrets.names)
    return secrets


async def run(config: ServerConfig) -> None:
    """Serve until SIGTERM or SIGINT, then shut down gracefully."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # Installed before start: a signal that arrives while starting stops the server next.
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    plane = ControlPlane(config)
    await plane.start()
    try:
        await stop.wait()
        log.info("shutting_down", grace_seconds=config.shutdown_grace)
    finally:
        await plane.stop()


def _listener_url(listen: str, port: int, *, tls: bool) -> str:
    """The address browsers on this machine reach the HTTP listener at."""
    host = listen.rpartition(":")[0].strip("[]")
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"{'https' if tls else 'http'}://{host}:{port}"
