"""Test helpers for code that uses Legato: a real control plane in a background thread.

    from legato.testing import LocalControlPlane

    def test_my_pipeline(tmp_path):
        with LocalControlPlane(db=f"sqlite:///{tmp_path}/legato.db") as plane:
            plane.client().apply_pipeline(spec)            # an admin's client
            plane.client(role="viewer").list_runs()        # a viewer's
            token = plane.agent_token("a1")                # for `legato agent --token`

The server is the production one (gRPC over loopback on a free port, the real store,
authentication on); only its event loop runs in a thread of the test process. Tokens are
minted straight in its store, one per role, as an admin would with ``legato tokens
create``. Needs the server extras."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from datetime import datetime
from types import TracebackType
from typing import Any

from legato.client import Client
from legato.connection import Connection

__all__ = ["LocalControlPlane"]


class LocalControlPlane:
    """A control plane serving on 127.0.0.1 at a free port until ``stop()`` (or the end
    of the ``with`` block); its webhook listener too, at ``http_address``."""

    def __init__(
        self,
        *,
        db: str,
        listen: str = "127.0.0.1:0",
        http_listen: str = "127.0.0.1:0",
        clock: Callable[[], datetime] | None = None,
        scheduler_loop: bool = True,
        **settings: Any,
    ) -> None:
        """``clock`` replaces the control plane's "now" (tests move time with it);
        ``scheduler_loop=False`` leaves firing schedules to explicit ``tick`` calls."""
        from control_plane.config import ServerConfig

        self.config = ServerConfig(listen=listen, db=db, http_listen=http_listen, **settings)
        self.address = ""
        self.http_address = ""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="legato-control-plane", daemon=True
        )
        self._plane: Any = None
        self._clients: list[Client] = []
        self._clock = clock
        self._scheduler_loop = scheduler_loop
        self._tokens: dict[str, str] = {}

    def start(self) -> LocalControlPlane:
        from control_plane.app import ControlPlane

        self._thread.start()
        self._plane = ControlPlane(
            self.config, scheduler_loop=self._scheduler_loop, warn_without_admin=False
        )
        if self._clock is not None:
            self._plane.clock = self._clock
        port = self._run(self._plane.start())
        self.address = f"127.0.0.1:{port}"
        if self._plane.http_port:
            self.http_address = f"127.0.0.1:{self._plane.http_port}"
        return self

    def stop(self) -> None:
        for client in self._clients:
            client.close()
        if self._plane is not None:
            self._run(self._plane.stop(grace=1))
            self._plane = None
            self._run(_finish_tasks())
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        self._loop.close()

    def tick(self, now: datetime | None = None) -> list[str]:
        """Fire the schedules due at ``now`` (default: the plane's clock); returns the ids
        of the runs created."""
        created: list[str] = self._run(self._plane.scheduler.tick(now))
        return created

    def client(
        self,
        *,
        role: str = "admin",
        user: str = "tester",
        timeout: float = 30.0,
        token: str | None = None,
        ca: str = "",
        cert: str = "",
        key: str = "",
    ) -> Client:
        """A client of this control plane with a token of ``role`` (or ``token``), closed
        when the plane stops; ``ca``, ``cert``, ``key`` for a TLS server."""
        secret = token if token is not None else self.token(role)
        connection = Connection(server=self.address, token=secret, ca=ca, cert=cert, key=key)
        client = Client(connection=connection, user=user, timeout=timeout)
        self._clients.append(client)
        return client

    def token(self, role: str = "admin", *, name: str | None = None) -> str:
        """The secret of an API token with ``role`` (one per role, made on first use;
        ``name`` makes another). Empty under ``auth="none"``."""
        if self.config.auth == "none":
            return ""
        key = name or role
        if key not in self._tokens:
            from control_plane.access.actors import Actor
            from control_plane.access.roles import parse_role
            from control_plane.errors import AlreadyExists

            base = name or ("tester" if role == "admin" else f"tester-{role}")
            for attempt in range(1, 100):
                # Another control plane on the same database may have made this name.
                candidate = base if attempt == 1 else f"{base}-{attempt}"
                try:
                    created = self._run(
                        self._plane.tokens.create(
                            candidate, parse_role(role), Actor("legato.testing", kind="local")
                        )
                    )
                except AlreadyExists:
                    if name is not None:
                        raise
                    continue
                self._tokens[key] = created.secret
                break
        return self._tokens[key]

    def agent_token(
        self,
        agent: str,
        *,
        labels: dict[str, str] | None = None,
        connections: Sequence[str] = ("*",),
    ) -> str:
        """The secret of a new enrolment token for agent ``agent``."""
        from control_plane.access.actors import Actor

        created = self._run(
            self._plane.tokens.create_agent(
                agent,
                Actor("legato.testing", kind="local"),
                labels=labels,
                connections=connections,
            )
        )
        secret: str = created.secret
        return secret

    def __enter__(self) -> LocalControlPlane:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _run(self, coro: Any) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(timeout=60)


async def _finish_tasks() -> None:
    """Cancel what still runs on the loop (stream handlers) and close async generators,
    as asyncio.run does, so nothing is left to run after the loop closes."""
    current = asyncio.current_task()
    tasks = [task for task in asyncio.all_tasks() if task is not current]
    for task in tasks:
        task.cancel()
    if tasks:
        # Bounded: a task that does not finish promptly must not hang the caller's teardown.
        await asyncio.wait(tasks, timeout=5)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.get_running_loop().shutdown_asyncgens(), timeout=5)
    # A cancelled task may have left a call running in a database driver's thread (aiosqlite);
    # let it report back while the loop can still take the callback.
    await asyncio.sleep(0.1)
