"""Roles, ordered: each includes what the roles before it may do."""

from __future__ import annotations

from typing import Literal

__all__ = ["ROLES", "Role", "allows", "parse_role"]

Role = Literal["viewer", "operator", "editor", "admin"]
ROLES: tuple[Role, ...] = ("viewer", "operator", "editor", "admin")
"""From least to most."""

WHAT = {
    "viewer": "read pipelines, runs, logs, outputs, agents and the activity log",
    "operator": "also trigger, cancel and rerun runs, pause and resume schedules, "
    "create and cancel backfills, publish events",
    "editor": "also apply, roll back, archive and restore pipelines",
    "admin": "also manage API tokens and agent enrolment tokens, and drain agents",
}


def allows(have: Role, need: Role) -> bool:
    """Whether a caller with role ``have`` may do what needs ``need``."""
    return ROLES.index(have) >= ROLES.index(need)


def parse_role(value: str) -> Role:
    """``value`` as a role, or ValueError naming the roles there are."""
    name = value.strip().lower()
    for role in ROLES:
        if role == name:
            return role
    raise ValueError(f"{value!r} is not a role; use one of {', '.join(ROLES)}")
