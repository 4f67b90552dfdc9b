"""Token secrets: ``lgt_<id>_<secret>`` for API tokens, ``lga_<id>_<secret>`` for agent
enrolment tokens, ``lgs_…`` for web UI sessions (the cookie) and ``lgc_…`` for the
one-time codes of sign-in links. The prefix lets secret scanners (and people) recognise them; the id
finds the row without a scan; only the SHA-256 of the secret part is stored. The secret
is 256 random bits, so a fast hash is enough: nobody can search that space, and a slow
hash would cost every call."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "AGENT_PREFIX",
    "API_PREFIX",
    "ParsedSecret",
    "hash_secret",
    "matches",
    "new_secret",
    "parse",
]

API_PREFIX = "lgt"
AGENT_PREFIX = "lga"
SESSION_PREFIX = "lgs"
CODE_PREFIX = "lgc"
_ID = re.compile(r"[a-z2-7]{16}")
_SECRET = re.compile(r"[A-Za-z0-9_-]{43}")

Kind = Literal["api", "agent", "session", "code"]
_PREFIXES: dict[Kind, str] = {
    "api": API_PREFIX,
    "agent": AGENT_PREFIX,
    "session": SESSION_PREFIX,
    "code": CODE_PREFIX,
}
_KINDS: dict[str, Kind] = {prefix: kind for kind, prefix in _PREFIXES.items()}


@dataclass(frozen=True)
class ParsedSecret:
    kind: Kind
    id: str
    secret: str


def new_secret(kind: Kind, token_id: str = "") -> tuple[str, str, str]:
    """(id, the whole secret to hand out once, the hash to store); ``token_id`` keeps an
    existing id (a sign-in code and the session it becomes share one)."""
    token_id = token_id or base64.b32encode(secrets.token_bytes(10)).decode().lower()
    secret = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
    return token_id, f"{_PREFIXES[kind]}_{token_id}_{secret}", hash_secret(secret)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def parse(value: str) -> ParsedSecret | None:
    """The parts of a token, or None when ``value`` is not shaped like one."""
    prefix, _, rest = value.strip().partition("_")
    token_id, _, secret = rest.partition("_")
    kind = _KINDS.get(prefix)
    if kind is None:
        return None
    if not _ID.fullmatch(token_id) or not _SECRET.fullmatch(secret):
        return None
    return ParsedSecret(kind, token_id, secret)


def matches(parsed: ParsedSecret, stored_hash: str) -> bool:
    """Constant-time comparison of a presented secret with the stored hash."""
    return hmac.compare_digest(hash_secret(parsed.secret), stored_hash)
