"""Page tokens for keyset pagination (AIP-158).

A token is opaque to clients: URL-safe base64 of JSON holding the last key returned and
a fingerprint of the request's filters, so a token reused with other filters is refused
instead of silently returning the wrong page.

A page is bounded by count (``page_size``: 0 → DEFAULT_PAGE_SIZE, at most MAX_PAGE_SIZE)
and, where its items are large, by bytes: a servicer may return fewer items than the
page holds (``api/bounded.py``) and resume after the last one it sent with
``Page.token_after``, so every item is still reached by following ``next_page_token``."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from control_plane.errors import InvalidArgument

__all__ = ["DEFAULT_PAGE_SIZE", "MAX_PAGE_SIZE", "Page", "PageRequest"]

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000

T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next_page_token: str
    resume: Callable[[T], str] | None = field(default=None, compare=False, repr=False)
    """The token of the page that starts after a given item of ``items`` (None: the page
    cannot be cut short)."""

    def token_after(self, item: T) -> str:
        """The page token that continues after ``item``, one of ``items``."""
        if self.resume is None:
            raise ValueError("this page cannot be resumed after an item")
        return self.resume(item)


@dataclass(frozen=True)
class PageRequest:
    """A validated page request: how many items, and after which key."""

    size: int
    after: Any
    fingerprint: str

    @classmethod
    def parse(
        cls, page_size: int, page_token: str, *, max_size: int = MAX_PAGE_SIZE, **filters: Any
    ) -> PageRequest:
        """``max_size``: a larger cap for lists of small items (log lines)."""
        if page_size < 0:
            raise InvalidArgument(
                f"page_size {page_size} is negative; use 0 for the default ({DEFAULT_PAGE_SIZE})"
            )
        size = min(page_size or DEFAULT_PAGE_SIZE, max_size)
        fingerprint = _fingerprint(filters)
        if not page_token:
            return cls(size=size, after=None, fingerprint=fingerprint)
        try:
            data = json.loads(base64.urlsafe_b64decode(page_token.encode() + b"=="))
            after, token_fingerprint = data["k"], data["f"]
        except (ValueError, KeyError, TypeError, binascii.Error):
            raise InvalidArgument(
                "page_token is not a token this server issued; pass the next_page_token of "
                "the previous response unchanged",
                reason="INVALID_PAGE_TOKEN",
            ) from None
        if token_fingerprint != fingerprint:
            raise InvalidArgument(
                "page_token belongs to a request with other filters; repeat the filters of "
                "the request that returned it",
                reason="INVALID_PAGE_TOKEN",
            )
        return cls(size=size, after=after, fingerprint=fingerprint)

    def page(self, rows: list[T], key: Any) -> Page[T]:
        """The page from ``rows`` fetched with ``limit = size + 1``; ``key(row)`` gives the
        keyset value of a row."""

        def resume(row: T) -> str:
            return self.token_after(key(row))

        if len(rows) <= self.size:
            return Page(items=rows, next_page_token="", resume=resume)
        items = rows[: self.size]
        return Page(items=items, next_page_token=resume(items[-1]), resume=resume)

    def token_after(self, key: Any) -> str:
        """The token of the page that starts after the item whose keyset value is ``key``
        (a caller that returns fewer items than it fetched, e.g. to bound a response's
        bytes, makes its own)."""
        token = json.dumps({"k": key, "f": self.fingerprint}, separators=(",", ":"))
        return base64.urlsafe_b64encode(token.encode()).decode().rstrip("=")


def _fingerprint(filters: dict[str, Any]) -> str:
    blob = json.dumps(filters, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
