"""Sending one OpenLineage event with the openlineage-python client's HTTP transport.

The transport is synchronous (requests), so sends run on one worker thread of their own,
one at a time, never on the event loop. The transport's own retries are off: the outbox
retries (``notifications/delivery``), with its backoff, across restarts and replicas.
A 2xx delivers; a refused connection, a timeout, a 5xx or a 429 is tried again later;
any other answer is a failure no retry mends."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from control_plane.notifications.errors import DeliveryError, RetryableError

__all__ = ["OPENLINEAGE_CHANNEL", "TIMEOUT_SECONDS", "OpenLineageSender", "OpenLineageTarget"]

OPENLINEAGE_CHANNEL = "openlineage"
"""The outbox channel of OpenLineage events."""

TIMEOUT_SECONDS = 10.0
_NO_RETRIES = {
    "total": 0,
    "read": 0,
    "connect": 0,
    "status": 0,
    "backoff_factor": 0,
    "status_forcelist": [],
    "allowed_methods": ["POST"],
}


@dataclass(frozen=True)
class OpenLineageTarget:
    """Where events go: the receiver's base URL, its path, the API key (or ``""``), and
    the namespace of Legato's jobs."""

    url: str
    endpoint: str = "api/v1/lineage"
    api_key: str = ""
    namespace: str = "legato"

    @property
    def shown(self) -> str:
        return f"openlineage {self.url.rstrip('/')}/{self.endpoint.lstrip('/')}"


class OpenLineageSender:
    def __init__(self, target: OpenLineageTarget) -> None:
        self.target = target
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="legato-openlineage")
        self._transport: Any = None

    async def send(self, event: dict[str, Any]) -> str:
        """POST ``event``; the receiver's answer (``201 Created``), or RetryableError /
        DeliveryError."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, self._emit, event)

    def _make_transport(self) -> Any:
        from openlineage.client.transport.http import (
            ApiKeyTokenProvider,
            HttpConfig,
            HttpTransport,
            TokenProvider,
        )

        auth = (
            ApiKeyTokenProvider({"apiKey": self.target.api_key})
            if self.target.api_key
            else TokenProvider({})
        )
        config = HttpConfig(
            url=self.target.url,
            endpoint=self.target.endpoint,
            timeout=TIMEOUT_SECONDS,
            auth=auth,
            retry=dict(_NO_RETRIES),
        )
        return HttpTransport(config)

    def _emit(self, event: dict[str, Any]) -> str:
        import requests

        if self._transport is None:
            self._transport = self._make_transport()
        what = self.target.shown
        try:
            answer = self._transport.emit(event)
        except requests.HTTPError as error:
            response = error.response
            status = response.status_code if response is not None else 0
            said = f"{status} {response.reason if response is not None else ''}".rstrip()
            message = f"{what} answered {said}"
            if status >= 500 or status == 429:
                raise RetryableError(message, answer=said) from None
            raise DeliveryError(message, answer=said) from None
        except (requests.ConnectionError, requests.Timeout) as error:
            raise RetryableError(f"{what} failed: {type(error).__name__}") from None
        except requests.RequestException as error:
            raise DeliveryError(f"{what}: {type(error).__name__}: {error}") from None
        return f"{answer.status_code} {answer.reason or ''}".rstrip()

    def close(self) -> None:
        self._thread.shutdown(wait=False)
