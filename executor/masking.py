"""Keeping credentials out of everything an agent sends: log lines, errors, traces.

A :class:`Masker` knows the agent's secret strings — each connection's full value and, for a
URL, its password — and replaces every occurrence with ``***``. The agent masks at the
source, before a line or an error leaves the process, whatever printed it (a driver's
exception, the user's ``print``)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import unquote, urlsplit

__all__ = ["MASK", "Masker", "safe_url"]

MASK = "***"
_MIN_SECRET = 4
"""Shorter values are not masked: replacing every ``ab`` in a log would destroy it and hide
nothing (a two-letter password is not protected by masking anyway)."""


def _secrets_of(value: str) -> list[str]:
    found = [value]
    try:
        parts = urlsplit(value)
    except ValueError:
        return found
    if parts.scheme and parts.password:
        found.append(parts.password)
        found.append(unquote(parts.password))
    return found


class Masker:
    def __init__(self, values: Iterable[str] = ()) -> None:
        secrets = {s for value in values for s in _secrets_of(value) if len(s) >= _MIN_SECRET}
        # Longest first, so that a URL is masked whole before its password is.
        ordered = sorted(secrets, key=len, reverse=True)
        self._pattern = re.compile("|".join(re.escape(s) for s in ordered)) if ordered else None

    def __call__(self, text: str) -> str:
        if self._pattern is None or not text:
            return text
        return self._pattern.sub(MASK, text)


def safe_url(url: str) -> str:
    """``url`` with its password replaced by ``***``, for messages that must name it."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK
    if not parts.password:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    return parts._replace(netloc=f"{parts.username}:{MASK}@{netloc[-1]}").geturl()
