"""The PagerDuty channel (Events API v2): a run's failure opens an incident and the
pipeline's next success resolves it. Every event of one pipeline uses one ``dedup_key``
(``legato/<pipeline>``), so a pipeline failing night after night keeps one incident open,
and it closes by itself when the pipeline succeeds again (a ``resolve`` with no open
incident is ignored by PagerDuty). ``succeeded`` and ``recovered`` send ``resolve``; any
other event sends ``trigger`` with the channel's ``severity`` (default ``error``)."""

from __future__ import annotations

import json
from typing import Any

from control_plane.notifications.events import happened

__all__ = ["DEFAULT_EVENTS_URL", "RESOLVING", "event_body"]

DEFAULT_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
RESOLVING = frozenset({"succeeded", "recovered"})


def event_body(
    event: str,
    facts: dict[str, Any],
    settings: dict[str, Any],
    routing_key: str,
    *,
    dedup_key: str = "",
) -> bytes:
    """The Events API v2 body for ``event`` of the run ``facts`` describes; ``dedup_key``
    replaces the pipeline's (``legato notify test`` opens and closes an incident of its own)."""
    pipeline = str(facts.get("pipeline"))
    body: dict[str, Any] = {
        "routing_key": routing_key,
        "dedup_key": dedup_key or f"legato/{pipeline}",
        "event_action": "resolve" if event in RESOLVING else "trigger",
    }
    if body["event_action"] == "trigger":
        summary = "Legato: " + happened(facts, event)
        body["payload"] = {
            "summary": summary[:1024],
            "source": f"legato pipeline {pipeline}",
            "severity": str(settings.get("severity") or "error"),
            "component": pipeline,
            "custom_details": facts,
        }
    return json.dumps(body, sort_keys=True).encode()
