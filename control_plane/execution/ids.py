"""Identifiers: run ids and lease ids (ULIDs, sortable by creation time) and trace ids."""

from __future__ import annotations

import os
import time

__all__ = ["new_lease_id", "new_run_id", "new_span_id", "new_trace_id"]

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32


def _ulid() -> str:
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        value, index = divmod(value, 32)
        chars.append(_ALPHABET[index])
    return "".join(reversed(chars))


def new_run_id() -> str:
    return _ulid().lower()


def new_lease_id() -> str:
    return _ulid().lower()


def new_trace_id() -> str:
    return os.urandom(16).hex()


def new_span_id() -> str:
    return os.urandom(8).hex()
