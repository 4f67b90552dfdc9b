"""Messages between the runner and its fork server.

They travel over an ``AF_UNIX``/``SOCK_SEQPACKET`` socketpair, one JSON object per packet
(packets keep their boundaries, so there is no framing). The runner sends:

- ``{"op": "fork", "id": n, "task": path, "memory": bytes|null, "pooled": bool}``
  with the attempt's stdout, stderr and result pipe write ends attached (SCM_RIGHTS); the
  fork server adds ``"cgroup": path|null`` as it hands it to the child;
- ``{"op": "signal", "pid": pid, "signal": n, "id": n|null}``: signal that child's
  process group, if the child has not been reaped yet (so its pid, which is the group id,
  cannot have been reused) and, for a pooled worker, only while it still runs attempt
  ``id`` (a worker's pid serves attempt after attempt).

The fork server sends:

- ``{"event": "ready", "pid": pid, "threads": n, "failed": {module: error}}`` once;
- ``{"event": "started", "id": n, "pid": pid, "base_anon": bytes, "cgroup": path|null,
  "memory_cgroup": bool, "pooled": bool}`` when it has handed the attempt to a child;
  ``base_anon`` is the fork server's anonymous resident memory when it forked that child,
  which the child shares;
- ``{"event": "exited", "id": n, "pid": pid, "code": int|null, "signal": int|null,
  "max_rss": bytes, "cpu": seconds, "strays": [pid]}`` when it has reaped the child
  (after killing what was left of the child's process group; ``cpu`` is the user +
  system time of the child and the descendants it waited for), or, with ``"kept": true,
  "retired": why``, when a pooled worker reported the attempt done (it killed what the
  attempt left; ``retired`` is "" when the worker is reused; ``cpu`` is then the worker's
  CPU time during the attempt and ``"peak"`` how far its resident memory rose above what
  it was as the attempt began);
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
