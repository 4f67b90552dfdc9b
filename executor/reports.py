"""Reports the agent owes the control plane, kept until acknowledged.

Every report (task started, log batch, result) gets an increasing sequence number and
stays here until the control plane acknowledges it (``ReportAck.through_seq``); after a
reconnect the unacknowledged ones are sent again, in order. The buffer is bounded: when
full, the oldest log batches are dropped first (and counted, so the control plane can
say lines were lost); results and task-started reports are never dropped."""

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
    def __init__(self, max_reports: int = 10_000) -> None:
        self._max = max_reports
        self._pending: OrderedDict[int, _Entry] = OrderedDict()
        self._seq = 0
        self.dropped_lines = 0

    def next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def add(self, request: pb.ConnectRequest) -> pb.ConnectRequest:
        """Number ``request`` and keep it until acknowledged."""
        request.seq = self.next_seq()
        kind = request.WhichOneof("message")
        lines = len(request.logs.lines) if kind == "logs" else 0
        self._pending[request.seq] = _Entry(request, droppable=kind == "logs", lines=lines)
        while len(self._pending) > self._max and self._drop_oldest_log():
            pass
        return request

    def ack(self, through_seq: int) -> None:
        for seq in [s for s in self._pending if s <= through_seq]:
            del self._pending[seq]

    def unacknowledged(self) -> list[pb.ConnectRequest]:
        return [entry.request for entry in self._pending.values()]

    def __len__(self) -> int:
        return len(self._pending)

    def _drop_oldest_log(self) -> bool:
        for seq, entry in self._pending.items():
            if entry.droppable:
                self.dropped_lines += entry.lines
                del self._pending[seq]
                return True
        return False
