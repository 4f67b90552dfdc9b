"""The effects ledger: what the drills' steps did, counted per (run, step).

The drills' step (``steps/legato_drill_steps.py``) appends one line when an attempt starts
and one when it completes (its effect), each a single ``O_APPEND`` write, so every process
that ran it, on any agent, is counted exactly."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Ledger", "Mark", "assert_effects"]


@dataclass(frozen=True)
class Mark:
    """One line of the ledger: a step's attempt ``started`` or ``completed`` (its effect)."""

    event: str
    run: str
    step: str
    attempt: int
    agent: str
    pid: int


class Ledger:
    """What the drills' steps did, counted per (run, step) from the lines they appended."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "ledger"
        self.gates = directory / "gates"
        self.gates.mkdir(parents=True, exist_ok=True)

    def marks(self) -> list[Mark]:
        if not self.path.exists():
            return []
        marks = []
        # A line being written may be read half-way: only whole lines count.
        for line in self.path.read_text().split("\n")[:-1]:
            event, run, step, attempt, agent, pid = line.split()
            marks.append(Mark(event, run, step, int(attempt), agent, int(pid)))
        return marks

    def started(self, run: str | None = None, step: str | None = None) -> list[Mark]:
        return self._select("started", run, step)

    def completed(self, run: str | None = None, step: str | None = None) -> list[Mark]:
        return self._select("completed", run, step)

    def _select(self, event: str, run: str | None, step: str | None) -> list[Mark]:
        return [
            m
            for m in self.marks()
            if m.event == event and run in (None, m.run) and step in (None, m.step)
        ]

    def running(self) -> list[Mark]:
        """Attempts that started and have not completed (yet, or ever)."""
        done = {(m.run, m.step, m.attempt) for m in self.completed()}
        return [m for m in self.started() if (m.run, m.step, m.attempt) not in done]

    def open_gate(self, mark: Mark) -> None:
        """Let a held attempt go on."""
        (self.gates / f"{mark.run}.{mark.step}.{mark.attempt}").touch()

    def tally(self, event: str) -> Counter[tuple[str, str]]:
        return Counter((m.run, m.step) for m in self.marks() if m.event == event)

    def show(self) -> str:
        return self.path.read_text() if self.path.exists() else "(the ledger is empty)"

    def pids(self) -> set[int]:
        return {m.pid for m in self.started()}


def assert_effects(
    ledger: Ledger,
    runs: list[str],
    steps: list[str],
    *,
    completed: int = 1,
    started: dict[tuple[str, str], int] | None = None,
) -> None:
    """Per (run, step): exactly ``completed`` completed effects, and, where ``started``
    names the pair, exactly that many starts."""
    done = ledger.tally("completed")
    began = ledger.tally("started")
    wrong = [
        f"{run} {step}: completed {done[run, step]} times, expected {completed}"
        for run in runs
        for step in steps
        if done[run, step] != completed
    ]
    wrong += [
        f"{run} {step}: started {began[run, step]} times, expected {count}"
        for (run, step), count in (started or {}).items()
        if began[run, step] != count
    ]
    assert not wrong, "\n".join([*wrong, "ledger:", ledger.show()])
