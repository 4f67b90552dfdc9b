"""The execution parts a store-level test wires as the server does, without agents."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from control_plane.execution.dispatch import Dispatcher
from control_plane.execution.hub import AgentHub
from control_plane.execution.plans import PlanCache
from control_plane.execution.runs import Runs
from control_plane.execution.signals import Signals
from control_plane.execution.transitions import Transitions
from control_plane.execution.unit_of_work import UnitOfWork
from control_plane.store.db import Database


def runs_of(
    db: Database, plans: PlanCache, clock: Callable[[], datetime]
) -> tuple[Runs, Transitions]:
    """``Runs`` over ``db`` with no agent connected (ready steps stay ready)."""
    signals = Signals("test")
    transitions = Transitions(plans, clock)
    dispatcher = Dispatcher(db, AgentHub(), plans, signals, lease_seconds=20, clock=clock)
    unit_of_work = UnitOfWork(db, dispatcher, signals, clock=clock)
    return Runs(db, plans, transitions, unit_of_work, clock=clock), transitions
