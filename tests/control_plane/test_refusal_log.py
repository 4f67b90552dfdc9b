"""Refused calls are logged (method, reason, peer, caller), never with their credential,
and a flood of them is summarised instead of flooding the log."""

from __future__ import annotations

from typing import Any

from structlog.testing import capture_logs

from control_plane.api.access import RefusalLog
from control_plane.errors import Unauthenticated


class _Context:
    def peer(self) -> str:
        return "ipv4:10.0.0.7:51234"


def test_refusals_are_logged_and_a_flood_is_counted() -> None:
    now = [100.0]
    refusals = RefusalLog(per_second=3, clock=lambda: now[0])
    error = Unauthenticated("bad", reason="INVALID_TOKEN")
    context: Any = _Context()
    with capture_logs() as logs:
        for _ in range(10):
            refusals.log("/legato.v1.RunService/GetRun", context, error, caller="")
        now[0] += 1.5
        refusals.log("/legato.v1.RunService/GetRun", context, error, caller="token:ci")
    refused = [e for e in logs if e["event"] == "call_refused"]
    assert len(refused) == 4
    assert refused[0] == {
        "event": "call_refused",
        "log_level": "warning",
        "method": "GetRun",
        "reason": "INVALID_TOKEN",
        "peer": "ipv4:10.0.0.7:51234",
        "caller": None,
    }
    assert refused[-1]["caller"] == "token:ci"
    assert [e["count"] for e in logs if e["event"] == "call_refused_suppressed"] == [7]
