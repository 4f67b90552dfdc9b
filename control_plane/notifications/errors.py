"""How a send fails: for good (``DeliveryError``), or in a way a later attempt may not
(``RetryableError``). Messages say why and never contain a secret or a Slack URL."""

from __future__ import annotations

__all__ = ["DeliveryError", "RetryableError"]


class DeliveryError(Exception):
    """A send that failed for good; the message says why (no secret in it), and
    ``answer`` is the receiver's own answer, when it gave one (``404 no_service``)."""

    def __init__(self, message: str, *, answer: str = "") -> None:
        super().__init__(message)
        self.answer = answer


class RetryableError(DeliveryError):
    """A send that failed in a way a later attempt may not."""
