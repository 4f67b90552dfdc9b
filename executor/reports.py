"""Reports the agent owes the control plane, kept until acknowledged.

Every report (task started, log batch, result) gets an increasing sequence number when it
is written to the stream and stays here until the control plane acknowledges it
(``ReportAck.through_seq``); after a reconnect the unacknowledged ones are sent again, in
order. The buffer is bounded: when full, the oldest unsent log batches are dropped first
(and counted, so the control plane can say lines were lost); results and task-started
reports are never dropped."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from legato.v1 import agent_service_pb2 as pb

__all__ = ["ReportBuffer"]


@dataclass
class _Entry:
    request: pb.ConnectRequest
    droppable: bool
    lines: int


class ReportBuffer:
    """Numbering happens when a message is written (``next_seq``), not when it is queued:
    heartbeats and credits may overtake queued reports, and a cumulative acknowledgement
    must only cover what was really sent before it."""

    def __init__(self, max_reports: int = 10_000) -> None:
        self._max = max_reports
        self._pending: OrderedDict[int, _Entry] = OrderedDict()
        self._key = 0
        self._seq = 0
        self._dropped: dict[str, int] = {}

    def next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def add(self, request: pb.ConnectRequest) -> pb.ConnectRequest:
        """Keep ``request`` until acknowledged; it is numbered when written."""
        request.seq = 0
        kind = request.WhichOneof("message")
        lines = len(request.logs.lines) if kind == "logs" else 0
        self._key += 1
        self._pending[self._key] = _Entry(request, droppable=kind == "logs", lines=lines)
        while len(self._pending) > self._max and self._drop_oldest_log():
            pass
        return request

    def ack(self, through_seq: int) -> None:
        """Forget every report written with a number up to ``through_seq``."""
        done = [k for k, e in self._pending.items() if 0 < e.request.seq <= through_seq]
        for key in done:
            del self._pending[key]

    def unacknowledged(self) -> list[pb.ConnectRequest]:
        """To send again after a reconnect, in their original order (renumbered then)."""
        requests = [entry.request for entry in self._pending.values()]
        for request in requests:
            request.seq = 0
        return requests

    def take_dropped(self, lease_id: str) -> int:
        """Lines of ``lease_id`` dropped since the last call, for its next log batch."""
        return self._dropped.pop(lease_id, 0)

    def __len__(self) -> int:
        return len(self._pending)

    def _drop_oldest_log(self) -> bool:
        for key, entry in self._pending.items():
            if entry.droppable and entry.request.seq == 0:
                lease_id = entry.request.logs.lease_id
                self._dropped[lease_id] = self._dropped.get(lease_id, 0) + entry.lines
                del self._pending[key]
                return True
        return False
