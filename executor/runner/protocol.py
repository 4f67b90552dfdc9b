"""Messages between the runner and its fork server.

They travel over an ``AF_UNIX``/``SOCK_SEQPACKET`` socketpair, one JSON object per packet
(packets keep their boundaries, so there is no framing). The runner sends:

- ``{"op": "fork", "id": n, "task": path, "memory": bytes|null, "cgroup": path|null}``
  with the attempt's stdout, stderr and result pipe write ends attached (SCM_RIGHTS);
- ``{"op": "signal", "pid": pid, "signal": n}``: signal that child's process group, if
  the child has not been reaped yet (so its pid, which is the group id, cannot have been
  reused).

The fork server sends:

- ``{"event": "ready", "pid": pid, "threads": n, "failed": {module: error}}`` once;
- ``{"event": "started", "id": n, "pid": pid, "base_anon": bytes}`` when it has handed the
  attempt to a child; ``base_anon`` is the fork server's anonymous resident memory when it
  forked that child, which the child shares;
- ``{"event": "exited", "id": n, "pid": pid, "code": int|null, "signal": int|null,
  "max_rss": bytes}`` when it has reaped the child (after killing what was left of the
  child's process group);
- ``{"event": "error", "id": n, "error": text}`` when it could not fork.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["MAX_FDS", "MAX_PACKET", "decode", "encode"]

MAX_PACKET = 64 * 1024
MAX_FDS = 8


def encode(message: dict[str, Any]) -> bytes:
    data = json.dumps(message, separators=(",", ":")).encode()
    if len(data) > MAX_PACKET:
        raise ValueError(f"fork server message of {len(data)} bytes exceeds {MAX_PACKET}")
    return data


def decode(data: bytes) -> dict[str, Any]:
    message = json.loads(data)
    if not isinstance(message, dict):
        raise ValueError(f"fork server message is not an object: {data[:100]!r}")
    return message
