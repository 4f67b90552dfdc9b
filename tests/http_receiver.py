"""An HTTP server on loopback for tests of what Legato sends (notifications): it records
every POST and answers with the statuses it is told to."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field

from aiohttp import web

__all__ = ["Receiver"]


@dataclass
class Receiver:
    """An HTTP server on loopback that records what it is sent and answers with the
    statuses it is told to, in order (then 200)."""

    answers: list[int] = field(default_factory=list)
    hold_first: bool = False
    """Never answer the first request (a sender killed mid-send)."""
    texts: dict[int, str] = field(default_factory=dict)
    """The body answered with a status (default ``busy`` for a 5xx, else ``ok``)."""
    received: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)
    url: str = ""

    def __post_init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._runner: web.AppRunner | None = None
        self._release = asyncio.Event()

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def handle(request: web.Request) -> web.Response:
            body = await request.read()
            self.received.append((request.path, dict(request.headers), body))
            if self.hold_first and len(self.received) == 1:
                await self._release.wait()  # not answered while the test runs
            status = self.answers.pop(0) if self.answers else 200
            text = self.texts.get(status, "busy" if status >= 500 else "ok")
            return web.Response(status=status, text=text)

        async def start() -> None:
            app = web.Application()
            app.router.add_post("/{tail:.*}", handle)
            runner = web.AppRunner(app, shutdown_timeout=0.5)
            self._runner = runner
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            self.url = f"http://127.0.0.1:{port}"
            self._ready.set()

        self._loop.run_until_complete(start())
        self._loop.run_forever()
        if self._runner is not None:
            self._loop.run_until_complete(self._runner.cleanup())
        self._loop.close()

    def __enter__(self) -> Receiver:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *_: object) -> None:
        self._loop.call_soon_threadsafe(self._release.set)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def wait_for(self, count: int, within: float = 30) -> list[tuple[str, dict[str, str], bytes]]:
        deadline = time.monotonic() + within
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(self.received) >= count, self.received
        return self.received
