"""Wires the control plane: config → database (schema upgraded) → domain services →
servicers → one grpc.aio server with health checking and reflection."""

from __future__ import annotations

import asyncio
import signal
from dataclasses import dataclass

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from control_plane.api.errors import ErrorInterceptor
from control_plane.api.pipeline_service import PipelineServicer
from control_plane.api.unimplemented import unimplemented_servicer
from control_plane.config import ServerConfig
from control_plane.errors import FailedPrecondition
from control_plane.registry import Registry
from control_plane.store import migrate
from control_plane.store.db import Database
from legato.v1 import (
    agent_service_pb2,
    agent_service_pb2_grpc,
    event_service_pb2,
    event_service_pb2_grpc,
    pipeline_service_pb2,
    pipeline_service_pb2_grpc,
    run_service_pb2,
    run_service_pb2_grpc,
)

__all__ = ["ControlPlane", "run"]

log = structlog.get_logger("legato.server")

SERVICE_NAMES = [
    pipeline_service_pb2.DESCRIPTOR.services_by_name["PipelineService"].full_name,
    run_service_pb2.DESCRIPTOR.services_by_name["RunService"].full_name,
    event_service_pb2.DESCRIPTOR.services_by_name["EventService"].full_name,
    agent_service_pb2.DESCRIPTOR.services_by_name["AgentService"].full_name,
]


@dataclass
class ControlPlane:
    """A running control plane; ``start`` it, then ``stop`` it."""

    config: ServerConfig
    db: Database | None = None
    server: grpc.aio.Server | None = None
    port: int = 0
    _health: health.aio.HealthServicer | None = None

    async def start(self) -> int:
        """Open the database (upgrading its schema), start serving; returns the bound port."""
        db = Database(self.config.db)
        self.db = db
        try:
            await db.check_connection()
            await self._prepare_schema(db)
            registry = Registry(db)
            limit = self.config.max_message_mb * 1024 * 1024
            server = grpc.aio.server(
                interceptors=[ErrorInterceptor()],
                options=[
                    ("grpc.max_receive_message_length", limit),
                    ("grpc.max_send_message_length", limit),
                    ("grpc.so_reuseport", 0),
                ],
            )
            pipeline_service_pb2_grpc.add_PipelineServiceServicer_to_server(
                PipelineServicer(registry), server
            )
            run_service_pb2_grpc.add_RunServiceServicer_to_server(
                unimplemented_servicer(
                    run_service_pb2_grpc.RunServiceServicer, "RunService", "the execution plane"
                ),
                server,
            )
            event_service_pb2_grpc.add_EventServiceServicer_to_server(
                unimplemented_servicer(
                    event_service_pb2_grpc.EventServiceServicer, "EventService", "triggers"
                ),
                server,
            )
            agent_service_pb2_grpc.add_AgentServiceServicer_to_server(
                unimplemented_servicer(
                    agent_service_pb2_grpc.AgentServiceServicer,
                    "AgentService",
                    "the execution plane",
                ),
                server,
            )
            self._health = health.aio.HealthServicer()
            health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
            reflection.enable_server_reflection(
                [*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME], server
            )
            try:
                self.port = server.add_insecure_port(self.config.listen)
            except RuntimeError:
                raise FailedPrecondition(
                    f"cannot listen on {self.config.listen}: the address is in use or not "
                    "available here; choose another with --listen HOST:PORT",
                    reason="LISTEN_FAILED",
                ) from None
            await server.start()
            self.server = server
            for name in ["", *SERVICE_NAMES]:
                await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        except BaseException:
            await db.dispose()
            raise
        log.info("server_started", listen=self.config.listen, port=self.port, db=db.display_url)
        return self.port

    async def stop(self, grace: float | None = None) -> None:
        """Stop taking calls, give in-flight ones ``grace`` seconds, close the database."""
        if self._health is not None:
            await self._health.enter_graceful_shutdown()
        if self.server is not None:
            await self.server.stop(self.config.shutdown_grace if grace is None else grace)
        if self.db is not None:
            await self.db.dispose()
        log.info("server_stopped")

    async def _prepare_schema(self, db: Database) -> None:
        head = migrate.head_revision()
        current = await migrate.current_revision(db)
        if current == head:
            return
        if not self.config.migrate:
            raise FailedPrecondition(
                f"the database schema is at revision {current or 'none'}, this server needs "
                f"{head}; run `legato db upgrade --db ...` or start without --no-migrate",
                reason="SCHEMA_OUT_OF_DATE",
            )
        before, after = await migrate.upgrade(db)
        log.info("schema_upgraded", before=before, after=after)


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
